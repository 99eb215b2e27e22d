"""Data parallelism over PyTorch's own engine: torchrun + torch.distributed + DDP.

torchrun starts N copies of `zeroformer train ...` and gives each RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. `init(device)` joins them into one process group (nccl when the
training device is CUDA, else gloo) and picks cuda:LOCAL_RANK for "auto"/"cuda"; without
WORLD_SIZE (or with WORLD_SIZE=1) nothing happens and training is the one-process trainer.

One meaning for a config on any number of processes (docs/distributed.md):
    batch_size  = the GLOBAL rows of one micro-batch (all ranks together);
                  rows per optimizer step = batch_size * grad_accum, whatever N is.
    micro-batch i is built exactly as in one process (task.train_batch(i)); rank r keeps the rows
    [r*B/N, (r+1)*B/N) of it (`shard_rows`).
    loss: a task's loss is a mean over the n_r positions it counts on rank r. The one-process
    loss is the mean over all n = sum_r n_r positions:  L = sum_r n_r * L_r / n.
    DDP averages gradients over ranks (divides by N), so rank r back-propagates
        L_r * n_r * N / n              ->   mean_r of its gradient = gradient of L
    with n summed over ranks by one all_reduce per micro-batch (`all_sum`), which also gives the
    global loss that every rank logs and checks for NaN (so all ranks stop together).

Dropout RNG: under N > 1 processes the torch RNG is reseeded at the start of every optimizer
step from (seed, step, rank) (`step_seed`): ranks draw independent masks, and a resumed run draws
exactly the masks of an uninterrupted one without storing N RNG states. A run with dropout on N
processes is therefore a different (equally valid) random draw from the one-process run; with
dropout off the runs agree within float tolerance (tests/test_distributed.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def world_from_env() -> World:
    """The World torchrun describes in the environment (rank 0 of 1 without torchrun)."""
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; returns (world, this rank's device)."""
    world = world_from_env()
    if world.size <= 1:
        return World(), device
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"device={device.type!r}: data parallel training runs on cpu or cuda")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, **({"device_id": device} if device.type == "cuda"
                                            else {}))
    return world, device


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise UserError(f"batch_size={batch_size} does not divide among {world.size} processes "
                        f"(batch_size is the global batch; use a multiple of {world.size})")


def shard_rows(batch, world: World):
    """Rank r's rows [r*B/N, (r+1)*B/N) of every tensor in a batch dict (B = first dimension).

    B not divisible by N (token-bucketed translation batches) splits as evenly as it can."""
    if world.size == 1:
        return batch
    if not isinstance(batch, dict):
        raise UserError("data parallel training needs batches that are dicts of tensors")
    rows = {v.size(0) for v in batch.values() if torch.is_tensor(v) and v.dim() > 0}
    if len(rows) != 1:
        raise UserError(f"cannot split a batch whose tensors have different row counts {rows}")
    b = rows.pop()
    if b < world.size:
        raise UserError(f"a batch of {b} rows cannot feed {world.size} processes")
    lo, hi = world.rank * b // world.size, (world.rank + 1) * b // world.size
    return {k: v[lo:hi] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch.items()}


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (float64: token counts stay exact). A collective: every
    rank must call it the same number of times."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of optimizer step `step` on `rank` (dropout and other in-model sampling)."""
    digest = hashlib.blake2b(f"{seed}:dropout:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2 ** 63 - 1)
