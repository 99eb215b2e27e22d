"""Sentence embeddings from a BERT encoder, and ranking by similarity.

An embedding is the mean of BERT's last hidden states over the real tokens of
``[CLS] text [SEP]``, L2-normalised (sentence-transformers' mean pooling):

    e = normalize( sum_t m_t h_L[t] / sum_t m_t )          (H,) with |e| = 1

For unit vectors the cosine similarity is the dot product: score_i = e_query . e_i in [-1, 1].
"""

from __future__ import annotations

import torch

from ..errors import UserError


def bert_batch(tok, texts, max_length: int):
    """texts -> {"input_ids", "attention_mask", "token_type_ids"} (B, T), each row
    ``[CLS] ids[:max_length-2] [SEP]`` right-padded (BERT framing whatever the tokenizer's own
    `wrap` does; without [CLS]/[SEP] in the vocabulary, just the ids). Raises UserError naming
    the text's position when it has no tokens at all."""
    cls, sep = tok.cls_token_id, tok.sep_token_id
    framed = cls is not None and sep is not None
    rows = []
    for k, t in enumerate(texts):
        ids = tok.encode(t)
        rows.append([cls] + ids[:max_length - 2] + [sep] if framed else ids[:max_length])
        if not rows[-1]:
            raise UserError(f"text {k + 1} ({t!r}) has no tokens and this tokenizer has no "
                            "[CLS]/[SEP]: cannot embed an empty text")
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@torch.inference_mode()
def embed_texts(model, tok, texts, batch_size=32, max_length=512) -> torch.Tensor:
    """texts (N strings) -> (N, H) float32 unit vectors. Batches texts of similar length together
    (less padding) and returns rows in the input order."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be positive (got {batch_size})")
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = torch.empty(len(texts), model.config.d_model)
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        enc = bert_batch(tok, [texts[i] for i in idx], max_length)
        e = model.sentence_embedding(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        out[idx] = e.float()
    return out


def rank(query_emb: torch.Tensor, doc_emb: torch.Tensor, top: int):
    """(H,), (N, H) unit vectors -> [(score, index)] best first, at most `top` (ties: lower
    index first)."""
    scores = doc_emb @ query_emb
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:top]
    return [(float(scores[i]), i) for i in order]
