"""A wall-clock budget for any training run (`zeroformer train ... --time-budget 25m`).

The schedule must know where the run ends (warmup and decay fit the budget), and resume must stay
exact, so the budget is turned into a number of steps ONCE, before step 1, and that plan is saved:

    calibrate: time CALIBRATION forward + backward passes over the run's first micro-batches
               (under a forked RNG, gradients thrown away, no optimizer step: training itself
               is unchanged); t_step = grad_accum x mean time of the passes after the first
               (the first pays for warm-up: allocations, lazy initialisation)
    steps    = max(1, floor((budget - seconds already spent) / t_step))
    warmup   = warmup_steps                                     if steps >= max_steps
               max(1, round(warmup_steps * steps / max_steps))  otherwise (the recipe's warmup
                                                                 fraction of its own length)

The learning rate of step t is then schedules.py:lr_at(t) with max_steps = steps and
warmup_steps = warmup (cosine reaches min_lr at the planned end; noam peaks inside the run). As
noam's peak, noam_factor * (d_model * warmup)^-0.5, would rise when the warmup shrinks, a shrunk
noam warmup also scales noam_factor by sqrt(warmup / warmup_steps): the peak learning rate stays
the recipe's, only reached sooner (scheduled_config).

The plan is saved in trainer_state.json ("budget") and a resumed run reads it back instead of
timing again: every step's learning rate is a pure function of the step and the saved plan, so
resume is exact step for step, like any run. Under a budget, `max_steps` is only the length the recipe's
warmup was set for; the budget decides the length.

With a cooldown (TrainConfig.cooldown = c: the lr decays linearly to 0 over the run's last part,
schedules.py), the end must be known more exactly than a few timed passes can tell (evaluations,
checkpoint writes and the optimizer are not in them: a 25-minute translate-es-en run planned
3,018 steps and had time for 2,651). So the end is planned a second time, once, where the cooldown begins: at
the first step at which the clock has spent (1 - c) of the budget or the first plan's cooldown
start N - round(c N) is reached, whichever comes first,

    steps = step + max(1, floor((budget - spent) / t))     t = this session's seconds per step
                                                              so far (all included)
    cooldown_start = step

and saved in the plan like the rest (`replan`): the lr of every later step is again a pure
function of the step and the saved plan.

The stop is by the clock: the run ends after the step at which the training time spent (summed
over resumed sessions and saved with each checkpoint) reaches the budget, or at the planned step
count, whichever comes first (a fresh run trains at least one step, even when measuring took
the whole budget); the final evaluation (and averaging, and the recipe's end report) then runs
as at any end, outside the budget. So where a budgeted run stops depends on the
machine's speed; the weights at a given step do not. Periodic evaluations and checkpoint writes
are spent from the budget but not foreseen by the plan: with frequent evaluations a run stops by
the clock somewhat before its planned end (noam: no matter; cosine: lr a little above min_lr).
Building the task (reading data, training a tokenizer) happens before and is not counted.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass

from ..errors import UserError

CALIBRATION = 6   # forward + backward passes timed before step 1 (the first is not counted)

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")


def parse_duration(text) -> float:
    """'25m', '90s', '1h30m', '1.5h' or a plain number of seconds ('1500') -> seconds (> 0)."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        seconds = float(s)
    except ValueError:
        parts = _DURATION.findall(s)
        if not parts or "".join(n + u for n, u in parts) != s or \
                len({u for _, u in parts}) != len(parts):
            raise UserError(f"time budget {text!r}: expected a duration such as 25m, 90s, "
                            "1h30m or a number of seconds") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"time budget {text!r}: must be more than 0 seconds")
    return seconds


@dataclass
class Plan:
    """The budget turned into steps (saved in trainer_state.json as "budget")."""
    seconds: float        # the budget
    steps: int            # planned optimizer steps: the schedule's max_steps
    warmup: int           # the schedule's warmup_steps
    step_time_s: float    # the measured time of one optimizer step
    used_s: float = 0.0   # training seconds spent so far (all sessions)
    cooldown_start: int | None = None   # the step where the cooldown began (re-planned there)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        try:
            start = d.get("cooldown_start")
            plan = cls(float(d["seconds"]), int(d["steps"]), int(d["warmup"]),
                       float(d["step_time_s"]), float(d.get("used_s", 0.0)),
                       None if start is None else int(start))
            if plan.steps < 1 or not 0 <= (plan.cooldown_start or 0) <= plan.steps:
                raise ValueError
            return plan
        except (KeyError, TypeError, ValueError, OverflowError):
            raise UserError(f"trainer_state.json: a damaged time-budget plan {d!r}") from None


def make_plan(seconds: float, step_time: float, spent: float, max_steps: int,
              warmup_steps: int, min_warmup: int = 0) -> Plan:
    """The plan for a budget of `seconds` when `spent` seconds are gone and a step takes
    `step_time` (see the module docstring for the formulas)."""
    steps = max(1, math.floor(max(0.0, seconds - spent) / max(step_time, 1e-9)))
    warmup = warmup_steps
    if steps < max_steps and warmup_steps:
        warmup = max(1, round(warmup_steps * steps / max_steps))
    return Plan(seconds, steps, max(warmup, min_warmup), step_time, spent)


