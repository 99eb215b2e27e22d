"""Learning-rate schedules: pure functions of the optimizer step t = 1, 2, ..., max_steps.

Being pure functions of the step, they need no saved state: resuming at step t is exact.

noam (Vaswani et al. 2017, eq. 3):
    lr(t) = noam_factor * d_model^-0.5 * min(t^-0.5, t * warmup^-1.5)
    rises linearly for `warmup` steps, peaks at t = warmup, then decays as 1/sqrt(t).
cosine (linear warmup, then cosine decay):
    lr(t) = lr * t / warmup                                   t <= warmup
    lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2    p = (t - warmup) / (max_steps - warmup)
    so lr(warmup) = lr and lr(max_steps) = min_lr; min_lr after max_steps.
constant: the same linear warmup, then lr.
linear_decay (word2vec, Mikolov et al. 2013; gensim's alpha -> min_alpha): the same warmup, then
    lr(t) = lr - (lr - min_lr) * (t - warmup) / (max_steps - warmup)      down to min_lr at max_steps

cooldown c > 0 (TrainConfig.cooldown; "warmup-stable-decay", Hagele et al. 2024): any schedule's
lr(t) times a linear decay over the last steps, from S = the cooldown's first step to the end N:
    tail(t) = 1                          t <= S
    tail(t) = (N + 1 - t) / (N + 1 - S)  S < t <= N          (1 -> 1 / (N + 1 - S) at the end)
S = N - round(c * N), or under a time budget the step at which budget.py re-planned the end.
"""

from __future__ import annotations

import math


def noam(t: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    t = max(t, 1)
    return factor * d_model ** -0.5 * min(t ** -0.5, t * warmup ** -1.5)


def warmup_cosine(t: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    if warmup > 0 and t <= warmup:
        return lr * t / warmup
    if t >= max_steps:
        return min_lr
    p = (t - warmup) / max(1, max_steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def constant(t: int, lr: float, warmup: int) -> float:
    return lr * t / warmup if warmup > 0 and t <= warmup else lr


def linear_decay(t: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    if warmup > 0 and t <= warmup:
        return lr * t / warmup
    if t >= max_steps:
        return min_lr
    return lr - (lr - min_lr) * (t - warmup) / max(1, max_steps - warmup)


def cooldown_tail(t: int, start: int, end: int) -> float:
    return 1.0 if t <= start else max(0.0, (end + 1 - t) / (end + 1 - start))


def cooldown_start(cfg) -> int:
    """S for TrainConfig `cfg` (the module docstring): max_steps when there is no cooldown."""
    return cfg.max_steps - round(cfg.cooldown * cfg.max_steps)


def lr_at(t: int, cfg, d_model: int, start: int | None = None) -> float:
    """The learning rate for optimizer step `t` under TrainConfig `cfg` (`start`: the cooldown's
    first step when a time budget fixed it, else cooldown_start(cfg))."""
    if cfg.schedule == "noam":
        lr = noam(t, d_model, cfg.warmup_steps, cfg.noam_factor)
    elif cfg.schedule == "cosine":
        lr = warmup_cosine(t, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
    elif cfg.schedule == "linear_decay":
        lr = linear_decay(t, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
    else:
        lr = constant(t, cfg.lr, cfg.warmup_steps)
    if cfg.cooldown > 0:
        lr *= cooldown_tail(t, cooldown_start(cfg) if start is None else start, cfg.max_steps)
    return lr
