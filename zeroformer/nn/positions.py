"""Where a token is: sinusoidal encoding, learned position embedding, rotary embedding (RoPE).

Sinusoidal (Vaswani et al. 2017, section 3.5), for position pos and dimension pair i:
    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))
Both members of a pair share ONE frequency 1/10000^(2i/d). layout="interleaved" stores them as the
formula does (sin, cos, sin, cos, ...); layout="split" stores all sines, then all cosines (Marian).

RoPE (Su et al. 2021): rotate each 2-d pair (x_a, x_b) of a query/key head by the angle pos * theta_i,
theta_i = base^(-2i/d):
    [x_a']   [cos(pos θ_i)  -sin(pos θ_i)] [x_a]
    [x_b'] = [sin(pos θ_i)   cos(pos θ_i)] [x_b]
so q_m · k_n depends only on m - n. We pair dimension i with i + d/2 (the "rotate half" layout that
Hugging Face LLaMA checkpoints use); GGUF files pair (2i, 2i+1) and the importer permutes rows.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(max_len: int, d_model: int, layout: str = "interleaved") -> torch.Tensor:
    """(max_len, d_model) float32 table of the paper's formula (computed in float64)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]                # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)[None, :]         # (1, d/2): 2i
    angle = pos / torch.pow(10000.0, two_i / d_model)                          # (T, d/2)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    elif layout == "split":
        half = math.ceil(d_model / 2)
        table[:, :half] = torch.sin(angle)
        table[:, half:] = torch.cos(angle[:, : d_model - half])
    else:
        raise ValueError(f"unknown sinusoidal layout {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed table lookup: positions (B, T) -> (B, T, d_model). No parameters."""

    def __init__(self, max_len: int, d_model: int, layout: str = "interleaved"):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model, layout), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


class LearnedPositionEmbedding(nn.Embedding):
    """A trained vector per position (GPT-2, BERT): positions (B, T) -> (B, T, d_model)."""


class RotaryEmbedding(nn.Module):
    """Rotate query/key heads by position. x: (B, h, T, d), positions: (B, T) -> (B, h, T, d)."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (T, d/2)
        angles = torch.cat([angles, angles], dim=-1)                                     # (T, d)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    @staticmethod
    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        """(x_1, x_2) -> (-x_2, x_1) on the two halves of the last dimension."""
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self._lookup(positions, x.dtype)
        return x * cos + self.rotate_half(x) * sin

    def _lookup(self, positions: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin at `positions`: (B, 1, T, d). Every layer of one forward pass gets the same
        positions tensor, so the lookup of the last call is reused (2 x n_layer x 2 fewer
        gathers per decoding step)."""
        last = getattr(self, "_last", None)
        if last is None or last[0] is not positions or last[1] != dtype:
            cos = self.cos[positions].unsqueeze(1).to(dtype)
            sin = self.sin[positions].unsqueeze(1).to(dtype)
            self._last = last = (positions, dtype, cos, sin)
        return last[2], last[3]
