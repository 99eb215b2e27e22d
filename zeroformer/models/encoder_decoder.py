"""The 2017 Transformer (Vaswani et al., "Attention Is All You Need"): an encoder reads the source,
a decoder writes the target one token at a time. Marian (opus-mt) checkpoints are this model.

    m   = Encoder(x):   h_0 = Embed(x),  h_l = Block_l(h_{l-1})            (bidirectional self-attn)
    z_t = Decoder(y_<t, m): g_0 = Embed(y), g_l = Block_l(g_{l-1}, m)      (causal self-attn,
                                                                            cross-attn to m)
    logits_t = W_out z_t + b                  W_out = E^T when tied; b = final_logits_bias (Marian)

Embed(x) = E[x] * sqrt(d_model) + PE(pos) (section 3.4); the encoder and decoder share E when
`cfg.share_embeddings` (default True), and the output projection is E^T when
`cfg.tie_embeddings` (section 3.4: "we share the same weight matrix between the two embedding
layers and the pre-softmax linear transformation").

Shapes: src_ids (B, S), tgt_ids (B, T) -> logits (B, T, V). Masks are (B, S) / (B, T), 1 = real
token, 0 = padding. Teacher forcing: tgt_ids starts with `decoder_start_token_id`; the loss compares
logits[:, t] with the target token t+1.

Generation (models/base.py:GenerativeModel.generate, the one `generate` of every model) runs the
shared engine (zeroformer/generate.py) over a `Seq2SeqSession`: the source is encoded once, each
cross-attention layer's K/V is computed once (StaticKV) and the decoder's self-attention
keys/values accumulate in a KVCache.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..generate import Session
from ..nn.attention import build_mask
from ..nn.blocks import TransformerBlock
from ..nn.embeddings import Embeddings, positions_from_mask
from ..nn.norms import make_norm
from .base import GenerativeModel


def padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) 1/0 key mask -> (B, 1, 1, S) bool for cross-attention, or None when nothing is padded.
    A row with no real token (an empty source) may see every key so softmax stays finite."""
    if mask is None or bool(mask.all()):
        return None
    return build_mask(1, mask.size(-1), causal=False, key_padding=mask)


