"""The memory guard: before a run allocates anything, estimate what it needs and stop with one line
("needs about X GiB, this machine has Y GiB free; try ...") instead of being killed by the kernel.

Training, per process (N processes, b = batch_size / N rows per micro-batch, T = block_size,
L layers, d = d_model, f = d_ff, h = heads, V = vocab_size, P = parameters; 4 bytes a float:
weights, gradients and AdamW's moments stay fp32 under bf16 autocast):

    weights      4 P / S        S = N under --fsdp (each rank keeps 1/N of every tensor), else 1
    gradients    4 P / S        + 4 P for DDP's gradient buckets (a second copy it all-reduces)
    AdamW        8 P / S        exp_avg and exp_avg_sq
    FSDP extras  4 (P_root + 2 P_block)   the root unit (embeddings, head) and a block, gathered;
                 + 8 P on rank 0           its whole copy for evaluation, and the gathered state
    activations  4 b T (L (12 d + 3 f + D + A) + 3 V)    what autograd keeps for backward:
                   per layer and position about 12 d floats (block input, two norms, q, k, v,
                   attention output, its projection, residual sums) + 3 f (the feed-forward's
                   hidden before and after the activation, a gate); D = 3 d + f for dropout's
                   masks when dropout > 0; A = 2 h T (each head's scores and softmax over the T
                   keys) where attention takes a padding mask (encoders), 0 for a causal decoder
                   (torch's fused attention keeps no T x T matrix); 3 V per position for the
                   logits, their log-softmax and its gradient
    base         0.35 GiB                   the interpreter, torch and its kernels (peak RSS of a
                                            5-step toy run: 0.34 GB)

P, P_root and P_block are counted on a model built on torch's "meta" device: no memory is
allocated. The encoder-decoder counts both stacks in L. The estimate is a rounded figure for
what autograd saves, not a measurement. Against the peak RSS of one-process CPU runs
(OMP_NUM_THREADS=1, fp32, `/usr/bin/time -v zeroformer train toy --max-steps 1 ...`):
d 128, f 512, 2 layers, 4096 x 16 tokens: estimate 1.86 / 2.30 GiB, peak 1.75 / 2.16 GiB
(dropout 0 / 0.1); d 32, f 64, 4096 x 256 tokens, dropout 0.1: estimate 6.28 GiB, peak
4.46 GiB. So about 1.05x-1.4x of the peak; tests/test_memory.py keeps a real run's ratio
between 0.8x and 3x.

Free memory: on CPU the processes of one machine share `MemAvailable` (/proc/meminfo), so the
need is N_local times the per-process figure (N_local = LOCAL_WORLD_SIZE, or --nproc); on a GPU
each process has its device: `torch.cuda.mem_get_info` of it. Where neither can be read the
check passes. `--memory_check=false` skips it.

Generation (`check_generation`, called once the model is loaded, so its weights are already
resident): the KV cache 2 L B S d_kv x bytes per value, plus the logits B V x 4 and a working set
of 4 B S d x 8; compared with what is free after loading.
"""

from __future__ import annotations

import os

import torch

from ..errors import UserError

GIB = 1 << 30
BASE = 350 << 20


