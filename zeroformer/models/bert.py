"""BERT (Devlin et al. 2018): a post-norm Transformer encoder over token + position + segment
embeddings, and the small heads that sit on top of it.

    h_0 = LayerNorm(E[x_t] + P[t] + S[segment_t])                       (B, T, H)
    h_l = Block_l(h_{l-1}),  l = 1..L   bidirectional self-attention, x <- LN(x + Sublayer(x))
    pooled      = tanh(W_p h_L[:, 0] + b_p)                             (B, H)   the [CLS] vector
    MLM logits  = LN(gelu(W_t h_L + b_t)) E^T + b_v                    (B, T, V) decoder tied to E
    NSP logits  = W_nsp pooled + b                                      (B, 2)
    classify    = W_c Dropout(pooled) + b                               (B, num_labels)
    tokens      = W_k Dropout(h_L) + b                                  (B, T, num_labels)
    sentence    = sum_t m_t h_L[:, t] / sum_t m_t   (mean over real tokens; L2-normalised)  (B, H)

Which heads exist is configuration: `cfg.heads`, a list from HEADS. "nsp" and "classify"
read the pooled vector, so they imply "pooler". Without the key the model is a bare `BertModel`
with its pooler. `forward` returns MLM logits when the model has the MLM head, else h_L.
Labels for "classify"/"tokens": `cfg.num_labels` and optionally `cfg.labels`
(names, index = class id).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..nn.attention import build_mask
from ..nn.blocks import TransformerBlock
from ..nn.dropout import Dropout
from ..nn.embeddings import Embeddings
from ..nn.feedforward import ACTIVATIONS
from ..nn.init import init_normal
from ..nn.norms import make_norm
from .base import Model

HEADS = ("mlm", "nsp", "pooler", "classify", "tokens")
DEFAULT_HEADS = ("pooler",)


def bert_heads(cfg: ModelConfig) -> list[str]:
    """The heads `cfg` asks for, in HEADS order, with the pooler added where a head needs it."""
    heads = list(cfg.heads if cfg.heads is not None else DEFAULT_HEADS)
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown BERT head(s) {unknown}; known: {HEADS}")
    if "nsp" in heads or "classify" in heads:
        heads.append("pooler")
    return [h for h in HEADS if h in heads]


class MLMHead(nn.Module):
    """Transform h -> LN(gelu(W h + b)); the decoder to the vocabulary is the token embedding E
    (tied, so only its bias lives here) unless `tied` is False."""

    def __init__(self, cfg: ModelConfig, tied: bool = True):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.act = ACTIVATIONS[cfg.activation]
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.decoder = None if tied else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """h: (..., H), embedding: (V, H) -> logits (..., V)."""
        h = self.norm(self.act(self.dense(h)))
        w = embedding if self.decoder is None else self.decoder.weight
        return F.linear(h, w, self.bias)


class Bert(Model):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.heads = bert_heads(cfg)
        self.embed = Embeddings(cfg)
        self.blocks = nn.ModuleList(TransformerBlock(cfg, causal=False) for _ in range(cfg.n_layer))
        has = self.heads.__contains__
        n_labels = cfg.num_labels
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model) if has("pooler") else None
        self.mlm = MLMHead(cfg, tied=cfg.tie_embeddings) if has("mlm") else None
        self.nsp = nn.Linear(cfg.d_model, 2) if has("nsp") else None
        self.classifier = nn.Linear(cfg.d_model, n_labels) if has("classify") else None
        self.token_classifier = nn.Linear(cfg.d_model, n_labels) if has("tokens") else None
        self.head_dropout = Dropout(cfg.dropout)
        self.apply(init_normal)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels or [str(i) for i in range(self.config.num_labels)])

    # ---------------------------------------------------------------------------- the encoder
    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) 1 = real / 0 = pad, token_type_ids (B, T)
        -> h_L (B, T, H). Positions are 0..T-1 (BERT pads on the right)."""
        b, t = input_ids.shape
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0).expand(b, t)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = build_mask(t, t, causal=False, key_padding=attention_mask,
                              device=input_ids.device)
        h = self.embed(input_ids, positions, token_type_ids)
        for block in self.blocks:
            h = block(h, mask=mask)
        return h

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """MLM logits (B, T, V) when the model has the MLM head, else hidden states (B, T, H)."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        return self.mlm_logits(h) if self.mlm is not None else h

    # ---------------------------------------------------------------------------- the heads
    def _need(self, module, name):
        if module is None:
            raise ValueError(f"this BERT has no {name} head (heads: {self.heads})")
        return module

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., H) -> (..., V). Pass only the masked positions to save the big matmul."""
        return self._need(self.mlm, "mlm")(hidden, self.embed.tok.weight)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, H) -> tanh(W_p h[:, 0] + b_p) (B, H)."""
        return torch.tanh(self._need(self.pooler, "pooler")(hidden[:, 0]))

    def nsp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, H) -> (B, 2); class 0 = "B follows A", 1 = "B is random" (as in HF)."""
        return self._need(self.nsp, "nsp")(self.pool(hidden))

    def classify(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Sequence classification logits (B, num_labels) from the pooled [CLS] vector."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        return self._need(self.classifier, "classify")(self.head_dropout(self.pool(h)))

    def token_logits(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Token classification logits (B, T, num_labels)."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        return self._need(self.token_classifier, "tokens")(self.head_dropout(h))

    def sentence_embedding(self, input_ids, attention_mask=None, token_type_ids=None,
                           normalize: bool = True) -> torch.Tensor:
        """Mean of h_L over real tokens (sentence-transformers' pooling) -> (B, H), unit length
        when `normalize`."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        return mean_pool(h, attention_mask, normalize)


def mean_pool(hidden: torch.Tensor, attention_mask=None, normalize: bool = True) -> torch.Tensor:
    """sum_t m_t h_t / max(sum_t m_t, 1e-9): hidden (B, T, H), mask (B, T) -> (B, H)."""
    if attention_mask is None:
        out = hidden.mean(1)
    else:
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(out, p=2, dim=-1) if normalize else out
