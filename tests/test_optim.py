"""Latents train at a scaled learning rate, whatever the scheduler sets."""
import torch

from denseshift_speech import DenseShiftConfig, quantize_
from denseshift_speech.core.nn import latents
from denseshift_speech.core.optim import grouped


def test_latents_step_at_scaled_learning_rate():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    quantize_(model, DenseShiftConfig(bits=3, keep_first=False, keep_last=False))
    opt = grouped(model.parameters(), torch.optim.SGD, latent_lr_scale=0.1, lr=1.0)
    assert len(opt.param_groups) == 2
    for group in opt.param_groups:      # what SpeechBrain's schedulers do
        group["lr"] = 0.5
    sign, thermo, log_alpha = latents(model[1], "weight")
    before = {"sign": sign.detach().clone(), "alpha": log_alpha.detach().clone(),
              "bias": model[1].bias.detach().clone()}
    model(torch.randn(4, 8)).pow(2).sum().backward()
    grads = {"sign": sign.grad.clone(), "alpha": log_alpha.grad.clone(),
             "bias": model[1].bias.grad.clone()}
    opt.step()
    torch.testing.assert_close(sign.detach(), before["sign"] - 0.05 * grads["sign"])   # latent
    torch.testing.assert_close(log_alpha.detach(), before["alpha"] - 0.5 * grads["alpha"])  # scale
    torch.testing.assert_close(model[1].bias.detach(), before["bias"] - 0.5 * grads["bias"])
    assert all(g["lr"] == 0.5 for g in opt.param_groups)  # the schedule is untouched
