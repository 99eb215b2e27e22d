"""The encoder-decoder model: masks, caching, padding, shared/tied embeddings, checkpoints."""

import math

import pytest
import torch

import zeroformer
from zeroformer.models import build_model

V, PAD, EOS = 50, 0, 1


def small(**kw):
    kw = dict(dict(vocab_size=V, n_layer=2, n_encoder_layer=2, d_model=32, n_head=4, d_ff=64,
                   max_seq_len=64, dropout=0.0, pad_token_id=PAD, eos_token_id=EOS,
                   decoder_start_token_id=PAD), **kw)
    cfg = zeroformer.preset("transformer-small", **kw)
    torch.manual_seed(0)
    m = build_model(cfg).eval()
    with torch.no_grad():  # sharper distributions than the init, so argmax ties cannot happen
        for p in m.parameters():
            p.mul_(3.0)
    return m


def src_batch():
    g = torch.Generator().manual_seed(3)
    src = torch.randint(2, V, (3, 8), generator=g)
    mask = torch.ones_like(src)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return src.masked_fill(mask == 0, PAD), mask


def test_shapes_and_tied_shared_embeddings():
    m = small()
    assert m.lm_head.weight is m.embed.tok.weight and m.tgt_embed is None
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 5))
    assert m(src, tgt, src_mask=mask).shape == (3, 5, V)
    u = small(tie_embeddings=False, share_embeddings=False)
    assert u.tgt_embed is not None and u.lm_head.weight is not u.tgt_embed.tok.weight


def test_target_cannot_see_the_future():
    m = small()
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 6))
    base = m(src, tgt, src_mask=mask)
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(2, V, (3, 2))
    out = m(src, changed, src_mask=mask)
    torch.testing.assert_close(out[:, :4], base[:, :4])
    assert not torch.allclose(out[:, 4:], base[:, 4:])


def test_padded_source_positions_are_invisible():
    m = small()
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 6))
    base = m(src, tgt, src_mask=mask)
    noisy = torch.where(mask.bool(), src, torch.randint(2, V, src.shape))
    torch.testing.assert_close(m(noisy, tgt, src_mask=mask), base)
    # and the padded row equals the same sentence alone, unpadded
    alone = m(src[1:2, :5], tgt[1:2])
    torch.testing.assert_close(alone, base[1:2], atol=3e-4, rtol=1e-4)
    # without the mask the padding *is* visible (the test can fail)
    assert not torch.allclose(m(noisy, tgt), m(src, tgt))


def test_padded_target_rows_match_unpadded():
    m = small()
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 6))
    tmask = torch.ones_like(tgt)
    tmask[0, 4:] = 0
    out = m(src, tgt, src_mask=mask, tgt_mask=tmask)
    alone = m(src[:1], tgt[:1, :4])
    torch.testing.assert_close(out[:1, :4], alone, atol=3e-4, rtol=1e-4)


def test_cached_equals_uncached_decoding():
    m = small()
    src, mask = src_batch()
    for beams in (1, 3):
        a = m.generate(src, 10, attention_mask=mask, num_beams=beams, eos_token_id=-1)
        b = m.generate(src, 10, attention_mask=mask, num_beams=beams, eos_token_id=-1,
                       use_cache=False)
        assert a.tolist() == b.tolist()
        assert a.shape == (3, 11)
    # step logits themselves agree, not just argmax
    memory = m.encode(src, mask)
    tgt = m.generate(src, 6, attention_mask=mask, eos_token_id=-1)
    full = m.decode(tgt, memory, src_mask=mask)
    cache = m.new_cache(3, 8)
    steps = [m.decode(tgt[:, t:t + 1], memory, src_mask=mask, cache=cache) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=3e-4, rtol=1e-4)


def test_generation_batched_equals_one_by_one():
    m = small()
    src, mask = src_batch()
    both = m.generate(src, 8, attention_mask=mask, num_beams=2)
    for i, n in enumerate(mask.sum(1).tolist()):
        one = m.generate(src[i:i + 1, :n], 8, num_beams=2)
        row = both[i, : one.size(1)].tolist()
        assert row == one[0].tolist()
        assert all(t == PAD for t in both[i, one.size(1):].tolist())


def test_empty_source_is_finite():
    m = small()
    src = torch.full((2, 4), PAD)
    mask = torch.zeros_like(src)
    mask[1, :2] = 1
    out = m(src, torch.full((2, 3), PAD), src_mask=mask)
    assert torch.isfinite(out).all()


def test_checkpoint_round_trip(tmp_path):
    from zeroformer.io.checkpoint import save_checkpoint

    m = small(share_embeddings=False)
    save_checkpoint(m, tmp_path / "ck")
    back = zeroformer.load(tmp_path / "ck")
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 5))
    torch.testing.assert_close(back(src, tgt, src_mask=mask), m(src, tgt, src_mask=mask))


def test_dropout_only_in_training():
    m = small(dropout=0.3)
    src, mask = src_batch()
    tgt = torch.randint(2, V, (3, 5))
    m.eval()
    torch.testing.assert_close(m(src, tgt, src_mask=mask), m(src, tgt, src_mask=mask))
    m.train()
    assert not torch.allclose(m(src, tgt, src_mask=mask), m(src, tgt, src_mask=mask))


@pytest.mark.parametrize("layout", ["interleaved", "split"])
def test_paper_preset_defaults(layout):
    cfg = zeroformer.preset("transformer-base", sinusoidal_layout=layout)
    assert (cfg.n_layer, cfg.n_encoder_layer, cfg.d_model, cfg.n_head, cfg.d_ff) == (6, 6, 512, 8, 2048)
    assert cfg.prenorm is False and cfg.scale_embeddings and cfg.dropout == 0.1
    assert cfg.sinusoidal_layout == layout
    # the model built from it stores PE(pos, 2i) = sin, PE(pos, 2i+1) = cos (section 3.5) where the
    # layout says: interleaved (sin, cos, sin, cos, ...) or split (all sines, then all cosines)
    from zeroformer.nn.positions import SinusoidalPositionalEncoding

    with torch.device("meta"):
        shapes = build_model(cfg)
    assert any(isinstance(m, SinusoidalPositionalEncoding) for m in shapes.modules())
    m = small(sinusoidal_layout=layout, d_model=8, n_head=2)
    tables = [mod.table for mod in m.modules() if isinstance(mod, SinusoidalPositionalEncoding)]
    assert tables
    d, half = 8, 4
    for table in tables:
        for pos in (0, 1, 5, 63):
            for i in range(half):
                angle = pos / 10000 ** (2 * i / d)
                s_col, c_col = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, half + i)
                assert table[pos, s_col].item() == pytest.approx(math.sin(angle), abs=1e-6)
                assert table[pos, c_col].item() == pytest.approx(math.cos(angle), abs=1e-6)
