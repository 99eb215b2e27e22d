"""Input embeddings shared by every family: token (+ position) (+ segment), scaled, normalised.

    h_0 = Dropout(Norm( E[x_t] * s + P[pos_t] + S[segment_t] ))

- s = sqrt(d_model) when `scale_embeddings` (2017 paper, section 3.4; Marian), else 1;
- P is a learned table (GPT-2, BERT), the fixed sinusoidal table (2017 paper), or absent when the
  model uses RoPE inside attention (LLaMA);
- S, the segment (token type) embedding, only for BERT; Norm only when `embed_norm` (BERT).
ids, positions, segments: (B, T) -> (B, T, d_model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .dropout import Dropout
from .norms import make_norm
from .positions import LearnedPositionEmbedding, SinusoidalPositionalEncoding


class Embeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n_pos = cfg.max_seq_len + cfg.position_offset
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = None
        if cfg.position == "learned":
            self.pos = LearnedPositionEmbedding(n_pos, cfg.d_model)
        elif cfg.position == "sinusoidal":
            self.pos = SinusoidalPositionalEncoding(n_pos, cfg.d_model, cfg.sinusoidal_layout)
        self.seg = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.embed_norm else None
        self.drop = Dropout(cfg.dropout)
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.position_offset = cfg.position_offset
        self.max_positions = cfg.max_seq_len

    def forward(self, ids: torch.Tensor, positions: torch.Tensor,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        h = self.tok(ids)
        if self.scale != 1.0:
            h = h * self.scale
        if self.pos is not None:
            if int(positions.max()) >= self.max_positions:
                raise ValueError(f"position {int(positions.max())} >= context {self.max_positions}")
            h = h + self.pos(positions + self.position_offset)
        if self.seg is not None:
            h = h + self.seg(segments if segments is not None else torch.zeros_like(ids))
        if self.norm is not None:
            h = self.norm(h)
        return self.drop(h)


def positions_from_mask(attention_mask: torch.Tensor | None, t_new: int, past: int,
                        batch: int, device) -> torch.Tensor:
    """Position ids (B, t_new) of the newest tokens.

    Without a mask: past, past+1, ... With a (B, past + t_new) mask (0 = padding, e.g. left padding
    in a batch of prompts): a token's position is the number of real tokens before it, so a padded
    prompt gets the same positions as the unpadded one.
    """
    if attention_mask is None:
        return torch.arange(past, past + t_new, device=device).unsqueeze(0).expand(batch, -1)
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)[:, -t_new:]
