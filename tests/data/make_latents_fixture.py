"""How ``latents_v1.pt`` (a training state dict of DenseShift latents) was made.

The file was written by the parametrization of commit 8c56f10, before the fused training
parametrization (``quant.fused_weight``) replaced the per-level reference math in
``DenseShiftWeight``.  It is committed so that the tests can check that checkpoints
written by older code still load strictly and compute the same weights and gradients
(``tests/test_fused.py::test_old_checkpoint_loads_with_same_weights_and_gradients``).
Running this script again with newer code writes what *that* code computes, so do not
regenerate the committed fixture; ``--out`` writes elsewhere.

Model (:func:`architecture`): ``Linear(12, 10)`` at 2 bits with one scale per tensor,
``Linear(10, 8)`` at 3 bits with power-of-two per-channel scales, ``Conv1d(2, 4, 3)`` at 4
bits with per-channel scales (all ``init="low_variance"``), after one AdamW step, with a
few latents set to exactly 0.0 (the binarizers' edge: ``B01(0) = 0``, ``Bpm(0) = +1``).
The file holds ``state_dict`` (the model's), ``weights`` (every effective weight, by
parameter name), ``grads`` (every latent's gradient of :func:`loss` on
:func:`fixed_input`, by state-dict key) and ``loss``.
"""
from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from torch.nn.utils import parametrize

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "latents_v1.pt")
#: (layer index, DenseShiftWeight kwargs)
LAYERS = ((0, dict(bits=2, scale="tensor")), (2, dict(bits=3, pow2_scale=True)),
          (3, dict(bits=4)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8),
                                     nn.Conv1d(2, 4, 3)])

    def forward(self, x):                          # x: (batch, 12)
        h = self.layers[2](self.layers[1](self.layers[0](x)))   # (batch, 8)
        return self.layers[3](h.reshape(-1, 2, 4))             # (batch, 4, 2)


def architecture(seed: int = 0) -> Model:
    """The quantized architecture (random latents; a state dict overwrites them)."""
    from denseshift_speech.core.nn import DenseShiftWeight

    torch.manual_seed(seed)
    model = Model()
    for i, kwargs in LAYERS:
        parametrize.register_parametrization(model.layers[i], "weight", DenseShiftWeight(**kwargs))
    return model


def fixed_input() -> torch.Tensor:
    return torch.cos(torch.arange(5 * 12, dtype=torch.float32) * 0.61).reshape(5, 12)


def loss(model) -> torch.Tensor:
    return (model(fixed_input()) * torch.linspace(-1, 1, 8).reshape(1, 4, 2)).square().sum()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=FIXTURE)
    args = ap.parse_args(argv)
    model = architecture()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss(model).backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        for i, _ in LAYERS:
            plist = model.layers[i].parametrizations.weight
            plist.original0.view(-1)[:2] = 0.0
            plist.original1.view(-1)[::7] = 0.0
    value = loss(model)
    value.backward()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {f"layers.{i}.parametrizations.weight.original{j}":
             getattr(model.layers[i].parametrizations.weight, f"original{j}").grad.clone()
             for i, _ in LAYERS for j in range(3)}
    weights = {f"layers.{i}.weight": model.layers[i].weight.detach().clone() for i, _ in LAYERS}
    torch.save({"state_dict": state, "weights": weights, "grads": grads,
                "loss": float(value.detach())}, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
