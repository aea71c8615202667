"""The ASR recipes' learning-rate schedule, chosen by name (``lr_schedule``).

Both shapes warm up linearly to ``lr`` over ``warmup_steps`` optimizer steps, then:

* ``linear``: fall linearly to 0 at the run's last step (SpeechBrain's
  ``LinearWarmupScheduler``; the recipe counts the steps, see
  ``recipe.set_training_steps``).  The conformer's default (measured against ``noam``:
  docs/results/2026-12-02-conformer-recipe-changes.md).
* ``noam``: decay as 1/sqrt(step) and never reach 0 (SpeechBrain's ``NoamScheduler``).
"""
from __future__ import annotations

from speechbrain.nnet.schedulers import LinearWarmupScheduler, NoamScheduler

SHAPES = ("linear", "noam")


def warmup_schedule(shape: str, lr: float, warmup_steps: int):
    """The SpeechBrain scheduler of ``shape`` (one of ``SHAPES``); call it with the
    optimizer after every step."""
    if shape not in SHAPES:
        raise ValueError(f"lr_schedule must be one of {', '.join(SHAPES)}, got {shape!r}")
    if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 1:
        raise ValueError(f"warmup_steps must be an integer >= 1, got {warmup_steps!r}")
    if shape == "noam":
        return NoamScheduler(lr_initial=lr, n_warmup_steps=warmup_steps)
    return LinearWarmupScheduler(initial_value=lr, num_warmup_steps=warmup_steps,
                                 num_training_steps=None)
