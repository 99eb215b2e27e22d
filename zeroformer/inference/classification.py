"""Classify texts with a BERT sequence classifier, and score it.

A row is ``(text, text_b or None, label)`` (zeroformer/data/labelled.py). The model reads
``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` (segment ids 0 / 1), cut to `max_length` tokens.

    accuracy = mean_i [argmax_c logits_i = y_i]       macro-F1 = mean_c 2 P_c R_c / (P_c + R_c)
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..train.mlm import pad_batch, pair_ids


def special_id(tok, name: str) -> int:
    """The id of special token `name` (e.g. "[CLS]"); UserError when the tokenizer has none."""
    i = tok.special_tokens.get(name, tok.token_to_id(name))
    if i is None:
        raise UserError(f"the tokenizer has no {name} token")
    return int(i)


def classify_batch(tok, rows, labels: list[str], max_length: int) -> dict:
    """rows -> {"input_ids", "token_type_ids", "attention_mask"} (B, T) right-padded, and
    "labels" (B,) the index of each row's label in `labels`."""
    cls, sep = special_id(tok, "[CLS]"), special_id(tok, "[SEP]")
    pad = tok.special_tokens.get("[PAD]", 0)
    ids, types = [], []
    for text, text_b, _ in rows:
        a = tok.encode_ordinary(text)
        if text_b is None:
            a = a[:max_length - 2]
            i, t = [cls] + a + [sep], [0] * (len(a) + 2)
        else:
            i, t = pair_ids(a, tok.encode_ordinary(text_b), cls, sep, max_length)
        ids.append(i)
        types.append(t)
    x, tt, am = pad_batch(ids, types, pad)
    y = torch.tensor([labels.index(r[2]) for r in rows])
    return {"input_ids": x, "token_type_ids": tt, "attention_mask": am, "labels": y}


def accuracy_f1(pred: torch.Tensor, gold: torch.Tensor, n_classes: int) -> dict:
    """accuracy = mean(pred == gold); macro-F1 = mean over classes of 2PR / (P + R)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": float((pred == gold).float().mean()), "macro_f1": sum(f1s) / len(f1s)}


@torch.no_grad()
def score_batches(model, batches, n_classes: int) -> dict:
    """{"accuracy", "macro_f1"} of the model's argmax over encoded batches (classify_batch)."""
    dev = next(model.parameters()).device
    pred, gold = [], []
    for batch in batches:
        batch = {k: v.to(dev) for k, v in batch.items()}
        pred.append(model.classify(batch["input_ids"], batch["attention_mask"],
                                   batch["token_type_ids"]).argmax(-1).cpu())
        gold.append(batch["labels"].cpu())
    return accuracy_f1(torch.cat(pred), torch.cat(gold), n_classes)


def classifier_scores(model, tok, rows, batch_size: int = 32, max_length: int = 128) -> dict:
    """{"accuracy", "macro_f1"} of a classifier on labelled rows (labels: model.labels)."""
    batches = (classify_batch(tok, rows[s:s + batch_size], model.labels, max_length)
               for s in range(0, len(rows), batch_size))
    return score_batches(model, batches, len(model.labels))
