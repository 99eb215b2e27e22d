"""Inference fast paths for a trained model: fused projections, int8 / int4 weight-only linears.

`prepare_inference(model, fuse=True, int8=False, int4=False)` applies them in place (the model can
no longer be trained). Each equals the reference path in tests (tests/test_generate.py,
tests/test_fast_paths.py): fusing exactly up to float rounding, int8 / int4 within stated tolerances.

Fusing: q/k/v projections become one matmul (MultiHeadAttention.fuse_qkv), gate/up of a gated FFN
one more (FeedForward.fuse): fewer, larger matmuls per decoding step.

Int8 weight-only (decoding is memory-bound, so reading a quarter of the bytes per weight is most
of the speed).

Per output channel j, the weight row is stored as int8 with one scale:
    s_j = max_i |W_ji| / 127,    Q_ji = round(W_ji / s_j) in [-127, 127]
    y_j = s_j * sum_i x_i Q_ji + b_j      ≈ (x W^T + b)_j,   relative error ~ 1e-2
The product runs in torch's int8-weight kernel (`torch._weight_int8pack_mm`) with bfloat16
activations, the case it has a fast CPU kernel for; the output is cast back to the input dtype.
`quantize_int8(model)` swaps every nn.Linear (the output projection included); the reference
path is the unquantized model (tests/test_generate.py compares them). `quantize_int4` does the
same with Int4Linear (Int8Linear where the kernel cannot take a shape).

Int4 weight-only, group-wise (asymmetric, groups of g = 32 inputs): for output row j and
group G of inputs,
    s_jG = (max_G W_j - min_G W_j) / 15,   Q_ji = round((W_ji - min_G W_j) / s_jG) in [0, 15]
    W_ji ≈ (Q_ji - 8) s_jG + z_jG,         z_jG = min_G W_j + 8 s_jG
run by torch's CPU int4 kernel (`torch._weight_int4pack_mm_for_cpu`, bf16 activations; it takes
(K/g, N, 2) [scale, zero] pairs). Half the bytes of int8 again. CPU only. RefinedInt4Linear
(the output layer with int4_head="refine") re-scores the top 64 int4 logits with int8 rows.
"""

from __future__ import annotations

import torch
from torch import nn

_HAS_KERNEL = hasattr(torch, "_weight_int8pack_mm")


