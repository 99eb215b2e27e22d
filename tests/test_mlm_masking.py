"""MLM masking proportions (15% selected; of those 80% [MASK] / 10% random / 10% kept), never
special tokens or padding, dynamic per draw; NSP pairs 50/50 with correct segments."""

import math

import torch

from zeroformer.train.mlm import IGNORE_INDEX, mask_tokens, nsp_pair, pad_batch, pair_ids, special_mask

V, PAD, UNK, CLS, SEP, MASK = 500, 0, 1, 2, 3, 4


def _batch(seed=0, b=256, t=128):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (b, t), generator=g)
    ids[:, 0] = CLS
    ids[:, 60] = SEP
    ids[:, -1] = SEP
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    am = (torch.arange(t)[None] < lengths[:, None]).long()
    ids[am == 0] = PAD
    return ids, am


def _within(frac, p, n, sigmas=5.0):
    return abs(frac - p) < sigmas * math.sqrt(p * (1 - p) / n)


def test_masking_proportions_hold_statistically():
    ids, am = _batch()
    special = special_mask(V, [PAD, UNK, CLS, SEP, MASK])
    out, labels = mask_tokens(ids, torch.Generator().manual_seed(1), MASK, special, am)
    cand = ~special[ids] & am.bool()
    sel = labels != IGNORE_INDEX
    n_cand, n_sel = int(cand.sum()), int(sel.sum())
    assert _within(n_sel / n_cand, 0.15, n_cand), n_sel / n_cand
    assert not (sel & ~cand).any()                          # never specials, never padding
    assert torch.equal(labels[sel], ids[sel])               # labels are the original ids
    assert torch.equal(out[~sel], ids[~sel])                # unselected tokens untouched
    masked = sel & (out == MASK)
    kept = sel & (out == ids)
    rand = sel & ~masked & ~kept
    assert _within(int(masked.sum()) / n_sel, 0.8, n_sel), int(masked.sum()) / n_sel
    # a random draw equals the original with probability 1/(V-5): tiny, inside the tolerance
    assert _within(int(kept.sum()) / n_sel, 0.1, n_sel), int(kept.sum()) / n_sel
    assert _within(int(rand.sum()) / n_sel, 0.1, n_sel), int(rand.sum()) / n_sel
    assert not special[out[rand]].any()                     # random replacements are ordinary
    # replacements are spread over the vocabulary, not one id
    assert out[rand].unique().numel() > 100


def test_masking_is_dynamic_and_reproducible():
    ids, am = _batch(seed=3, b=8)
    special = special_mask(V, [PAD, UNK, CLS, SEP, MASK])
    a = mask_tokens(ids, torch.Generator().manual_seed(10), MASK, special, am)
    b = mask_tokens(ids, torch.Generator().manual_seed(10), MASK, special, am)
    c = mask_tokens(ids, torch.Generator().manual_seed(11), MASK, special, am)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1] != IGNORE_INDEX, c[1] != IGNORE_INDEX)


def test_pair_layout_and_truncation():
    ids, types = pair_ids([10, 11, 12], [20, 21], CLS, SEP, max_len=64)
    assert ids == [CLS, 10, 11, 12, SEP, 20, 21, SEP]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1]
    ids, types = pair_ids(list(range(100, 150)), list(range(200, 210)), CLS, SEP, max_len=32)
    assert len(ids) == 32 and len(types) == 32 and ids.count(SEP) == 2
    assert ids[-11:-1] == list(range(200, 210))             # the longer side is cut


def test_nsp_pairs_balanced_and_correct():
    # document d, segment i = [1000*d + i]: B's identity tells whether it follows A
    docs = [[[1000 * d + i] for i in range(20)] for d in range(1, 6)]
    g = torch.Generator().manual_seed(0)
    n, pos = 2000, 0
    for _ in range(n):
        ids, types, label = nsp_pair(docs, g, CLS, SEP, 16)
        a, b = ids[1], ids[3]
        assert ids[0] == CLS and ids[2] == SEP and ids[4] == SEP and types == [0, 0, 0, 1, 1]
        if label == 0:
            assert b == a + 1                                # the true next segment
            pos += 1
        else:
            assert b // 1000 != a // 1000                    # from another document
    assert _within(pos / n, 0.5, n)


def test_pad_batch():
    ids, tt, am = pad_batch([[1, 2, 3], [4]], [[0, 0, 1], [0]], PAD)
    assert ids.tolist() == [[1, 2, 3], [4, PAD, PAD]]
    assert tt.tolist() == [[0, 0, 1], [0, 0, 0]] and am.tolist() == [[1, 1, 1], [1, 0, 0]]
