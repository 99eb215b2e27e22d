"""Deterministic batches: batch `index` is a pure function of (seed, stream, index).

The trainer asks for micro-batch number i = (step - 1) * grad_accum + micro. Because nothing about
the data order is stored in an iterator, "the position in the data" is just the step counter, and
a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib

import torch


def batch_generator(seed: int, index: int, stream: str = "train") -> torch.Generator:
    """A fresh CPU torch.Generator seeded from (seed, stream, index), stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2 ** 63 - 1))


def random_windows(tokens: torch.Tensor, batch_size: int, block_size: int,
                   gen: torch.Generator) -> dict:
    """`batch_size` random windows of a 1-D token stream (nanoGPT-style LM batches).

    input_ids[b] = tokens[s_b : s_b + T],  labels[b] = tokens[s_b + 1 : s_b + T + 1]   (B, T)
    """
    if tokens.numel() < block_size + 2:
        from ..errors import UserError

        raise UserError(f"text of {tokens.numel()} tokens is too short for block_size={block_size}")
    starts = torch.randint(0, tokens.numel() - block_size - 1, (batch_size,), generator=gen)
    offsets = torch.arange(block_size + 1)
    rows = tokens[starts[:, None] + offsets]  # (B, T + 1)
    return {"input_ids": rows[:, :-1].contiguous(), "labels": rows[:, 1:].contiguous()}


def to_device(batch, device):
    """Move the tensors of a dict / list / tuple batch to `device` (other values unchanged)."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def count_tokens(batch) -> int:
    """Tokens in a batch for throughput: the elements of its `input_ids` (or first tensor)."""
    if isinstance(batch, dict):
        t = batch.get("input_ids", next((v for v in batch.values() if torch.is_tensor(v)), None))
        return int(t.numel()) if t is not None else 0
    return 0
