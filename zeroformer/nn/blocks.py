"""The one Transformer block, configured: pre- or post-norm, causal or not, with or without
cross-attention. Encoder layers, decoder layers, BERT layers, GPT-2 and LLaMA layers are all this.

Post-norm (2017 paper, BERT, Marian), each sub-layer S:   x <- Norm(x + Dropout(S(x)))
Pre-norm  (GPT-2, LLaMA):                                 x <- x + Dropout(S(Norm(x)))

Sub-layers in order: masked/unmasked self-attention, [cross-attention to the encoder output],
position-wise feed-forward. x: (B, T, d_model) -> (B, T, d_model).
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .attention import MultiHeadAttention
from .dropout import Dropout
from .feedforward import FeedForward
from .norms import make_norm


class LayerCache:
    """What one block remembers while decoding: its self-attention KVCache, its cross-attention K/V."""

    def __init__(self, self_kv=None, cross_kv=None):
        self.self_kv, self.cross_kv = self_kv, cross_kv

    def reorder(self, index):
        for c in (self.self_kv, self.cross_kv):
            if c is not None:
                c.reorder(index)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool, cross_attention: bool = False):
        super().__init__()
        self.prenorm, self.causal = cfg.prenorm, causal

        def mha(cross):
            return MultiHeadAttention(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim,
                                      bias=cfg.bias, dropout=cfg.attn_dropout, cross=cross)

        def norm():
            return make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)

        self.self_attn, self.norm_attn = mha(False), norm()
        self.cross_attn = mha(True) if cross_attention else None
        self.norm_cross = norm() if cross_attention else None
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.gated_ffn, cfg.bias)
        self.norm_ffn = norm()
        self.dropout = Dropout(cfg.dropout)

    def _sublayer(self, x, norm, fn):
        if self.prenorm:
            return x + self.dropout(fn(norm(x)))
        return norm(x + self.dropout(fn(x)))

    def forward(self, x, mask=None, rope=None, positions=None, memory=None, memory_mask=None,
                cache: LayerCache | None = None):
        """x: (B, T, d). mask: bool (B|1, 1, T, T_k) for self-attention or None (then causal if the
        block is causal). memory: (B, S, d) encoder output, memory_mask: (B, 1, 1, S)."""
        self_kv = cache.self_kv if cache is not None else None
        x = self._sublayer(x, self.norm_attn, lambda h: self.self_attn(
            h, mask=mask, causal=self.causal, rope=rope, positions=positions, cache=self_kv))
        if self.cross_attn is not None:
            cross_kv = cache.cross_kv if cache is not None else None
            x = self._sublayer(x, self.norm_cross, lambda h: self.cross_attn(
                h, memory=memory, mask=memory_mask, cache=cross_kv))
        return self._sublayer(x, self.norm_ffn, self.ffn)
