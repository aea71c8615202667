"""Optimizers for DenseShift latents.

Adam moves every parameter by about ``lr`` per step whatever its gradient's size.  Sign
and thermometer latents start at N(0, 1e-3^2) and only their signs matter, so at a
float model's learning rate they flip on noise (docs/METHOD.md, "Latent learning rate",
has what was measured).  The paper trains latents with SGD, whose steps shrink with the
gradient.  ``grouped`` keeps one optimizer for the model and runs the latents at
``latent_lr_scale`` times the scheduled learning rate.

HyperPyYAML (what SpeechBrain calls with the parameters)::

    opt_class: !name:denseshift_speech.core.optim.grouped
        optimizer: !name:torch.optim.AdamW
        lr: 0.003
        latent_lr_scale: 0.005
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


def grouped(params, optimizer=torch.optim.AdamW, latent_lr_scale: float = 0.005, **kwargs):
    """``optimizer`` over ``params`` with DenseShift latents in their own group, stepped at
    ``latent_lr_scale`` x the group's learning rate (schedulers keep setting ``lr`` for
    every group; the scale is applied around each step)."""
    if not latent_lr_scale > 0:
        raise ValueError(f"latent_lr_scale must be > 0, got {latent_lr_scale}")
    params = list(params)
    latents = [p for p in params if getattr(p, ROLE, None) == LATENT]
    others = [p for p in params if getattr(p, ROLE, None) != LATENT]
    groups = [{"params": others}]
    if latents:
        groups.append({"params": latents, "lr_scale": float(latent_lr_scale)})
    opt = optimizer(groups, **kwargs)
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
