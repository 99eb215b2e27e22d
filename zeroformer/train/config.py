"""`TrainConfig`: every training knob, by the name `zeroformer train --key=value` uses.

The names are chosen once and never collide with `ModelConfig` fields, so one `--key=value`
namespace covers both (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DataclassJSON
from ..errors import UserError

SCHEDULES = ("cosine", "noam", "constant", "linear_decay")
OPTIMIZERS = ("adamw", "sgd")
TRAIN_DTYPES = ("auto", "fp32", "bf16")

# Fields that may differ between a run and its `--resume` (they do not change the arithmetic).
RESUMABLE_CHANGES = frozenset({"max_steps", "eval_every", "eval_steps", "save_every",
                               "keep_checkpoints", "log_every", "progress", "device",
                               "average_last", "memory_check"})


@dataclass
class TrainConfig(DataclassJSON):
    what = "training"

    # data
    batch_size: int = 16          # sequences per micro-batch
    block_size: int = 128         # tokens per training sequence (context length while training)
    grad_accum: int = 1           # micro-batches per optimizer step (effective batch = product)
    # length
    max_steps: int = 1000         # optimizer steps
    time_budget: float = 0.0      # seconds of training (--time-budget 25m); 0 = none. With a
    #                               budget the run's length and warmup are planned from a measured
    #                               step time (zeroformer/train/budget.py), not max_steps
    # learning-rate schedule (zeroformer/train/schedules.py)
    schedule: str = "cosine"      # cosine: linear warmup to lr, cosine to min_lr at max_steps
                                  # noam:   noam_factor * d_model^-0.5 * min(t^-0.5, t*warmup^-1.5)
                                  # constant: linear warmup to lr, then lr
                                  # linear_decay: linear warmup, then linear to min_lr (word2vec)
    lr: float = 1e-3              # peak learning rate (cosine, constant; unused by noam)
    min_lr: float = 1e-4          # cosine floor
    warmup_steps: int = 100
    noam_factor: float = 1.0      # the scale factor of the paper's schedule
    cooldown: float = 0.0         # the last fraction of the run: any schedule's lr x a linear
    #                               decay to 0 (warmup-stable-decay); 0 = off (schedules.py)
    # AdamW (decoupled weight decay; zeroformer/train/optim.py), or plain SGD (word2vec)
    optimizer: str = "adamw"      # adamw | sgd (theta <- theta - lr * g; no momentum)
    weight_decay: float = 0.1     # on weight matrices only; not biases, norms, embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0        # max global L2 norm of the gradient; 0 = off
    label_smoothing: float = 0.0  # epsilon_ls of the paper (0.1 there)
    scheduled_sampling: float = 0.0  # translation: P(a gold decoder input -> the model's guess)
    # evaluation, logging, checkpoints
    eval_every: int = 200         # steps between evaluations; 0 = only at the end
    eval_steps: int = 20          # batches per evaluation
    log_every: int = 50           # steps between logged (and printed) training losses
    save_every: int = 500         # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = 2     # newest step-* folders kept in --out
    average_last: int = 0         # at the end, average the last N checkpoints' weights into
    #                               OUT/averaged and evaluate that model (Vaswani et al. 6.1); 0 = off
    progress: bool = True         # tqdm progress bar (loss, tokens/s, ETA) on stderr
    # reproducibility and numerics
    seed: int = 1337
    dtype: str = "fp32"           # fp32, bf16 autocast (weights and optimizer stay fp32), or
    #                               auto (`zeroformer train`'s default): bf16 where the hardware
    #                               has it natively, on a CPU only for d_model >= 512
    #                               (train/machine.py:resolve_dtype), else fp32
    device: str = "auto"          # auto (cuda if available), cpu, cuda, cuda:1, mps
    # scale-out (docs/distributed.md)
    fsdp: bool = False            # under torchrun: shard weights, gradients, AdamW state (FSDP2)
    memory_check: bool = True     # stop before training when it would not fit (train/memory.py)
    # inputs of recipes that take the user's files (classify, finetune): --data, --eval-data, --model
    data: str | None = None       # training data file
    eval_data: str | None = None  # held-out data file (default: a slice of `data`)
    init: str | None = None       # the model to start from (a checkpoint, HF folder or .gguf)
    extra: dict = field(default_factory=dict)  # recipe options, --extra='{"lm_weight": 0.2}'

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule={self.schedule!r} is not one of {SCHEDULES}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer={self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.dtype not in TRAIN_DTYPES:
            raise UserError(f"dtype={self.dtype!r} is not one of {TRAIN_DTYPES}")
        for name in ("batch_size", "block_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("max_steps", "warmup_steps", "eval_every", "eval_steps", "log_every",
                     "save_every", "keep_checkpoints", "average_last"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not self.time_budget >= 0.0 or self.time_budget == float("inf"):
            raise UserError(f"time_budget must be a number of seconds >= 0 (got {self.time_budget})")
        if self.fsdp and self.average_last:
            raise UserError("average_last does not take --fsdp runs yet (their checkpoints are "
                            "sharded): average after `zeroformer convert`")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise UserError(f"scheduled_sampling must be in [0, 1] (got {self.scheduled_sampling})")
        if not 0.0 <= self.cooldown < 1.0:
            raise UserError(f"cooldown must be in [0, 1) (a fraction of the run; got {self.cooldown})")
        if self.schedule == "noam" and self.warmup_steps < 1:
            raise UserError("schedule=noam needs warmup_steps >= 1")