class Clock:
    """Training seconds spent: `used_before` (earlier sessions of a resumed run) plus the time
    since this session's clock started (at step `first_step`)."""

    def __init__(self, used_before: float = 0.0, first_step: int = 0):
        self.used_before, self.t0 = used_before, time.perf_counter()
        self.first_step = first_step

    def used(self) -> float:
        return self.used_before + time.perf_counter() - self.t0


def calibrate(trainer) -> float:
    """Seconds per optimizer step of `trainer` (a train/trainer.py:Trainer), measured as the
    module docstring says: forward + backward of micro-batches 0 .. CALIBRATION-1, torch RNG
    forked, gradients zeroed after. On N processes every rank runs the same passes (DDP's
    gradient all-reduce included) and they agree on the mean of their times."""
    import torch

    from . import distributed

    devices = [trainer.device] if trainer.device.type == "cuda" else []
    times = []
    with torch.random.fork_rng(devices=devices):
        for i in range(CALIBRATION):
            batch = distributed.shard_rows(trainer.task.train_batch(i), trainer.world)
            t = time.perf_counter()
            trainer._micro_step(0, batch, sync=True)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            times.append(time.perf_counter() - t)
    trainer.optimizer.zero_grad(set_to_none=True)
    per_micro = sum(times[1:]) / (len(times) - 1)
    if trainer.world.size > 1:
        per_micro = distributed.all_sum([per_micro], trainer.device)[0] / trainer.world.size
    return per_micro * trainer.cfg.grad_accum


def start(trainer, main: bool):
    """The TrainConfig the loop runs: trainer.cfg, or under a time budget trainer.cfg with the
    plan's max_steps and warmup_steps. The plan is measured now (calibrate), or was read back
    from the checkpoint by Trainer.resume(); the clock starts."""
    import sys

    cfg = trainer.cfg
    if not cfg.time_budget:
        return cfg
    trainer.clock = Clock(trainer.plan.used_s if trainer.plan else 0.0, trainer.step)
    if trainer.plan is None:
        trainer.plan = make_plan(cfg.time_budget, calibrate(trainer), trainer.clock.used(),
                                 cfg.max_steps, cfg.warmup_steps,
                                 min_warmup=int(cfg.schedule == "noam"))
        if main:
            sys.stderr.write(f"time budget {cfg.time_budget:g} s: a step takes "
                             f"{trainer.plan.step_time_s:.3f} s -> {trainer.plan.steps} steps "
                             f"planned, warmup {trainer.plan.warmup}\n")
    return scheduled_config(cfg, trainer.plan)


def scheduled_config(cfg, plan: Plan):
    """`cfg` (a TrainConfig) with the plan's length and warmup, and for a shrunk noam warmup the
    noam_factor that keeps the recipe's peak learning rate (module docstring)."""
    import dataclasses

    factor = cfg.noam_factor
    if cfg.schedule == "noam" and plan.warmup < cfg.warmup_steps:
        factor *= math.sqrt(plan.warmup / cfg.warmup_steps)
    return dataclasses.replace(cfg, max_steps=plan.steps, warmup_steps=plan.warmup,
                               noam_factor=factor)


def replan(trainer, run, step: int):
    """At the cooldown's first step (module docstring), plan the end again from the time per
    step measured so far; returns the TrainConfig the loop runs from now on, or None (nothing to
    do: no budget, no cooldown, already done, or not yet). Every rank calls it after every step
    and they agree (the flag and the mean time per step are all-reduced)."""
    from .schedules import cooldown_start

    plan = trainer.plan
    if plan is None or not run.cooldown or plan.cooldown_start is not None:
        return None
    clock = trainer.clock
    used = clock.used()
    due = used >= (1.0 - run.cooldown) * plan.seconds or step >= cooldown_start(run)
    per_step = (used - clock.used_before) / max(1, step - clock.first_step)
    if trainer.world.size > 1:
        from . import distributed

        due_sum, per_sum = distributed.all_sum([float(due), per_step], trainer.device)
        due, per_step = due_sum > 0, per_sum / trainer.world.size
    if not due:
        return None
    plan.steps = step + max(1, math.floor(max(0.0, plan.seconds - used) / max(per_step, 1e-9)))
    plan.cooldown_start = step
    return scheduled_config(trainer.cfg, plan)


def out_of_time(trainer) -> bool:
    """Whether the training time spent reached the budget (on any rank: all stop together; a
    collective on N processes, called by every rank after every step)."""
    if trainer.plan is None:
        return False
    flag = trainer.clock.used() >= trainer.plan.seconds
    if trainer.world.size > 1:
        from . import distributed

        flag = distributed.all_sum([float(flag)], trainer.device)[0] > 0
    return flag