def available_bytes(device: torch.device) -> int | None:
    """Free memory for this process's tensors: CUDA's free bytes, else MemAvailable; None when
    unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def parameter_counts(mcfg) -> tuple[int, int, int]:
    """(P, P_root, P_block_max) of the model `mcfg` describes, built on the meta device."""
    from torch import nn

    from ..models import build_model

    with torch.device("meta"):
        model = build_model(mcfg)
    total = sum(p.numel() for p in model.parameters())
    blocks = [sum(p.numel() for p in b.parameters())
              for m in model.modules() if isinstance(m, nn.ModuleList) for b in m]
    return total, total - sum(blocks), max(blocks, default=0)


def training_bytes(mcfg, tcfg, nproc: int, counts=None, rank0: bool = True) -> int:
    """Bytes one process needs to train (the module docstring's sum); rank 0 by default, the
    largest under FSDP."""
    p, p_root, p_block = counts or parameter_counts(mcfg)
    n = max(1, nproc)
    fsdp = tcfg.fsdp and n > 1
    s = n if fsdp else 1
    states = 16 * p // s + (4 * p if n > 1 and not fsdp else 0)
    if fsdp:
        states += 4 * (p_root + 2 * p_block) + (8 * p if rank0 else 0)
    layers = mcfg.n_layer + (mcfg.n_encoder_layer or mcfg.n_layer
                             if mcfg.arch == "encoder_decoder" else 0)
    b, t = max(1, tcfg.batch_size // n), tcfg.block_size
    drop = 3 * mcfg.d_model + mcfg.d_ff if mcfg.dropout > 0 else 0
    scores = 2 * mcfg.n_head * t if mcfg.arch != "decoder" else 0
    per_position = layers * (12 * mcfg.d_model + 3 * mcfg.d_ff + drop + scores) \
        + 3 * mcfg.vocab_size
    return BASE + states + 4 * b * t * per_position


def local_processes(nproc: int) -> int:
    """Processes of this run on this machine (they share its memory on CPU)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "") or nproc))
    except ValueError:
        return max(1, nproc)


def check_training(mcfg, tcfg, nproc: int = 1) -> None:
    """Raise a one-line UserError when training would need more memory than is free."""
    from .machine import resolve_device

    device = resolve_device(tcfg.device)
    free = available_bytes(device)
    if free is None:
        return
    counts = parameter_counts(mcfg)
    share = 1 if device.type == "cuda" else local_processes(nproc)
    need = share * training_bytes(mcfg, tcfg, nproc, counts)
    if need <= free:
        return
    hint = _smaller_batch(mcfg, tcfg, nproc, counts, share, free)
    if not tcfg.fsdp:
        hint += (" or --fsdp" if nproc > 1 else " or --fsdp with --nproc N")
    raise UserError(f"needs about {need / GIB:.1f} GiB, this machine has {free / GIB:.1f} GiB "
                    f"free; try {hint.removeprefix(' or ') or 'a smaller model'}")


def _smaller_batch(mcfg, tcfg, nproc, counts, share, free) -> str:
    """'--batch_size=B --grad_accum=G' with the same rows per step that fits, or ''."""
    batch, accum = tcfg.batch_size, tcfg.grad_accum
    step = max(1, nproc)
    while batch % 2 == 0 and (batch // 2) % step == 0:
        batch, accum = batch // 2, accum * 2
        smaller = type(tcfg)(**{**tcfg.to_dict(), "batch_size": batch, "grad_accum": accum})
        if share * training_bytes(mcfg, smaller, nproc, counts) <= free:
            return f"--batch_size={batch} --grad_accum={accum} (the same rows per step)"
    return ""


def generation_bytes(cfg, batch: int, length: int, itemsize: int = 4) -> int:
    """KV cache + logits + working set of generating `length` positions for `batch` rows."""
    head_dim = cfg.head_dim or cfg.d_model // cfg.n_head
    kv = 2 * cfg.n_layer * batch * length * (cfg.n_kv_head or cfg.n_head) * head_dim * itemsize
    return kv + 4 * batch * cfg.vocab_size + 4 * batch * length * cfg.d_model * 8


def check_generation(model, batch: int, length: int) -> None:
    """Raise a one-line UserError when generating would not fit in the memory left free."""
    param = next(model.parameters(), None)
    if param is None:
        return
    free = available_bytes(param.device)
    itemsize = param.element_size() if param.is_floating_point() else 4
    need = generation_bytes(model.config, batch, length, itemsize)
    if free is not None and need > free:
        raise UserError(f"needs about {need / GIB:.1f} GiB for the KV cache of {batch} x {length} "
                        f"positions, this machine has {free / GIB:.1f} GiB free; try fewer "
                        "prompts or a smaller --max-new-tokens")
