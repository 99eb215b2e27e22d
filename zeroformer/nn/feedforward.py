"""Position-wise feed-forward networks, applied to each position independently.

MLP (Vaswani et al. eq. 2):  FFN(x) = W_down act(W_up x + b_up) + b_down,   act = ReLU (paper) or GELU
Gated (Shazeer 2020):        FFN(x) = W_down (act(W_gate x) ⊙ W_up x),      SwiGLU when act = SiLU

x: (..., d_model) -> (..., d_model), hidden width d_ff.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,                                        # exact erf GELU (BERT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "silu": F.silu,                                        # a.k.a. swish
}


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", gated: bool = False,
                 bias: bool = True):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.gate_up = None  # fused [W_gate; W_up], set by fuse() (inference fast path)

    @torch.no_grad()
    def fuse(self) -> None:
        """Gated FFN at inference: one matmul x [W_gate; W_up]^T instead of two (same outputs)."""
        if self.gate is None or self.gate_up is not None:
            return
        w = torch.cat([self.gate.weight, self.up.weight])
        self.gate_up = nn.Linear(w.size(1), w.size(0), bias=self.up.bias is not None,
                                 device=w.device, dtype=w.dtype)
        self.gate_up.weight.copy_(w)
        if self.gate_up.bias is not None:
            self.gate_up.bias.copy_(torch.cat([self.gate.bias, self.up.bias]))
        del self.gate, self.up
        self.gate = None

    def forward(self, x):
        if self.gate_up is not None:
            g, u = self.gate_up(x).chunk(2, dim=-1)
            return self.down(self.act(g) * u)
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        return self.down(h)
