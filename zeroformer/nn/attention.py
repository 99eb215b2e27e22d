"""Scaled dot-product attention, masks, multi-head / grouped-query attention (the KV caches: kv_cache.py).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V                     (Vaswani et al., eq. 1)
    MultiHead(x)       = Concat(head_1, ..., head_h) W^O,  head_i = Attention(x W_i^Q, m W_i^K, m W_i^V)

with m = x for self-attention and m = the encoder output for cross-attention. With grouped-query
attention (GQA) the h query heads share n_kv_head < h key/value heads (h / n_kv_head queries per
group); n_kv_head = 1 is multi-query attention (MQA), n_kv_head = h is ordinary multi-head attention.

Masks are boolean, True = "may attend", shaped to broadcast to (B, h, T_q, T_k). `reference_attention`
is the paper's formula written out; `attention` uses torch's fused SDPA kernel and must equal it
(tests/test_attention.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import dropout
from .kv_cache import KVCache, SlotKVCache, Slots, StaticKV  # noqa: F401 (also importable from here)
from .positions import RotaryEmbedding


# --------------------------------------------------------------------------------------- masks
def causal_mask(t_q: int, t_k: int, device=None) -> torch.Tensor:
    """(T_q, T_k) bool: query i (the last T_q of T_k positions) sees keys j <= its own position."""
    offset = t_k - t_q
    q = torch.arange(t_q, device=device).unsqueeze(1) + offset
    k = torch.arange(t_k, device=device).unsqueeze(0)
    return k <= q


def build_mask(t_q: int, t_k: int, causal: bool, key_padding: torch.Tensor | None = None,
               device=None) -> torch.Tensor | None:
    """Combine the causal mask and a key padding mask into one (B|1, 1, T_q, T_k) bool mask.

    key_padding: (B, T_k), 1/True for real tokens, 0/False for padding. Returns None when nothing
    is masked. A query row that could see nothing (a padded query under left padding) is allowed to
    see every key, so softmax never divides by zero; its output is ignored downstream.
    """
    mask = None
    if causal:
        mask = causal_mask(t_q, t_k, device=device)[None, None]
    if key_padding is not None:
        pad = key_padding.bool()[:, None, None, :]
        mask = pad if mask is None else (mask & pad)
        empty = ~mask.any(dim=-1, keepdim=True)
        mask = mask | empty
    return mask


# ----------------------------------------------------------------------------- the dot product
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, h_kv, T, d) -> (B, h_kv * n_rep, T, d): each key/value head serves n_rep query heads."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


def reference_attention(q, k, v, mask=None, causal=False, dropout_p=0.0, training=False,
                        return_weights=False):
    """softmax(Q K^T / sqrt(d_k) + M) V, written out.

    q: (B, h, T_q, d_k); k, v: (B, h_kv, T_k, d_k); mask: bool broadcastable to (B, h, T_q, T_k).
    Returns (B, h, T_q, d_k) (and the (B, h, T_q, T_k) attention weights if return_weights).
    """
    n_rep = q.size(1) // k.size(1)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))        # (B, h, T_q, T_k)
    if causal and q.size(-2) > 1:  # one query at the end sees every key: nothing to mask
        cm = causal_mask(q.size(-2), k.size(-2), device=q.device)
        mask = cm if mask is None else (mask & cm)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if dropout_p > 0.0 and training:
        weights = dropout(weights, dropout_p)
    out = weights @ v
    return (out, weights) if return_weights else out


def attention(q, k, v, mask=None, causal=False, dropout_p=0.0, training=False):
    """The same as `reference_attention`, through torch's fused scaled_dot_product_attention."""
    n_rep = q.size(1) // k.size(1)
    p = dropout_p if training else 0.0
    is_causal = causal and mask is None and q.size(-2) == k.size(-2)  # SDPA's fastest path
    if causal and not is_causal and q.size(-2) > 1:  # combine: the last T_q queries of T_k positions, plus `mask`
        cm = causal_mask(q.size(-2), k.size(-2), device=q.device)
        mask = cm if mask is None else (mask & cm)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal,
                                          enable_gqa=n_rep > 1)


