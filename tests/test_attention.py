"""The fused SDPA path equals the paper's formula; masks; GQA; the KV cache."""

import math

import pytest
import torch

from zeroformer.nn import q4
from zeroformer.nn.attention import (KVCache, MultiHeadAttention, attention, build_mask,
                                     causal_mask, reference_attention, repeat_kv)

torch.manual_seed(0)


def qkv(b=2, h=4, h_kv=4, tq=7, tk=7, d=8):
    return torch.randn(b, h, tq, d), torch.randn(b, h_kv, tk, d), torch.randn(b, h_kv, tk, d)


def test_reference_is_the_formula():
    q, k, v = qkv(h=2, h_kv=2)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)), -1)
    assert torch.allclose(reference_attention(q, k, v), w @ v, atol=1e-6)


@pytest.mark.parametrize("h,h_kv", [(4, 4), (4, 2), (4, 1)])       # MHA, GQA, MQA
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_equals_reference(h, h_kv, causal, padded):
    q, k, v = qkv(h=h, h_kv=h_kv)
    mask = None
    if padded:
        keep = torch.ones(2, 7, dtype=torch.bool)
        keep[0, :3] = False                      # left padding in row 0
        keep[1, 5:] = False                      # right padding in row 1
        mask = build_mask(7, 7, causal=causal, key_padding=keep)
    ref = reference_attention(q, k, v, mask=mask, causal=causal)
    fast = attention(q, k, v, mask=mask, causal=causal)
    assert torch.isfinite(fast).all()
    assert torch.allclose(ref, fast, atol=1e-5)


def test_causal_with_cache_offset():
    """The last 3 of 7 queries under a causal mask == the full computation's last 3 rows."""
    q, k, v = qkv()
    full = attention(q, k, v, causal=True)
    tail = attention(q[:, :, -3:], k, v, causal=True)
    assert torch.allclose(full[:, :, -3:], tail, atol=1e-5)
    assert torch.allclose(reference_attention(q[:, :, -3:], k, v, causal=True), tail, atol=1e-5)


def test_causal_mask_shape_and_content():
    m = causal_mask(3, 5)
    assert m.tolist() == [[True, True, True, False, False],
                          [True, True, True, True, False],
                          [True, True, True, True, True]]


def test_future_and_padding_do_not_leak():
    q, k, v = qkv(b=1)
    keep = torch.ones(1, 7, dtype=torch.bool)
    keep[0, 1] = False
    mask = build_mask(7, 7, causal=True, key_padding=keep)
    out = attention(q, k, v, mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 1] += 100.0                          # a padded key
    v2[:, :, 1] += 100.0
    k2[:, :, 6] += 100.0                          # the future of every query but the last
    v2[:, :, 6] += 100.0
    out2 = attention(q, k2, v2, mask=mask)
    assert torch.allclose(out[:, :, :6], out2[:, :, :6], atol=1e-5)


def test_repeat_kv_groups_queries():
    k = torch.arange(2 * 3).float().view(1, 2, 3, 1)
    r = repeat_kv(k, 2)                            # heads 0,1 share kv head 0; 2,3 share kv head 1
    assert torch.equal(r[0, 0], r[0, 1]) and torch.equal(r[0, 2], r[0, 3])
    assert torch.equal(r[0, 2], k[0, 1])


def test_mha_reference_and_sdpa_paths_agree_with_gqa_and_cache():
    mha = MultiHeadAttention(d_model=32, n_head=4, n_kv_head=2, head_dim=8).eval()
    x = torch.randn(2, 6, 32)
    fast = mha(x, causal=True)
    mha.use_sdpa = False
    ref = mha(x, causal=True)
    assert torch.allclose(fast, ref, atol=1e-5)
    mha.use_sdpa = True
    cache = KVCache(2, 2, 10, 8, torch.float32, "cpu")
    steps = [mha(x[:, :4], causal=True, cache=cache)]
    steps += [mha(x[:, i:i + 1], causal=True, cache=cache) for i in (4, 5)]
    assert torch.allclose(torch.cat(steps, 1), fast, atol=1e-5)


def test_cross_attention_uses_memory_mask():
    mha = MultiHeadAttention(16, 2, 2, 8, cross=True).eval()
    x, mem = torch.randn(1, 3, 16), torch.randn(1, 5, 16)
    keep = torch.tensor([[True, True, True, False, False]])
    mask = build_mask(3, 5, causal=False, key_padding=keep)
    a = mha(x, memory=mem, mask=mask)
    mem2 = mem.clone()
    mem2[:, 3:] = torch.randn(1, 2, 16)
    assert torch.allclose(a, mha(x, memory=mem2, mask=mask), atol=1e-6)
    assert torch.allclose(a, mha(x, memory=mem[:, :3]), atol=1e-5)


