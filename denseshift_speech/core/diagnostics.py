"""Training diagnostics: per-layer code histograms and code-flip rates (docs/METHOD.md, section 2).

Both read the discrete codes straight from the latents (no forward pass), so they
cost one comparison pass over the latents: cheap enough to log every epoch.
"""
from __future__ import annotations

import torch

from .nn import codes_and_scale, iter_denseshift, parametrization


def current_codes(model: torch.nn.Module) -> dict:
    """Qualified weight name -> uint8 codes tensor (a copy, on CPU)."""
    return {name: codes_and_scale(module, pname)[0].cpu()
            for name, module, pname in iter_denseshift(model)}


def code_histograms(model: torch.nn.Module) -> dict:
    """Qualified weight name -> int64 counts of each of the 2**bits codes."""
    out = {}
    for name, module, pname in iter_denseshift(model):
        bits = parametrization(module, pname).bits
        codes = codes_and_scale(module, pname)[0]
        out[name] = torch.bincount(codes.flatten().long(), minlength=2 ** bits).cpu()
    return out


class CodeFlipTracker:
    """Fraction of weights whose code changed since the previous ``update()``.

    >>> tracker = CodeFlipTracker(model)   # snapshot now
    >>> ... train an epoch ...
    >>> rates = tracker.update()           # {"layer.weight": 0.012, ..., "total": 0.009}
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.previous = current_codes(model)

    def update(self) -> dict:
        now = current_codes(self.model)
        rates, flipped, total = {}, 0, 0
        for name, codes in now.items():
            before = self.previous.get(name)
            if before is None or before.shape != codes.shape:
                continue
            changed = int((before != codes).sum())
            rates[name] = changed / max(codes.numel(), 1)
            flipped += changed
            total += codes.numel()
        rates["total"] = flipped / max(total, 1)
        self.previous = now
        return rates


def summarize_histograms(hists: dict) -> list:
    """Whole-model code distribution (fractions per code), for one-line logs."""
    if not hists:
        return []
    width = max(len(h) for h in hists.values())
    acc = torch.zeros(width, dtype=torch.int64)
    for h in hists.values():
        acc[: len(h)] += h
    return (acc.double() / acc.sum().clamp_min(1)).tolist()
