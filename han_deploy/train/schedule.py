"""Learning-rate schedules and the CPU-minute budget that sizes them (docs/training.md, "Recipes").

``step``: the paper's lr x gamma at milestone epochs, stepped once per epoch. ``cosine``: a linear
warm-up from 1% of the base lr, then a half cosine down to ``COSINE_FLOOR`` of it, stepped once per
iteration. With a budget, the number of epochs is fitted from the measured seconds per epoch, so the
run (its final evaluation included) ends within the budget.
"""

from __future__ import annotations

import math

PAPER_EPOCHS = 300
PAPER_MILESTONES = (100, 200, 250)
WARMUP_START = 0.01
COSINE_FLOOR = 0.002


def scaled_milestones(epochs: int) -> tuple[int, ...]:
    """The paper's lr steps (100/200/250 of 300 epochs) scaled to ``epochs``; exact for 300."""
    steps = sorted({max(1, round(m * epochs / PAPER_EPOCHS)) for m in PAPER_MILESTONES})
    return tuple(m for m in steps if m < epochs) if epochs > 1 else ()


def warmup_cosine(iteration: int, warmup_iters: int, total_iters: int) -> float:
    """The lr factor at ``iteration`` (0-based): linear warm-up to 1, then cosine to ``COSINE_FLOOR``."""
    if iteration < warmup_iters:
        return WARMUP_START + (1.0 - WARMUP_START) * iteration / warmup_iters
    span = max(1, total_iters - warmup_iters)
    progress = min(1.0, (iteration - warmup_iters) / span)
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit_epochs(budget_s: float, spent_s: float, done: int, epoch_s: float, final_eval_s: float, cap: int) -> int:
    """Epochs the run should have in all: ``done`` plus as many as the unspent budget holds, within ``cap``.

    ``epoch_s`` is the measured wall time of one epoch (its checkpoint included); ``final_eval_s`` is kept
    aside for the evaluation at the end. At least ``done`` (stop now) and at least 1.
    """
    if epoch_s <= 0:
        raise ValueError(f"seconds per epoch must be positive, got {epoch_s}")
    more = math.floor((budget_s - spent_s - final_eval_s) / epoch_s)
    return max(1, done, min(cap, done + more))


def refit_plan(planned: int, fitted: int) -> int:
    """A running plan after a refit to ``fitted`` epochs: shrink at once (the budget is a limit), grow back one
    epoch short of the fit, and only when that adds an epoch (a margin against noise in the epoch time)."""
    if fitted < planned:
        return fitted
    return max(planned, fitted - 1)