def test_kept_attention_weights_are_distributions():
    mha = MultiHeadAttention(16, 2, 2, 8).eval()
    mha.keep_weights = True
    mha(torch.randn(1, 4, 16), causal=True)
    w = mha.last_weights
    assert w.shape == (1, 2, 4, 4)
    assert torch.allclose(w.sum(-1), torch.ones(1, 2, 4), atol=1e-6)
    assert (w.triu(1) == 0).all()


@pytest.mark.parametrize("by_ancestry", [False, True])
@pytest.mark.parametrize("index", [[0, 1, 2, 3, 4, 5], [1, 0, 2, 3, 4, 5], [0, 0, 2, 3, 3, 5],
                                   [2, 0, 1, 3, 4, 5], [5, 4, 3, 2, 1, 0], [1, 1, 1, 1, 1, 1],
                                   [4, 1, 5], [0]])
def test_kv_cache_reorder_equals_gathering_the_rows(index, by_ancestry, monkeypatch):
    """Beam search's reorder: copying, in place for the few rows that move (swaps, copies, cycles:
    each reads the rows as they were), through a second buffer otherwise or when rows are dropped;
    or rows never moved and read by ancestry. Either way the cache then holds k[index] over the
    filled positions, and appending continues from there."""
    monkeypatch.setattr(KVCache, "by_ancestry", by_ancestry)
    if by_ancestry and not q4.available():
        pytest.skip("the C kernels are not built here (no C compiler or no AVX-512 VNNI)")
    torch.manual_seed(0)
    cache = KVCache(6, 2, 9, 4, torch.float32, "cpu")
    k, v = torch.randn(6, 2, 5, 4), torch.randn(6, 2, 5, 4)
    cache.append(k, v)
    idx = torch.tensor(index)
    cache.reorder(idx)
    assert cache.length == 5 and (cache.anc is not None) == by_ancestry
    if not by_ancestry:
        assert torch.equal(cache.k[:, :, :5], k[idx]) and torch.equal(cache.v[:, :, :5], v[idx])
    k2, v2 = torch.randn(len(index), 2, 1, 4), torch.randn(len(index), 2, 1, 4)
    kk, vv = cache.append(k2, v2)
    assert torch.equal(kk, torch.cat([k[idx], k2], 2)) and torch.equal(vv, torch.cat([v[idx], v2], 2))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("h,h_kv,d", [(4, 4, 32), (8, 2, 64), (2, 2, 8), (3, 1, 48)])
def test_attention_read_by_ancestry_equals_copying_the_rows(h, h_kv, d, masked):
    """A beam search's worth of steps (random reorders, rows dropped, left padding) on two caches:
    rows copied + the reference formula, and rows never moved, read through the ancestry table by
    q4_step.c:zf_attend_rows (AVX-512 for d a multiple of 16, the portable loop for d = 8 and 48
    in part): the same outputs to float rounding at every step."""
    if not q4.available():
        pytest.skip("the C kernels are not built here (no C compiler or no AVX-512 VNNI)")
    g = torch.Generator().manual_seed(h * 100 + d)
    n, t_max = 8, 14
    fast = KVCache(n, h_kv, t_max, d, torch.float32, "cpu")
    slow = KVCache(n, h_kv, t_max, d, torch.float32, "cpu")
    slow.by_ancestry = False
    k, v = torch.randn(n, h_kv, 3, d, generator=g), torch.randn(n, h_kv, 3, d, generator=g)
    fast.append(k, v), slow.append(k, v)
    keep = torch.ones(n, t_max, dtype=torch.bool)
    for r in range(n):
        keep[r, : r % 3] = False                    # left padding of the prompts
    rows = n
    for step in range(10):
        idx = torch.randint(0, rows, (rows - (2 if step in (3, 6) else 0),), generator=g)
        fast.reorder(idx), slow.reorder(idx)
        keep, rows = keep[idx], idx.numel()
        q = torch.randn(rows, h, 1, d, generator=g) * 3
        k, v = torch.randn(rows, h_kv, 1, d, generator=g), torch.randn(rows, h_kv, 1, d, generator=g)
        mask = keep[:, None, None, : fast.length + 1] if masked else None
        out = fast.attend_new(q, k, v, mask)
        assert out is not None and fast.anc is not None
        kk, vv = slow.append(k, v)
        ref = reference_attention(q, kk, vv, mask=mask)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (step, (out - ref).abs().max())
    assert fast.length == slow.length == 13
