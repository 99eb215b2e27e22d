"""Position-wise feed-forward networks, applied to each position independently.

MLP (Vaswani et al. eq. 2):  FFN(x) = W_down act(W_up x + b_up) + b_down,   act = ReLU (paper) or GELU
Gated (Shazeer 2020):        FFN(x) = W_down (act(W_gate x) ⊙ W_up x),      SwiGLU when act = SiLU

x: (..., d_model) -> (..., d_model), hidden width d_ff.
"""

from __future__ import annotations

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

    def forward(self, x):
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        return self.down(h)
