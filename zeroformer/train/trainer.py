"""The one trainer: every model family trains through `Trainer(task, cfg, out).fit()`.

One optimizer step t (1-based):
    lr <- schedule(t)
    for micro in 0..grad_accum-1:            batch i = (t-1)*grad_accum + micro (pure of seed, i)
        loss_m, n_m = task.loss(model, batch_i)          (under bf16 autocast if dtype=bf16)
        (loss_m / grad_accum).backward()                  gradients of the mean micro-batch loss
    clip ||g||_2 <= grad_clip;  AdamW step;  zero grads
    every eval_every: mean held-out loss (token-weighted) + task.on_eval(model)
    every save_every (and at the end): OUT/step-XXXXXXXX + latest.json (zeroformer/io/checkpoint.py)

Exact resume: a checkpoint holds the weights, the AdamW moments and step counts, the step, and the
torch / python / numpy RNG states. Batches and learning rates are pure functions of the step, so a
run killed at any moment and resumed from its latest checkpoint ends with the same weights, bit
for bit (deterministic CPU kernels), as a run that never stopped. Evaluation runs under a forked
RNG, so how often one evaluates never changes training.

Data parallel (torchrun, zeroformer/train/distributed.py): every rank runs this loop on its share
of each micro-batch through a DDP wrapper (`self.net`); the ranks' losses are combined into the
one-process loss (one all_reduce per micro-batch). Only rank 0 prints, evaluates and writes
checkpoints, none of which makes a collective call; every rank resumes from the same checkpoint.
Under --fsdp (zeroformer/train/fsdp.py) the model is sharded in place (`self.net` is the model),
every rank writes its shard of each checkpoint (io/sharded.py) and takes part in gathering the
weights for rank 0's evaluation (`whole_model`).

Time budget (cfg.time_budget, zeroformer/train/budget.py): the budget becomes a planned step count
and warmup once, from a measured step time, saved with each checkpoint; the run stops at the
planned step or when its training time reaches the budget. Averaging (cfg.average_last = N): at
the end the last N checkpoints' weights are averaged into OUT/averaged, which is then evaluated
and handed to task.on_end.

SIGTERM / SIGINT (zeroformer/train/preempt.py) end the current step, save a checkpoint and
return with result["stopped"] set; a second signal ends the process at once.

A non-finite loss stops the run with `LossDiverged` (a UserError: one line, exit 2) that names
the step and the last good checkpoint; nothing is saved after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import UserError
from ..io import checkpoint as ckpt, sharded
from ..io.files import load_strict
from .config import RESUMABLE_CHANGES, TrainConfig
from . import budget, distributed, fsdp
from .data import count_tokens, to_device
from .machine import keep_freed_memory, resolve_device, resolve_dtype, seed_everything  # noqa: F401
from .optim import build_optimizer
from .preempt import GracefulStop
from .progress import Progress
from .schedules import lr_at


class LossDiverged(UserError):
    """The training loss became NaN or infinite."""


class Trainer:
    def __init__(self, task, cfg: TrainConfig, out=None, meta: dict | None = None):
        self.task, self.cfg = task, cfg
        self.out = Path(out) if out is not None else None
        self.meta = dict(meta or {})  # e.g. {"recipe": "toy"}: stored in trainer_state.json
        self.world, self.device = distributed.init(resolve_device(cfg.device))
        self.asked_dtype = cfg.dtype
        dtype, self.dtype_reason = resolve_dtype(cfg.dtype, self.device, task.model.config.d_model)
        self.cfg = cfg = dataclasses.replace(cfg, dtype=dtype)  # saved: what actually ran
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model = task.model.to(self.device)
        if cfg.block_size > self.model.config.max_seq_len:
            raise UserError(f"block_size={cfg.block_size} exceeds the model's "
                            f"max_seq_len={self.model.config.max_seq_len}")
        self.net = self.model  # what the loss calls: the model, or its DDP wrapper
        self.replica = None    # FSDP: rank 0's whole copy for evaluation (train/fsdp.py)
        if cfg.fsdp and self.world.size == 1:
            raise UserError("--fsdp shards the model over processes: run it with --nproc N "
                            "(N >= 2) or under torchrun")
        if self.world.size > 1:
            distributed.check_batch_size(cfg.batch_size, self.world)
            if not getattr(task, "data_parallel", True):
                raise UserError(f"{type(task).__name__} cannot train on {self.world.size} "
                                "processes (its loss is not one mean over counted positions; "
                                "see zeroformer/train/task.py)")
            if cfg.fsdp:  # in place: self.net stays the model, now sharded
                fsdp.shard(self.model, self.device, self.world.size)
                self.replica = fsdp.Replica(self.model, self.world.main, self.device)
            else:
                self.net = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.model, cfg)  # after sharding: over the shards
        self.step = 0
        self.log: list[dict] = []
        self.unlogged = [0.0, 0]  # [sum, count] of step losses since the last log entry
        self.last_checkpoint: Path | None = None
        self.stopped: str | None = None  # the signal that stopped fit() early (preempt.py)
        self.plan: budget.Plan | None = None  # the time budget's plan (budget.py)
        self.clock: budget.Clock | None = None

    # -- resume ---------------------------------------------------------------------------------
    def resume(self) -> int:
        """Restore everything from `out`/latest.json (or, when a file there is damaged, from the
        newest whole checkpoint before it: ckpt.resumable_checkpoint). Returns the step resumed."""
        folder = ckpt.resumable_checkpoint(self.out) if self.out is not None else None
        if folder is None:
            raise UserError(f"nothing to resume: {self.out} has no latest.json")
        state, tensors = ckpt.load_trainer_state(folder)
        self._check_compatible(folder, state)
        if self.cfg.fsdp:  # every rank reads its rows of every tensor (io/sharded.py)
            sharded.load_sharded(self.model, self.optimizer, folder)
        else:
            ckpt.load_weights(self.model, folder)
            ckpt.load_optimizer(self.optimizer, folder)
        self.step, self.log = int(state["step"]), list(state.get("log", []))
        self.unlogged = list(state.get("unlogged", [0.0, 0]))  # the next entry's mean spans it
        if len(self.unlogged) != 2 or not all(type(x) in (int, float) for x in self.unlogged):
            raise UserError(f"{folder / ckpt.STATE_FILE}: 'unlogged' is not [sum, count]")
        if state.get("budget") is not None:
            self.plan = budget.Plan.from_dict(state["budget"])
        self._restore_rng(folder, state.get("rng", {}), tensors)
        self.last_checkpoint = folder
        return self.step

    def _restore_rng(self, folder: Path, rng: dict, tensors: dict) -> None:
        """Set the python / numpy / torch RNG states saved by `save` (the libraries check them:
        a state they refuse is a damaged file)."""
        try:
            if "python" in rng:
                v, internal, gauss = rng["python"]
                random.setstate((v, tuple(internal), gauss))
            if "numpy" in rng:
                kind, keys, pos, has_gauss, cached = rng["numpy"]
                np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss,
                                     cached))
            torch.set_rng_state(tensors["rng.torch"])
            if self.device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        except (KeyError, TypeError, ValueError, OverflowError, IndexError, RuntimeError) as e:
            raise UserError(f"{folder}: damaged random-number state in {ckpt.STATE_FILE} or "
                            f"{ckpt.STATE_TENSORS_FILE} ({type(e).__name__}: {e})") from None

    def _check_compatible(self, folder: Path, state: dict) -> None:
        # an older checkpoint: ModelConfig reads its "extra"; absent training fields had their defaults
        saved_model = ModelConfig.load(folder / ckpt.CONFIG_FILE).to_dict()
        now_model = self.model.config.to_dict()
        diff = sorted(k for k in set(saved_model) | set(now_model)
                      if saved_model.get(k) != now_model.get(k))
        saved_train = {**type(self.cfg)().to_dict(), **state.get("train_config", {})}
        if self.asked_dtype == "auto" and saved_train.get("dtype") in ("fp32", "bf16"):
            # auto resumes in the dtype the run was trained in (exact resume)
            self.cfg = dataclasses.replace(self.cfg, dtype=saved_train["dtype"])
            self.dtype_reason = "auto: the checkpoint's dtype"
        now_train = self.cfg.to_dict()
        diff += sorted(k for k in set(saved_train) | set(now_train)
                       if k not in RESUMABLE_CHANGES and saved_train.get(k) != now_train.get(k))
        if diff:
            what = ", ".join(f"{k} (checkpoint {saved_model.get(k, saved_train.get(k))!r}, "
                             f"now {now_model.get(k, now_train.get(k))!r})" for k in diff[:4])
            raise UserError(f"cannot resume from {folder}: the configuration differs: {what}"
                            + (f" and {len(diff) - 4} more" if len(diff) > 4 else ""))
        if self.meta.get("recipe") and state.get("recipe") not in (None, self.meta["recipe"]):
            raise UserError(f"cannot resume from {folder}: it was trained with recipe "
                            f"{state['recipe']!r}, not {self.meta['recipe']!r}")

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self) -> Path:
        tensors = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        np_state = np.random.get_state()
        py = random.getstate()
        state = {**self.meta, "step": self.step, "train_config": self.cfg.to_dict(),
                 "log": self.log, "unlogged": self.unlogged,
                 "rng": {"python": [py[0], list(py[1]), py[2]],
                         "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]),
                                   int(np_state[3]), float(np_state[4])]}}
        if self.plan is not None:
            self.plan.used_s = round(self.clock.used(), 3)
            state["budget"] = self.plan.to_dict()
        self.last_checkpoint = ckpt.save_run_checkpoint(
            self.out, self.step, self.model,
            keep=max(self.cfg.keep_checkpoints, self.cfg.average_last),
            tokenizer=getattr(self.task, "tokenizer", None), trainer_state=state,
            optimizer=self.optimizer, extra_tensors=tensors,
            sharded_main=self.world.main if self.cfg.fsdp else None)
        return self.last_checkpoint

    # -- evaluation -----------------------------------------------------------------------------
    def autocast(self):
        if self.cfg.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Token-weighted mean loss over task.eval_batches(), plus task.on_eval(model)."""
        model = self.whole_model()
        if model is None:
            return {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # evaluation never perturbs training RNG
            model.eval()
            try:
                total, count = 0.0, 0
                for batch in self.task.eval_batches():
                    with self.autocast():
                        loss, n = self.task.loss(model, to_device(batch, self.device))
                    total, count = total + float(loss) * n, count + n
                result = {"val_loss": total / count} if count else {}
                result.update(self.task.on_eval(model) or {})
            finally:
                model.train()
        return result

    def whole_model(self):
        """The model with all its weights, for rank 0's evaluation and samples: the model itself,
        or under FSDP rank 0's replica (gathered: every rank must call this; None off rank 0)."""
        return self.model if self.replica is None else self.replica.get(self.step)

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train to cfg.max_steps (from scratch, or from `out`/latest.json when `resume`)."""
        cfg, model, task = self.cfg, self.model, self.task
        if resume:
            self.resume()
        else:
            if self.out is not None and (self.out / ckpt.LATEST_FILE).exists():
                raise UserError(f"{self.out} already holds a training run; pass --resume to "
                                "continue it, or choose another --out")
            seed_everything(cfg.seed)
        if cfg.average_last and self.out is None:
            raise UserError("average_last needs a run folder (--out) to keep checkpoints in")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        d_model = model.config.d_model
        model.train()
        main = self.world.main
        run = budget.start(self, main)  # cfg, or with the time budget's planned steps and warmup
        bar = Progress(self.step, run.max_steps, enabled=cfg.progress and main)
        if main:
            bar.write(f"dtype: {'bf16 autocast' if self.cfg.dtype == 'bf16' else 'fp32'} "
                      f"({self.dtype_reason})")
        t0 = time.perf_counter()
        stop = GracefulStop(announce=main).install()  # SIGTERM / SIGINT: stop after this step
        # a budget already spent before a resumed run's first step: nothing more to train (a fresh
        # run trains at least one step, however long the step-time measurement took)
        end = self.step if resume and budget.out_of_time(self) else run.max_steps
        step = self.step
        try:
            while step < end:
                step += 1
                lr = lr_at(step, run, d_model, self.plan.cooldown_start if self.plan else None)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                if self.world.size > 1:
                    torch.manual_seed(distributed.step_seed(cfg.seed, step, self.world.rank))
                step_loss, step_tokens = 0.0, 0
                for micro in range(cfg.grad_accum):
                    batch = task.train_batch((step - 1) * cfg.grad_accum + micro)
                    step_tokens += count_tokens(batch)
                    value = self._micro_step(step, distributed.shard_rows(batch, self.world),
                                             sync=micro == cfg.grad_accum - 1)
                    step_loss += value / cfg.grad_accum
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step = step
                self.unlogged = [self.unlogged[0] + step_loss, self.unlogged[1] + 1]
                bar.update(step_tokens, step_loss, lr)
                replanned = budget.replan(self, run, step)   # a budget's cooldown begins
                if replanned is not None:
                    run, end = replanned, replanned.max_steps
                    bar.set_total(end)
                    if main:
                        bar.write(f"time budget: cooldown from step {step}, the end re-planned "
                                  f"at step {end}")
                last = step == run.max_steps or budget.out_of_time(self)
                if (cfg.log_every and step % cfg.log_every == 0) or last:
                    entry = {"step": step, "loss": self.unlogged[0] / self.unlogged[1], "lr": lr,
                             "time_s": round(time.perf_counter() - t0, 3)}
                    self.log.append(entry)
                    if main:
                        bar.write(f"step {step:6d} | loss {entry['loss']:.4f} | lr {lr:.3e}")
                    self.unlogged = [0.0, 0]
                every = self.replica is not None  # FSDP: all ranks gather the weights
                if (main or every) and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
                    result = self.evaluate()  # rank 0 alone, on a whole model: no collective
                    if result:
                        self.log.append({"step": step, **result})
                        bar.write(f"step {step:6d} | " + " | ".join(_fmt(k, v)
                                                                    for k, v in result.items()))
                saving = (cfg.save_every and step % cfg.save_every == 0) or last
                if (main or cfg.fsdp) and self.out is not None and saving:
                    self.save()  # FSDP: every rank writes its shard
                if last:  # the planned end, or the time budget spent
                    break
                if self._should_stop(stop):
                    if (main or cfg.fsdp) and self.out is not None and not saving:
                        self.save()
                    self.stopped = stop.received or "a signal to another rank"
                    break
        finally:
            stop.restore()
            bar.close()
        if not self.stopped:
            if main and self.plan is not None:
                bar.write(f"time budget: stopped after step {self.step} of the planned "
                          f"{self.plan.steps} ({self.clock.used():.1f} s of "
                          f"{self.plan.seconds:g} s)")
            if main and cfg.average_last and self.out is not None:
                self._average(bar)   # (not with --fsdp: refused in train/config.py)
            whole = self.whole_model()  # FSDP: the last evaluation's replica (no new gather)
            if main:
                task.on_end(whole)
        return {"step": self.step, "log": self.log, "checkpoint": self.last_checkpoint,
                "stopped": self.stopped, "budget": self.plan.to_dict() if self.plan else None}

    # -- averaging ------------------------------------------------------------------------------
    def _average(self, bar) -> None:
        """Average the newest cfg.average_last checkpoints into OUT/averaged, load the result into
        the model and log its evaluation (entry {"step", "averaged": [steps], ...})."""
        folders = sorted(p for p in self.out.glob("step-*") if p.is_dir())[-self.cfg.average_last:]
        steps = [int(p.name.split("-")[1]) for p in folders]
        load_strict(self.model, ckpt.average_checkpoints(folders), self.out).train()
        ckpt.save_checkpoint(self.model, self.out / "averaged",
                             tokenizer=getattr(self.task, "tokenizer", None))
        result = self.evaluate()
        self.log.append({"step": self.step, "averaged": steps, **result})
        bar.write(f"averaged checkpoints {steps} -> {self.out / 'averaged'} | "
                  + " | ".join(_fmt(k, v) for k, v in result.items()))

    def _should_stop(self, stop: GracefulStop) -> bool:
        """Whether a stop signal came (to any rank: all ranks must leave after the same step)."""
        flag = stop.received is not None
        if self.world.size > 1:
            flag = distributed.all_sum([float(flag)], self.device)[0] > 0
        return flag

    def _micro_step(self, step: int, batch, sync: bool) -> float:
        """Forward + backward of one micro-batch (this rank's rows); returns the loss of the
        whole micro-batch, as one process would compute it (see the module docstring)."""
        net, accum = self.net, self.cfg.grad_accum
        quiet = contextlib.nullcontext() if sync or net is self.model else net.no_sync()
        with quiet:  # forward and backward: DDP decides whether to all_reduce in forward
            with self.autocast():
                loss, n = self.task.loss(net, to_device(batch, self.device))
            value, scale = float(loss.detach()), 1.0
            if self.world.size > 1:
                n_all, weighted = distributed.all_sum([n, value * n if n else 0.0], self.device)
                value = weighted / n_all if n_all else float("nan")
                scale = n * self.world.size / n_all if n_all else 0.0
                if not n:  # no counted positions here: a zero gradient, still all-reduced
                    loss = torch.nan_to_num(loss, nan=0.0)
            if not math.isfinite(value):
                self._diverged(step, value)
            (loss * scale / accum if scale != 1.0 else loss / accum).backward()
        return value

    def _diverged(self, step: int, value: float):
        where = (f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint
                 else "no checkpoint was saved")
        raise LossDiverged(f"loss became {value} at step {step}; {where} "
                           "(try a lower lr, more warmup_steps, or grad_clip)")


def _fmt(k, v):
    return f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {str(v)[:200]!r}"
