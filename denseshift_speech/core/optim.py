"""Optimizers for DenseShift latents.

Adam moves every parameter by about ``lr`` per step whatever its gradient's size.  Sign
and thermometer latents start at N(0, 1e-3^2) and only their signs matter, so at a
float model's learning rate they flip on noise (docs/METHOD.md, "Latent learning rate",
has what was measured).  The paper trains latents with SGD, whose steps shrink with the
gradient.  ``grouped`` keeps one optimizer for the model and runs the latents at
``latent_lr_scale`` times the scheduled learning rate.

HyperPyYAML (what SpeechBrain calls with the parameters)::

    opt_class: !name:denseshift_speech.core.optim.grouped
        optimizer: adamw            # or sgd
        lr: 0.003
        betas: [0.9, 0.98]          # Adam family
        momentum: 0.9               # SGD
        latent_lr_scale: 0.005
        latent_weight_decay: null   # null: weight_decay
"""
from __future__ import annotations

import torch

LATENT = "latent"
ROLE = "_denseshift_role"


def tag_latents(sign_latent, thermo, log_alpha):
    """Mark the parameters of one DenseShift weight (called by quantize_)."""
    setattr(sign_latent, ROLE, LATENT)
    setattr(thermo, ROLE, LATENT)
    setattr(log_alpha, ROLE, "scale")


# by name, so a recipe can switch with --ds_optimizer=sgd
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
# each family's own hyper-parameters: a YAML can give both, the other family's are ignored
_FAMILY_KWARGS = {torch.optim.SGD: ("momentum",), torch.optim.Adam: ("betas",),
                  torch.optim.AdamW: ("betas",)}


def optimizer_class(optimizer):
    """``optimizer`` as a class: a torch.optim class, or a name of ``OPTIMIZERS``."""
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        return OPTIMIZERS[optimizer.lower()]
    if not callable(optimizer):
        raise TypeError(f"optimizer must be a name or a torch.optim class, got {optimizer!r}")
    return optimizer


def grouped(params, optimizer=torch.optim.AdamW, latent_lr_scale: float = 0.005,
            latent_weight_decay: float | None = None, betas=None, momentum=None, **kwargs):
    """``optimizer`` over ``params`` with DenseShift latents in their own group, stepped at
    ``latent_lr_scale`` x the group's learning rate (schedulers keep setting ``lr`` for
    every group; the scale is applied around each step).

    ``optimizer``: a torch.optim class or "adamw" / "adam" / "sgd".  ``betas`` go to the
    Adam family and ``momentum`` to SGD (a YAML may give both and switch by name).
    ``latent_weight_decay``: the latents' weight decay (None: the optimizer's)."""
    if not latent_lr_scale > 0:
        raise ValueError(f"latent_lr_scale must be > 0, got {latent_lr_scale}")
    if latent_weight_decay is not None and not latent_weight_decay >= 0:
        raise ValueError(f"latent_weight_decay must be >= 0 or None, got {latent_weight_decay}")
    cls = optimizer_class(optimizer)
    family = next((names for base, names in _FAMILY_KWARGS.items() if issubclass(cls, base)), ())
    for name, value in (("betas", betas), ("momentum", momentum)):
        if value is not None and name in family:
            kwargs[name] = tuple(value) if name == "betas" else value
    params = list(params)
    latents = [p for p in params if getattr(p, ROLE, None) == LATENT]
    others = [p for p in params if getattr(p, ROLE, None) != LATENT]
    groups = [{"params": others}]
    if latents:
        group = {"params": latents, "lr_scale": float(latent_lr_scale)}
        if latent_weight_decay is not None:
            group["weight_decay"] = float(latent_weight_decay)
        groups.append(group)
    opt = cls(groups, **kwargs)
    opt.register_step_pre_hook(_scale_lr)
    opt.register_step_post_hook(_restore_lr)
    return opt


def _scale_lr(opt, args, kwargs):
    for group in opt.param_groups:
        if "lr_scale" in group:
            group["scheduled_lr"] = group["lr"]
            group["lr"] = group["lr"] * group["lr_scale"]


def _restore_lr(opt, args, kwargs):
    for group in opt.param_groups:
        if "scheduled_lr" in group:
            group["lr"] = group.pop("scheduled_lr")
