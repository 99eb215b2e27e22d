"""Inference fast paths for a trained model: fused projections and int8 weight-only linear layers.

`prepare_inference(model, fuse=True, int8=False)` applies them in place (the model can no longer
be trained). Each equals the reference path in tests (tests/test_generate.py): fusing exactly up
to float rounding, int8 within the tolerance below.

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
path is the unquantized model (tests/test_generate.py compares them).
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


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by an Int8Linear; returns the model.
    Inference only: the int8 weights have no gradients."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child))
        else:
            quantize_int8(child)
    return model


def prepare_inference(model: nn.Module, fuse: bool = True, int8: bool = False) -> nn.Module:
    """Eval mode, fused projections (`fuse`), int8 weight-only linears (`int8`). In place."""
    from .attention import MultiHeadAttention
    from .feedforward import FeedForward

    model.eval()
    if fuse:
        for m in list(model.modules()):
            if isinstance(m, MultiHeadAttention):
                m.fuse_qkv()
            elif isinstance(m, FeedForward):
                m.fuse()
    if int8:
        quantize_int8(model)
    return model
