"""BERT's pretraining inputs: masked-language-model corruption and next-sentence pairs.

Masking (Devlin et al. 2018, section 3.1 and appendix A.1). Each ordinary token (never [CLS],
[SEP], [PAD] or any other special token) is selected for prediction with probability p = 0.15;
a selected token is then replaced by

    [MASK]            with probability 0.8
    a random token    with probability 0.1     (uniform over the ordinary, non-special vocabulary)
    itself            with probability 0.1

and its label is the original id; unselected positions get label -100 (ignored by the loss).
Masks are drawn from a torch.Generator per batch, so every time the trainer meets a sentence pair
(every epoch) it is masked afresh: dynamic masking (RoBERTa), not one static copy.

Next-sentence pairs: ``[CLS] A [SEP] B [SEP]`` with token types 0 for ``[CLS] A [SEP]`` and 1 for
``B [SEP]``; B is the segment that really follows A (label 0, "IsNext") with probability 0.5, else
a random segment from another document (label 1, "NotNext") - the label order of HF's NSP head.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def mask_tokens(input_ids: torch.Tensor, gen: torch.Generator, mask_id: int,
                special: torch.Tensor, attention_mask: torch.Tensor | None = None,
                p: float = 0.15, p_mask: float = 0.8, p_random: float = 0.1):
    """Corrupt a batch for MLM.

    input_ids (B, T) long; special: (V,) bool, True for ids that are never selected nor drawn as
    random replacements; attention_mask (B, T), 0 = padding (never selected).
    Returns (corrupted ids (B, T), labels (B, T) with IGNORE_INDEX where not selected).
    """
    ids = input_ids.clone()
    candidates = ~special[input_ids]
    if attention_mask is not None:
        candidates &= attention_mask.bool()
    selected = (torch.rand(ids.shape, generator=gen) < p) & candidates
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = torch.rand(ids.shape, generator=gen)               # one draw decides mask/random/keep
    to_mask = selected & (u < p_mask)
    to_random = selected & (u >= p_mask) & (u < p_mask + p_random)
    ordinary = (~special).nonzero().squeeze(1)
    pick = torch.randint(0, ordinary.numel(), ids.shape, generator=gen)
    ids[to_mask] = mask_id
    ids[to_random] = ordinary[pick][to_random]
    return ids, labels


def special_mask(vocab_size: int, special_ids) -> torch.Tensor:
    """(V,) bool with True at `special_ids`."""
    m = torch.zeros(vocab_size, dtype=torch.bool)
    m[torch.tensor(sorted(set(special_ids)), dtype=torch.long)] = True
    return m


def pair_ids(a: list[int], b: list[int], cls_id: int, sep_id: int, max_len: int):
    """``[CLS] a [SEP] b [SEP]`` truncated to max_len (longer side first, from its end) ->
    (ids, token_type_ids)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_len - 3:
        (a if len(a) >= len(b) else b).pop()
    ids = [cls_id] + a + [sep_id] + b + [sep_id]
    return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)


def nsp_pair(docs: list[list[list[int]]], gen: torch.Generator, cls_id: int, sep_id: int,
             max_len: int):
    """One NSP example from `docs` (documents -> segments -> ids): (ids, types, label).

    A is a random segment that has a successor; B is that successor (label 0) with probability
    0.5, else a random segment of a different document (label 1)."""
    def rint(n):
        return int(torch.randint(0, n, (1,), generator=gen))

    with_next = [d for d in range(len(docs)) if len(docs[d]) > 1]
    d = with_next[rint(len(with_next))]
    i = rint(len(docs[d]) - 1)
    if float(torch.rand(1, generator=gen)) < 0.5 or len(docs) < 2:
        b, label = docs[d][i + 1], 0
    else:
        other = rint(len(docs) - 1)
        other += other >= d                                # any document but d
        b, label = docs[other][rint(len(docs[other]))], 1
    ids, types = pair_ids(docs[d][i], b, cls_id, sep_id, max_len)
    return ids, types, label


def pad_batch(rows: list[list[int]], types: list[list[int]], pad_id: int):
    """Right-pad -> input_ids, token_type_ids, attention_mask, each (B, T_max) long."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    tt = torch.zeros_like(ids)
    am = torch.zeros_like(ids)
    for k, (r, t) in enumerate(zip(rows, types)):
        ids[k, :len(r)] = torch.tensor(r)
        tt[k, :len(t)] = torch.tensor(t)
        am[k, :len(r)] = 1
    return ids, tt, am
