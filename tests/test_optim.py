"""Latents train at a scaled learning rate, whatever the scheduler sets."""
import pytest
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


def test_optimizer_by_name_with_its_family_hyperparameters():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    quantize_(model, DenseShiftConfig(bits=3, keep_first=False, keep_last=False))
    # the recipes give betas and momentum together and switch by name
    sgd = grouped(model.parameters(), "sgd", lr=0.1, betas=(0.9, 0.98), momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = grouped(model.parameters(), "AdamW", lr=0.1, betas=[0.8, 0.9], momentum=0.9)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.9)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        grouped(model.parameters(), "lion", lr=0.1)


def test_latent_weight_decay_applies_to_the_latent_group_only():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    quantize_(model, DenseShiftConfig(bits=3, keep_first=False, keep_last=False))
    opt = grouped(model.parameters(), "adamw", lr=0.1, weight_decay=0.01, latent_weight_decay=1.0)
    others, latent_group = opt.param_groups
    assert others["weight_decay"] == 0.01 and latent_group["weight_decay"] == 1.0
    sign, thermo, _ = latents(model[1], "weight")
    assert any(p is sign for p in latent_group["params"])
    with pytest.raises(ValueError, match="latent_weight_decay"):
        grouped(model.parameters(), "adamw", lr=0.1, latent_weight_decay=-1.0)


def test_init_scale_gain_scales_the_low_variance_alpha():
    torch.manual_seed(0)
    alphas = []
    for gain in (1.0, 0.5):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        quantize_(model, DenseShiftConfig(bits=3, keep_first=False, init_scale_gain=gain))
        alphas.append(latents(model[0], "weight")[2].detach().clone())
    torch.testing.assert_close(alphas[1], alphas[0] - 1.0)   # log2(0.5) = -1
    with pytest.raises(ValueError, match="init_scale_gain"):
        DenseShiftConfig(init_scale_gain=0.0)


def test_a_schedule_to_the_end_of_the_run_gets_its_length(monkeypatch):
    """LinearWarmupScheduler with num_training_steps: null learns the run's optimizer
    steps: epochs x this process's batches (items dealt over the data-parallel
    processes) / accumulation; a warm-up as long as the run is refused; Noam is left
    alone."""
    from speechbrain.nnet.schedulers import LinearWarmupScheduler, NoamScheduler

    from denseshift_speech.integrations.speechbrain.hparams import HparamsError
    from denseshift_speech.integrations.speechbrain.recipe import set_training_steps
    hp = {"number_of_epochs": 12, "batch_size": 8, "grad_accumulation_factor": 1}
    sched = LinearWarmupScheduler(0.003, 1000, None)
    set_training_steps(sched, 3000, hp)
    assert sched.num_training_steps == 12 * 375
    monkeypatch.setenv("WORLD_SIZE", "2")
    sched = LinearWarmupScheduler(0.003, 1000, None)
    set_training_steps(sched, 3001, {**hp, "batch_size": 4, "grad_accumulation_factor": 2})
    assert sched.num_training_steps == 12 * (376 // 2)     # 1501 items a process
    fixed = LinearWarmupScheduler(0.003, 10, 777)
    set_training_steps(fixed, 3000, hp)
    assert fixed.num_training_steps == 777
    noam = NoamScheduler(0.003, 1000)
    set_training_steps(noam, 3000, hp)
    assert not hasattr(noam, "num_training_steps")
    with pytest.raises(HparamsError, match="warmup_steps"):
        set_training_steps(LinearWarmupScheduler(0.003, 5000, None), 3000, hp)


def test_the_lr_schedule_is_chosen_by_name():
    from speechbrain.nnet.schedulers import LinearWarmupScheduler, NoamScheduler

    from denseshift_speech.integrations.speechbrain.schedules import warmup_schedule
    linear = warmup_schedule("linear", 0.003, 100)
    assert isinstance(linear, LinearWarmupScheduler) and linear.num_training_steps is None
    linear.num_training_steps = 400
    assert linear.calculate_lr(100) == pytest.approx(0.003)
    assert linear.calculate_lr(250) == pytest.approx(0.0015) and linear.calculate_lr(400) == 0
    assert isinstance(warmup_schedule("noam", 0.003, 100), NoamScheduler)
    with pytest.raises(ValueError, match="lr_schedule must be one of linear, noam, got 'cosine'"):
        warmup_schedule("cosine", 0.003, 100)
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 1"):
        warmup_schedule("linear", 0.003, 0)
