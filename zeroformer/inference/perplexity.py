"""Perplexity of a language model on a text, with strided windows.

    PPL = exp( -(1/N) Σ_t log p(x_t | x_<t) )

Windows of `context` tokens start every `stride` tokens; each window scores only the tokens no
earlier window scored, so every token after the first is counted exactly once, each with at
least `context - stride` tokens of history (a smaller stride: more history per token, more
compute).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def windows(n_tokens: int, context: int, stride: int):
    """(start, end, first_scored) per window: tokens [start, end) are fed; the targets
    first_scored..end-1 (absolute indices) are counted. Consecutive windows overlap by at least
    one token, so each window's first target has history."""
    out, scored, start = [], 1, 0          # token 0 has no history: never predicted
    while scored < n_tokens:
        end = min(start + context, n_tokens)
        out.append((start, end, scored))
        scored = end
        start = min(start + stride, end - 1)
    return out


@torch.no_grad()
def perplexity(model, ids: list[int], context: int, stride: int, batch_size: int = 4):
    """-> (n_scored, total_nll_nats). ids: the token ids of the whole text."""
    total, count = 0.0, 0
    spans = windows(len(ids), context, stride)
    for i in range(0, len(spans), batch_size):
        group = spans[i:i + batch_size]
        width = max(e - s for s, e, _ in group)
        x = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for r, (s, e, _) in enumerate(group):   # left-pad shorter windows
            x[r, width - (e - s):] = torch.tensor(ids[s:e])
            mask[r, width - (e - s):] = 1
        logp = F.log_softmax(model(x, attention_mask=mask).float(), dim=-1)
        for r, (s, e, first) in enumerate(group):
            off = width - (e - s)
            tgt = torch.tensor(ids[first:e])                 # predicted tokens
            rows = logp[r, off + first - s - 1: off + e - s - 1]  # positions predicting them
            total -= rows.gather(1, tgt[:, None]).sum().item()
            count += len(tgt)
    return count, total


def text_perplexity(model, tok, text: str, context: int, stride: int, batch_size: int = 4):
    """{"tokens", "nll" (mean, nats/token), "bits_per_byte", "ppl"} of `text`; None when it has
    fewer than 2 tokens (nothing to score)."""
    ids = tok.encode(text)
    if len(ids) < 2:
        return None
    n, nll = perplexity(model, ids, context, stride, batch_size)
    return {"tokens": n, "nll": nll / n, "ppl": math.exp(nll / n),
            "bits_per_byte": nll / math.log(2) / len(text.encode("utf-8"))}