class Int8Linear(nn.Module):
    """nn.Linear(in, out) with an int8 weight (out, in) and a per-row scale (out,)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.size(-1)).to(torch.bfloat16).contiguous()
        if _HAS_KERNEL and x.device.type == "cpu":
            y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scale)
        else:  # any other device: dequantize on the fly (same numbers, no speed-up)
            y = (x2 @ self.weight_int8.to(x2.dtype).t()) * self.scale
        y = y.to(x.dtype).view(*lead, self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


class Int4Linear(nn.Module):
    """nn.Linear(in, out) with 4-bit weights in groups of `group` inputs (packed for torch's CPU
    kernel, (out, in / 2) uint8) and a bf16 [scale, zero] pair per (group, output)."""

    def __init__(self, linear: nn.Linear, group: int = 32):
        super().__init__()
        n, k = linear.weight.shape
        w = linear.weight.detach().float().view(n, k // group, group)   # (N, K/g, g)
        lo, hi = w.amin(-1), w.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)                          # (N, K/g)
        q = torch.round((w - lo[..., None]) / scale[..., None]).clamp(0, 15)
        q = q.to(torch.int32).view(n, k)
        self.register_buffer("weight_int4", torch._convert_weight_to_int4pack_for_cpu(q, 2))
        zero = lo + 8 * scale
        self.register_buffer("scale_zero", torch.stack([scale.t(), zero.t()], -1)
                             .to(torch.bfloat16).contiguous())             # (K/g, N, 2)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)
        self.in_features, self.out_features, self.group = k, n, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.size(-1)).to(torch.bfloat16).contiguous()
        y = torch._weight_int4pack_mm_for_cpu(x2, self.weight_int4, self.group, self.scale_zero)
        y = y.to(x.dtype).view(*lead, self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, group={self.group}, "
                f"bias={self.bias is not None}")


class RefinedInt4Linear(nn.Module):
    """An output layer in two passes: int4 logits for every row (Int4Linear), then the `k` largest
    recomputed with int8 rows (Int8Linear's quantization):
        y = int4(x);  J = top-k(y);  y_J = s_J * (x Q_J^T)
    The winners (argmax, top-k/top-p candidates) get int8 accuracy at about int4 cost."""

    def __init__(self, linear: nn.Linear, group: int = 32, k: int = 64):
        super().__init__()
        self.coarse, self.fine, self.k = int4_layer(linear, group), Int8Linear(linear), k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from . import q4

        y = self.coarse(x)
        k = min(self.k, y.size(-1))
        idx = q4.topk_indices(y, k)                                           # (..., k)
        flat = idx.reshape(-1)       # index_select: the same rows as weight_int8[idx], ~15x faster
        rows = self.fine.weight_int8.index_select(0, flat).view(*idx.shape, -1).to(x.dtype)
        exact = (rows @ x.unsqueeze(-1)).squeeze(-1) * self.fine.scale[idx].to(x.dtype)
        if self.fine.bias is not None:
            exact = exact + self.fine.bias.to(x.dtype)[idx]
        return y.scatter_(-1, idx, exact)                   # y is this call's own tensor


def int4_layer(linear: nn.Linear, group: int = 32) -> nn.Module:
    """The int4 layer for `linear`: Q4Linear (nn/q4.py, our AVX-512 VNNI kernel: blocks of 32,
    fp16 d and m, int8 activations) where it is compiled here and in_features % 64 == 0, else
    Int4Linear (torch's kernel, bf16 activations)."""
    from . import q4

    if group == 32 and linear.in_features % 64 == 0 and linear.weight.device.type == "cpu" \
            and q4.available():
        return q4.Q4Linear.from_linear(linear)
    return Int4Linear(linear, group)


def int4_group(linear: nn.Linear) -> int | None:
    """The int4 group size for this layer (32: as accurate as the kernel allows, and as fast as
    64 in our measurements), or None if the kernel cannot take it
    (it needs in % 32 == 0 and out % 16 == 0)."""
    if not hasattr(torch, "_weight_int4pack_mm_for_cpu") or linear.weight.device.type != "cpu":
        return None
    k, n = linear.in_features, linear.out_features
    return 32 if k % 32 == 0 and n % 16 == 0 else None


def _swap_linears(model: nn.Module, make) -> nn.Module:
    """Replace (in place) every nn.Linear `child` of `model` by make(name, child), where name is
    the child's own attribute name (e.g. "lm_head"). Returns the model."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, make(name, child))
        else:
            _swap_linears(child, make)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by an Int8Linear. Returns the model.
    Inference only: the weights have no gradients."""
    return _swap_linears(model, lambda name, linear: Int8Linear(linear))


def quantize_int4(model: nn.Module, keep_int8: tuple = (), refine: tuple = ()) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by an Int4Linear where the kernel accepts its
    shape (`int4_group`), else by an Int8Linear; children named in `keep_int8` become Int8Linear,
    those in `refine` RefinedInt4Linear. Returns the model. Inference only."""
    def make(name, linear):
        g = None if name in keep_int8 else int4_group(linear)
        if not g:
            return Int8Linear(linear)
        return RefinedInt4Linear(linear, g) if name in refine else int4_layer(linear, g)

    return _swap_linears(model, make)


def cpu_has_native_bf16() -> str | None:
    """The CPU's native bf16 instruction set named in /proc/cpuinfo's flags ("amx_bf16" or
    "avx512_bf16"), or None (no such flag, or no /proc/cpuinfo: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return None
    return next((name for name in ("amx_bf16", "avx512_bf16") if name in flags), None)


INT4_HEADS = ("int4", "int8", "refine")


def prepare_inference(model: nn.Module, fuse: bool = True, int8: bool = False,
                      int4: bool = False, int4_head: str = "int4") -> nn.Module:
    """Eval mode, fused projections (`fuse`), int8 weight-only linears (`int8`) or int4 ones
    (`int4`). In place. With `int4`, the output layer `lm_head` is stored as `int4_head`: "int4"
    (like the body), "int8" (Int8Linear), or "refine" (int4 plus int8 re-scoring of its top 64,
    RefinedInt4Linear).

    (torch.compile of the forward was tried and measured no faster than eager int4 on SmolLM2 at
    1-2 CPU threads: x2.21 / x2.90 vs x2.75 / x2.89 over transformers fp32; it was removed.)"""
    from .attention import MultiHeadAttention
    from .feedforward import FeedForward

    if int4_head not in INT4_HEADS:
        raise ValueError(f"int4_head must be one of {INT4_HEADS} (got {int4_head!r})")
    model.eval()
    if fuse:
        for m in list(model.modules()):
            if isinstance(m, MultiHeadAttention):
                m.fuse_qkv()
            elif isinstance(m, FeedForward):
                m.fuse()
    if int4:
        quantize_int4(model, keep_int8=("lm_head",) if int4_head == "int8" else (),
                      refine=("lm_head",) if int4_head == "refine" else ())
        if hasattr(model, "fused_step"):   # a decoder: one token in one call where it fits
            model.fused_step = True
    elif int8:
        quantize_int8(model)
    return model