class EncoderDecoder(GenerativeModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.embed = Embeddings(cfg)                      # source (and target, when shared)
        share = cfg.share_embeddings
        self.tgt_embed = None if share else Embeddings(cfg)
        self.encoder = nn.ModuleList(TransformerBlock(cfg, causal=False)
                                     for _ in range(cfg.n_encoder_layer))
        self.decoder = nn.ModuleList(TransformerBlock(cfg, causal=True, cross_attention=True)
                                     for _ in range(cfg.n_layer))
        # pre-norm variants end each stack with a norm; the paper's post-norm model does not
        self.enc_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.final_norm else None
        self.dec_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.final_norm else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # Marian adds a fixed (not trained) bias to the logits; zeros for our own models
        self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        self.apply(lambda m: init_weights(m, cfg.d_model))
        if cfg.tie_embeddings:
            self.lm_head.weight = self.target_embeddings.tok.weight

    @property
    def target_embeddings(self) -> Embeddings:
        return self.tgt_embed if self.tgt_embed is not None else self.embed

    # -------------------------------------------------------------------------------- encoder
    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src_ids (B, S) -> memory (B, S, d_model). Padded positions' outputs are never read."""
        b, s = src_ids.shape
        if src_mask is not None and bool(src_mask.all()):
            src_mask = None
        positions = positions_from_mask(src_mask, s, 0, b, src_ids.device)
        mask = build_mask(s, s, causal=False, key_padding=src_mask) if src_mask is not None else None
        h = self.embed(src_ids, positions)
        for block in self.encoder:
            h = block(h, mask=mask)
        return self.enc_norm(h) if self.enc_norm is not None else h

    # -------------------------------------------------------------------------------- decoder
    def decode(self, tgt_ids, memory, src_mask=None, tgt_mask=None, cache=None, last_only=False,
               return_hidden=False):
        """tgt_ids (B, T) (the newest T tokens when `cache` holds the earlier ones), memory
        (B, S, d) -> logits (B, T, V) ((B, 1, V) with last_only).

        tgt_mask: (B, past + T) 1/0, only needed when real target tokens follow padding.
        cache: a list of LayerCache (one per decoder block), see `new_cache`."""
        b, t = tgt_ids.shape
        past = cache[0].self_kv.length if cache is not None else 0
        positions = positions_from_mask(None, t, past, b, tgt_ids.device)
        mask = None
        if tgt_mask is not None and not bool(tgt_mask.all()):
            mask = build_mask(t, past + t, causal=True, key_padding=tgt_mask, device=tgt_ids.device)
        memory_mask = padding_mask(src_mask)
        h = self.target_embeddings(tgt_ids, positions)
        for i, block in enumerate(self.decoder):
            h = block(h, mask=mask, memory=memory, memory_mask=memory_mask,
                      cache=cache[i] if cache is not None else None)
        if self.dec_norm is not None:
            h = self.dec_norm(h)
        if return_hidden:
            return h
        if last_only:
            h = h[:, -1:]
        logits = self.lm_head(h)
        if self.final_logits_bias.any():   # adding zeros (our own models) changes nothing
            logits = logits + self.final_logits_bias.to(h.dtype)
        return logits

    def forward(self, src_ids, tgt_ids, src_mask=None, tgt_mask=None, return_hidden=False):
        """Teacher forcing: src_ids (B, S), tgt_ids (B, T) -> logits (B, T, V) (the decoder's
        final hidden states (B, T, d) with return_hidden, for a loss fused with the output layer)."""
        memory = self.encode(src_ids, src_mask)
        return self.decode(tgt_ids, memory, src_mask=src_mask, tgt_mask=tgt_mask,
                           return_hidden=return_hidden)

    # ------------------------------------------------------- what generation needs (base.py)
    decoder_layers = property(lambda self: self.decoder)
    decoder_embeddings = property(lambda self: self.target_embeddings)
    # finished rows are padded with pad_token_id, as transformers does for Marian
    default_pad_token_id = property(lambda self: self.config.pad_token_id)

    def sequence_lengths(self, input_len, max_new_tokens):
        return [(f"the source ({input_len} tokens)", input_len),
                (f"the start token + max_new_tokens ({max_new_tokens})", 1 + max_new_tokens)]

    def generation_start(self, input_ids, attention_mask, use_cache):
        """Translate: input_ids (B, S) is the source and attention_mask (B, S) its padding mask.
        The source is encoded once; the target starts with decoder_start_token_id (as
        transformers does), so generate returns (B, 1 + n). A sentence's beams share its
        memory row (Seq2SeqSession's `rows`)."""
        c = self.config
        start = c.decoder_start_token_id if c.decoder_start_token_id is not None else c.bos_token_id
        if start is None:
            raise ValueError("config has neither decoder_start_token_id nor bos_token_id")
        memory = self.encode(input_ids, attention_mask)
        prompt = input_ids.new_full((input_ids.size(0), 1), start)
        return prompt, None, lambda rows, max_len: Seq2SeqSession(
            self, memory, attention_mask, max_len, use_cache, rows=rows)


class Seq2SeqSession(Session):
    """A generation session (see generate.py) for the encoder–decoder: the encoder output
    `memory` (N, S, d) is fixed; `step` feeds the newest target tokens and returns (N, V) logits.

    Cached: cross-attention K/V are computed on the first step and kept (StaticKV); decoder
    self-attention K/V are appended to a KVCache.
    Uncached (use_cache=False): the whole target prefix is re-run every step (the slow reference).

    rows: the number of target rows N (default memory.size(0)); N = g * memory.size(0) means g
    consecutive rows (the beams of one sentence) share one memory row, its cross K/V and mask
    (see MultiHeadAttention: never copied per beam).
    """

    def __init__(self, model, memory, src_mask, max_len, use_cache=True, rows=None):
        self.model, self.memory, self.src_mask = model, memory, src_mask
        rows = rows or memory.size(0)
        if rows % memory.size(0):
            raise ValueError(f"{rows} target rows cannot share {memory.size(0)} memory rows")
        self.group = rows // memory.size(0)
        super().__init__(model.new_cache(rows, max_len) if use_cache else None)

    @torch.no_grad()
    def step(self, ids, attention_mask=None):
        logits = self.model.decode(self.tokens(ids), self.memory, src_mask=self.src_mask,
                                   cache=self.cache, last_only=True)
        return logits[:, -1]

    def reorder(self, index):
        """Keep rows `index`. Beams only move within a sentence, whose rows share memory and
        cross K/V, so those are re-indexed only when beam search drops finished sentences."""
        shrink = index.numel() != self.memory.size(0) * self.group
        if shrink:
            index_memory = index[:: self.group] // self.group  # the sentences kept
            self.memory = self.memory.index_select(0, index_memory)
            if self.src_mask is not None:
                self.src_mask = self.src_mask.index_select(0, index_memory)
        if self.cache is None:
            return super().reorder(index)  # the prefix
        for layer in self.cache:
            layer.self_kv.reorder(index)
            if shrink:
                layer.cross_kv.reorder(index_memory)


def init_weights(module: nn.Module, d_model: int) -> None:
    """Xavier-uniform linear weights, zero biases, N(0, d_model^-1/2) embeddings (the scale that
    makes E[x] * sqrt(d_model) unit-variance, as in fairseq/Marian training from scratch)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=d_model ** -0.5)


__all__ = ["EncoderDecoder", "Seq2SeqSession", "padding_mask"]
