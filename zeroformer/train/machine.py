"""Where and how a run computes: the device, the training dtype (`--dtype auto`), the seed, and
glibc's memory reuse. Used by train/trainer.py:Trainer (and the memory guard, train/memory.py)."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r} is not a torch device (auto, cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but no CUDA GPU is available")
    return dev


def resolve_dtype(name: str, device: torch.device) -> tuple[str, str]:
    """(dtype, why) for TrainConfig.dtype `name`: fp32 / bf16 as asked; auto -> bf16 autocast on a
    CPU with native bf16 instructions (nn/fast.py:cpu_has_native_bf16: avx512_bf16 or amx_bf16)
    or a CUDA GPU that supports bf16, fp32 elsewhere."""
    if name != "auto":
        return name, "asked"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "auto: the GPU supports bf16") if ok else ("fp32", "auto: no GPU bf16")
    if device.type == "cpu":
        from ..nn.fast import cpu_has_native_bf16

        flag = cpu_has_native_bf16()
        if flag:
            return "bf16", f"auto: this CPU has {flag}"
        return "fp32", "auto: this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
    return "fp32", f"auto: fp32 on {device.type}"


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing big blocks back to the kernel after each use.

    A training step allocates and frees the same large buffers every time (logits alone are
    batch x length x vocabulary floats: 120 MB for translate-es-en). glibc serves blocks over its
    mmap threshold (at most 32 MB by default) with a fresh mmap and unmaps them on free, so every
    step pays page faults and zeroing for them: a quarter of translate-es-en's CPU time was system
    time. Raising the mmap and trim thresholds to 1 GiB keeps those pages in the heap for reuse
    (1.35x faster steps measured; the process holds on to its peak memory). Linux/glibc only; a
    no-op elsewhere. Returns whether it took effect."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and
                    libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
