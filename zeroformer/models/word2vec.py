"""word2vec (Mikolov et al. 2013a, b): a word's vector is learned by predicting its neighbours.

Two tables of d numbers per word: `embed` (the input vectors v, the word vectors one keeps) and
`context` (the output vectors u). A training example is an input and a true target word o plus
K "negative" words drawn from the unigram distribution raised to 3/4:

    skip-gram   h = v_c                      the centre word c predicts each word o of its window
    CBOW        h = mean_{j in window} v_j   the window's words predict the centre word o
    score(w)    = h . u_w
    loss        = -log sigmoid(h . u_o) - sum_{k=1..K} log sigmoid(-h . u_{n_k}),
                  n_k ~ P(w) proportional to count(w)^0.75          (2013b, eq. 4)

Initialisation as word2vec.c and gensim: v uniform in [-0.5/d, 0.5/d], u = 0. CBOW's backward
pass is theirs too: the error at h reaches every window vector in full, not divided by the
window's size (the gradient of a sum, the forward value of a mean).
ModelConfig: arch="word2vec", vocab_size, d_model = d. Sampling, subsampling and the loss are in
zeroformer/train/word2vec.py; neighbours and analogies in zeroformer/inference/word_vectors.py.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import Model


class Word2Vec(Model):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)      # v: the word vectors
        self.context = nn.Embedding(cfg.vocab_size, cfg.d_model)    # u: the output vectors
        with torch.no_grad():
            self.embed.weight.uniform_(-0.5 / cfg.d_model, 0.5 / cfg.d_model)
            self.context.weight.zero_()

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor,
                input_mask: torch.Tensor | None = None) -> torch.Tensor:
        """inputs: (B,) centre words (skip-gram) or (B, C) window words with input_mask (B, C),
        1 = a word, 0 = padding (CBOW); targets: (B, 1 + K) the true word, then the negatives.
        -> scores h . u_w, (B, 1 + K)."""
        if inputs.dim() == 1:
            h = self.embed(inputs)                                          # (B, d)
        else:
            m = input_mask.to(self.embed.weight.dtype).unsqueeze(-1)        # (B, C, 1)
            total = (self.embed(inputs) * m).sum(1)                         # (B, d)
            h = total.detach() / m.sum(1).clamp(min=1.0) + (total - total.detach())
        return torch.einsum("bd,bkd->bk", h, self.context(targets))        # (B, 1 + K)


def nearest(vectors: torch.Tensor, query: torch.Tensor, top: int, exclude=()) -> list[tuple[int, float]]:
    """The `top` rows of `vectors` (N, d) with the highest cosine similarity to `query` (d,),
    best first, leaving out the row indices in `exclude` (and rows of norm 0):

        cos(a, b) = a . b / (|a| |b|)
    """
    v = vectors.float()
    norms = v.norm(dim=1)
    cos = (v @ query.float()) / (norms * query.float().norm()).clamp(min=1e-12)
    cos[norms == 0] = float("-inf")
    for i in exclude:
        cos[i] = float("-inf")
    k = min(top, int(torch.isfinite(cos).sum()))
    best = torch.topk(cos, k)
    return [(int(i), float(c)) for c, i in zip(best.values, best.indices)]
