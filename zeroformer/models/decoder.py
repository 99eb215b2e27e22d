"""The decoder-only language model: GPT-2, LLaMA and SmolLM2 are configurations of this one class.

    h_0 = Embed(x)                                       token (+ learned position) embedding
    h_l = Block_l(h_{l-1})       l = 1..L                causal self-attention + feed-forward
    logits = W_out Norm(h_L)                             W_out = E^T when embeddings are tied

input_ids (B, T) -> logits (B, T, vocab). Left-padded batches pass attention_mask (B, T), 0 = pad.
With a cache (from `new_cache`), only the new tokens are fed; keys/values of the past are reused.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..generate import GenerationMixin
from ..nn.attention import KVCache, build_mask
from ..nn.blocks import LayerCache, TransformerBlock
from ..nn.embeddings import Embeddings, positions_from_mask
from ..nn.init import init_normal
from ..nn.norms import make_norm
from ..nn.positions import RotaryEmbedding


class ModelCache(list):
    """One LayerCache per block. `length` = positions already cached."""

    @property
    def length(self) -> int:
        return self[0].self_kv.length if self else 0

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self:
            layer.reorder(index)


class Decoder(nn.Module, GenerationMixin):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = Embeddings(cfg)
        self.rope = (RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_base)
                     if cfg.position == "rope" else None)
        self.blocks = nn.ModuleList(TransformerBlock(cfg, causal=True) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.final_norm else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_normal)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight

    def new_cache(self, batch: int, max_len: int, dtype=None) -> ModelCache:
        p = self.embed.tok.weight  # (lm_head may be an Int8Linear without .weight)
        c = self.config
        return ModelCache(LayerCache(KVCache(batch, c.n_kv_head, max_len, c.head_dim,
                                             dtype or p.dtype, p.device)) for _ in self.blocks)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                return_hidden=False, last_only=False):
        """attention_mask: (B, past + T) with 0 for padding; cache: from new_cache().
        last_only: compute logits for the last position only (generation)."""
        b, t = input_ids.shape
        past = cache.length if cache is not None else 0
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing padded: let SDPA use its causal fast path
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, t, past, b, input_ids.device)
        mask = None
        if attention_mask is not None:
            mask = build_mask(t, past + t, causal=True, key_padding=attention_mask,
                              device=input_ids.device)
        h = self.embed(input_ids, position_ids)
        for i, block in enumerate(self.blocks):
            h = block(h, mask=mask, rope=self.rope, positions=position_ids,
                      cache=cache[i] if cache is not None else None)
        if self.norm is not None:
            h = self.norm(h)
        if return_hidden:
            return h
        if last_only:
            h = h[:, -1:]
        return self.lm_head(h)
