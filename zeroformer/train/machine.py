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


BF16_MIN_WIDTH = 512   # CPU: narrower models train faster in fp32 (benchmarks/bench_train_dtype.py)


def resolve_dtype(name: str, device: torch.device, width: int | None = None) -> tuple[str, str]:
    """(dtype, why) for TrainConfig.dtype `name`: fp32 / bf16 as asked; auto -> bf16 autocast on a
    CUDA GPU that supports bf16, and on a CPU with native bf16 instructions
    (nn/fast.py:cpu_has_native_bf16: avx512_bf16 or amx_bf16) for a model at least
    BF16_MIN_WIDTH wide (`width` = d_model; None: not known, taken as wide); fp32 elsewhere.

    Why the width: autocast casts every weight and activation at each matmul, and torch's CPU
    flash attention runs 7x slower in bf16 than in fp32 for 32-wide heads; for a narrow model
    that costs more than the bf16 matmuls save. Measured on this project's 2-core AVX512-BF16/AMX
    machine: translate-es-en (d_model 128) trains 3.28 steps/s in fp32 and 2.13 in bf16; a
    GPT-2-style step at d_model 384 is 2.4x faster in bf16, and benchmarks/bench_train_dtype.py
    puts bf16 ahead by 1.4-1.8x from d_model 384-512 up in its synthetic steps (which favour
    bf16: no padding masks, no fused output layer). 512 keeps every narrow recipe in fp32 and
    every published checkpoint (GPT-2, BERT, SmolLM2, LLaMA: 576 and wider) in bf16."""
    if name != "auto":
        return name, "asked"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "auto: the GPU supports bf16") if ok else ("fp32", "auto: no GPU bf16")
    if device.type == "cpu":
        from ..nn.fast import cpu_has_native_bf16

        flag = cpu_has_native_bf16()
        if not flag:
            return "fp32", "auto: this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
        if width is not None and width < BF16_MIN_WIDTH:
            return "fp32", (f"auto: d_model {width} < {BF16_MIN_WIDTH}, faster in fp32 on this "
                            f"CPU (it has {flag})")
        return "bf16", f"auto: this CPU has {flag}"
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
