"""The decoder-only language model: GPT-2, LLaMA and SmolLM2 are configurations of this one class.

    h_0 = Embed(x)                                       token (+ learned position) embedding
    h_l = Block_l(h_{l-1})       l = 1..L                causal self-attention + feed-forward
    logits = W_out Norm(h_L)                             W_out = E^T when embeddings are tied

input_ids (B, T) -> logits (B, T, vocab). Left-padded batches pass attention_mask (B, T), 0 = pad.
With a cache (from `new_cache`, models/base.py), only the new tokens are fed; keys/values of the
past are reused. `generate` is models/base.py:GenerativeModel.generate.
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..batching import SlotSession
from ..generate import DecoderSession
from ..nn.attention import build_mask
from ..nn.blocks import TransformerBlock
from ..nn.embeddings import Embeddings, positions_from_mask
from ..nn.init import init_normal
from ..nn.norms import make_norm
from ..nn.positions import RotaryEmbedding
from ..nn.q4 import LlamaStep
from .base import GenerativeModel


class Decoder(GenerativeModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.embed = Embeddings(cfg)
        self.rope = (RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_base)
                     if cfg.position == "rope" else None)
        self.blocks = nn.ModuleList(TransformerBlock(cfg, causal=True) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.final_norm else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_normal)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight

    # ------------------------------------------------------- what generation needs (base.py)
    decoder_layers = property(lambda self: self.blocks)
    decoder_embeddings = property(lambda self: self.embed)

    def sequence_lengths(self, input_len, max_new_tokens):
        return [(f"prompt ({input_len} tokens) + max_new_tokens ({max_new_tokens})",
                 input_len + max_new_tokens)]

    def generation_start(self, input_ids, attention_mask, use_cache):
        """The prompt is input_ids itself; its rows run in one DecoderSession."""
        return input_ids, attention_mask, lambda rows, max_len: DecoderSession(
            self, rows, max_len, use_cache)

    def slot_session(self, max_batch, max_len):
        """Every row an independent sequence in its own cache slot (batching.py)."""
        return SlotSession(self, max_batch, max_len)

    fused_step = False  # True (nn/fast.py:prepare_inference): one token in one C call, where
                        # the model fits nn/q4.py:LlamaStep (built on first use, per copy)

    @property
    def fast_step(self):
        """The fused decoding step (nn/q4.py:LlamaStep), or None where it does not fit."""
        if not self.fused_step:
            return None
        step = self.__dict__.get("_fused_cache", False)
        if step is False:                    # not built yet (or this is a copy of the model)
            step = self.__dict__["_fused_cache"] = LlamaStep.build(self)
        return step

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                return_hidden=False, last_only=False):
        """attention_mask: (B, past + T) with 0 for padding; cache: from new_cache().
        last_only: compute logits for the last position only (generation)."""
        b, t = input_ids.shape
        past = cache.length if cache is not None else 0
        step = self.fast_step
        if step is not None and not return_hidden and step.fits(input_ids, attention_mask,
                                                                position_ids, cache):
            return self.lm_head(step(self.embed.tok(input_ids), cache, past))  # one token
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