# ------------------------------------------------------------------------------ multi-head
class MultiHeadAttention(nn.Module):
    """Multi-head / grouped-query attention, self or cross.

    x: (B, T_q, d_model) -> (B, T_q, d_model). Projections: q_proj (d_model -> h*d_k),
    k_proj, v_proj (d_model -> h_kv*d_k), o_proj (h*d_k -> d_model).
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int, head_dim: int, bias: bool = True,
                 dropout: float = 0.0, cross: bool = False):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, head_dim
        self.cross, self.dropout = cross, dropout
        self.q_proj = nn.Linear(d_model, n_head * head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)
        self.o_proj = nn.Linear(n_head * head_dim, d_model, bias=bias)
        self.qkv = None               # fused q/k/v projection, set by fuse_qkv() (inference)
        self.use_sdpa = True          # False: the explicit reference formula (same numbers)
        self.keep_weights = False     # True: store the last attention weights (for pictures)
        self.last_weights = None

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape                                          # (B, T, n*d) -> (B, n, T, d)
        return x.view(b, t, n, self.head_dim).transpose(1, 2)

    @torch.no_grad()
    def fuse_qkv(self) -> None:
        """Inference fast path (self-attention): one matmul x [W_q; W_k; W_v]^T instead of three.
        Replaces q_proj/k_proj/v_proj by `qkv`; the outputs are the same up to float rounding."""
        if self.cross or self.qkv is not None:
            return
        parts = (self.q_proj, self.k_proj, self.v_proj)
        w = torch.cat([p.weight for p in parts])
        self.qkv = nn.Linear(w.size(1), w.size(0), bias=self.q_proj.bias is not None,
                             device=w.device, dtype=w.dtype)
        self.qkv.weight.copy_(w)
        if self.qkv.bias is not None:
            self.qkv.bias.copy_(torch.cat([p.bias for p in parts]))
        del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, memory=None, mask=None, causal=False, rope: RotaryEmbedding | None = None,
                positions=None, cache=None):
        """x: (B, T_q, d). memory: (B, T_k, d) for cross-attention. positions: (B, T_q) for RoPE.

        Cross-attention also takes memory (B / g, T_k, d) for g consecutive query rows sharing one
        memory row (beam search: the g beams of a sentence): their queries are then folded into
        one (B / g, h, g * T_q, d) attention over the shared keys, the same numbers with g times
        fewer keys/values to project, store and read.

        cache: a KVCache (self-attention: new keys appended) or StaticKV (cross: filled once).
        """
        if self.qkv is not None:  # fused: split the one projection into q, k, v
            hq, hkv = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
            q, k, v = self.qkv(x).split([hq, hkv, hkv], dim=-1)
            q, k, v = self._heads(q, self.n_head), self._heads(k, self.n_kv_head), self._heads(
                v, self.n_kv_head)
        else:
            q = self._heads(self.q_proj(x), self.n_head)
        if self.cross and isinstance(cache, StaticKV) and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            if self.qkv is None:
                src = memory if self.cross else x
                k = self._heads(self.k_proj(src), self.n_kv_head)
                v = self._heads(self.v_proj(src), self.n_kv_head)
            if rope is not None:
                q, k = rope(q, positions), rope(k, positions)
            if isinstance(cache, StaticKV):
                cache.k, cache.v = k, v
            elif cache is not None:
                out = None
                if self.use_sdpa and not self.keep_weights and not self.training:
                    out = cache.attend_new(q, k, v, mask)  # beam search's fast path, or None
                if out is not None:
                    return self.o_proj(out.transpose(1, 2).reshape(x.size(0), 1, -1))
                k, v = cache.append(k, v)
        if self.cross and rope is not None:
            raise ValueError("RoPE is for self-attention only")
        p = self.dropout if self.training else 0.0
        b, _, t, _ = q.shape
        g = b // k.size(0)  # > 1: g query rows share one memory row (the beams of one sentence)
        if g > 1:           # fold them into the query axis: (B*g, h, T, d) -> (B, h, g*T, d)
            q = q.view(b // g, g, self.n_head, t, -1).transpose(1, 2).reshape(
                b // g, self.n_head, g * t, -1)
        if self.use_sdpa and not self.keep_weights:
            out = attention(q, k, v, mask=mask, causal=causal, dropout_p=p, training=self.training)
        else:
            out, w = reference_attention(q, k, v, mask=mask, causal=causal, dropout_p=p,
                                         training=self.training, return_weights=True)
            self.last_weights = w.detach() if self.keep_weights else None
        if g > 1:
            out = out.view(b // g, self.n_head, g, t, -1).transpose(1, 2)
        return self.o_proj(out.transpose(-3, -2).reshape(b, t, self.n_head * self.head_dim))
