"""Translate a batch of sentences with an encoder-decoder, and score translations.

Sentences are sorted by length into batches (less padding) and come back in input order; an
empty text translates to an empty text. Scores: corpus BLEU (sacrebleu, 13a tokenization) and
chrF of detokenized text.

Decoding options (the defaults are those of `zeroformer translate`, of `eval bleu` and of the
translation recipes' evaluations):
    beams           4 (1 = greedy)
    length_penalty  alpha = 1.0 with length_norm "length": score = sum(log p) / |Y|^alpha, as
                    transformers' and Marian's beam search; length_norm "gnmt" divides by
                    ((5 + |Y|) / 6)^alpha, the 2017 paper's (alpha 0.6) (generate.py:length_divisor)
    output limit    max_len_a * (longest source of the batch, in tokens) + max_len_b new tokens,
                    within the model's context: 1.5 x + 10 by default; the paper's is
                    "input length + 50" (max_len_a=1, max_len_b=50). Decoding still ends at EOS.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def translate(model, tokenizer, texts: list[str], beams: int = 4, batch_sentences: int = 32,
              max_new_tokens: int | None = None, length_penalty: float = 1.0,
              on_truncate=None, length_norm: str = "length", max_len_a: float = 1.5,
              max_len_b: int = 10) -> list[str]:
    """Translate texts. A source longer than the model's context is cut to fit
    (`on_truncate(i, n_tokens)` is called for it). Output limit: `max_new_tokens`, else
    max_len_a x the batch's longest source + max_len_b tokens, within the context."""
    cfg = model.config
    eos, pad = cfg.eos_token_id, cfg.pad_token_id if cfg.pad_token_id is not None else 0
    device = next(model.parameters()).device
    limit = cfg.max_seq_len
    ids = []
    for i, t in enumerate(texts):
        x = tokenizer.encode(t) if t.strip() else []
        if len(x) + 1 > limit:
            if on_truncate is not None:
                on_truncate(i, len(x))
            x = x[: limit - 1]
        ids.append(x + [eos] if x else [])
    out = [""] * len(texts)
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i]))
    for k in range(0, len(order), batch_sentences):
        chunk = order[k: k + batch_sentences]
        s = max(len(ids[i]) for i in chunk)
        src = torch.full((len(chunk), s), pad, dtype=torch.long)
        mask = torch.zeros_like(src)
        for r, i in enumerate(chunk):
            src[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        n = max_new_tokens or max(1, min(limit - 1, int(max_len_a * s) + max_len_b))
        gen = model.generate(src.to(device), n, num_beams=beams, attention_mask=mask.to(device),
                             eos_token_id=eos, length_penalty=length_penalty,
                             length_norm=length_norm)
        for r, i in enumerate(chunk):
            row = gen[r, 1:].tolist()
            if eos in row:
                row = row[: row.index(eos)]
            out[i] = tokenizer.decode([t for t in row if t != pad], skip_special_tokens=True).strip()
    return out


def bleu_chrf(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """Corpus BLEU (sacrebleu, 13a tokenization) and chrF of detokenized text."""
    import sacrebleu

    return (sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score)
