"""What every model declares (models/base.py) and the one generate: config and tokenizer on every
model, one argument check (beam search refuses what it does not support, by name), one context
check for decoder-only and encoder-decoder, the uncached reference path; and the small nn items
(make_norm's bias, the int8 / int4 quantizers and their output-layer choice)."""

import pytest
import torch

import zeroformer
from zeroformer.errors import UserError
from zeroformer.models import build_model
from zeroformer.models.base import GenerativeModel, Model
from zeroformer.nn.attention import StaticKV

V, PAD, EOS = 50, 0, 1


def decoder(vocab=V):
    torch.manual_seed(0)
    return build_model(zeroformer.preset("tiny", vocab_size=vocab, max_seq_len=32)).eval()


def encoder_decoder():
    cfg = zeroformer.preset("transformer-small", vocab_size=V, n_layer=2, n_encoder_layer=2,
                            d_model=32, n_head=4, d_ff=64, max_seq_len=16, dropout=0.0,
                            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    torch.manual_seed(0)
    m = build_model(cfg).eval()
    with torch.no_grad():  # sharper distributions: no argmax near-ties
        for p in m.parameters():
            p.mul_(3.0)
    return m


def bert():
    cfg = zeroformer.preset("bert-base", vocab_size=V, n_layer=1, d_model=32, n_head=2, d_ff=64,
                            max_seq_len=16)
    return build_model(cfg).eval()


GENERATIVE = {"decoder": decoder, "encoder_decoder": encoder_decoder}


@pytest.mark.parametrize("make", [decoder, encoder_decoder, bert])
def test_every_model_declares_config_and_tokenizer(make):
    m = make()
    assert isinstance(m, Model)
    assert m.tokenizer is None                       # declared, not set ad hoc by loaders
    assert m.config.arch in ("decoder", "encoder", "encoder_decoder")
    assert isinstance(m, GenerativeModel) == (m.config.arch != "encoder")
    assert hasattr(m, "generate") == (m.config.arch != "encoder")


@pytest.mark.parametrize("make", [decoder, encoder_decoder])
def test_new_cache_has_one_layer_cache_per_decoder_block(make):
    m = make()
    cache = m.new_cache(3, 7)
    assert len(cache) == m.config.n_layer and cache.length == 0
    for layer in cache:
        assert layer.self_kv.k.shape == (3, m.config.n_kv_head, 7, m.config.head_dim)
        assert isinstance(layer.cross_kv, StaticKV) == (m.config.arch == "encoder_decoder")


@pytest.mark.parametrize("arch", sorted(GENERATIVE))
@pytest.mark.parametrize("bad", [dict(repetition_penalty=1.2), dict(temperature=0.7),
                                 dict(top_k=5), dict(top_p=0.9), dict(stream=print),
                                 dict(stop=lambda s: s[:, -1] == 3)])
def test_beam_search_refuses_what_it_does_not_support(arch, bad):
    """Decoder.generate(ids, 8, num_beams=2, repetition_penalty=1.2) used to pass the check and
    raise a TypeError inside beam_search (the encoder-decoder silently ignored it)."""
    m = GENERATIVE[arch]()
    ids = torch.randint(2, V, (1, 4))
    (name,) = bad
    with pytest.raises(UserError, match=f"num_beams=2.*{name}"):
        m.generate(ids, 8, num_beams=2, **bad)
    m.generate(ids, 3, num_beams=1, **bad)  # sampling takes each of them


@pytest.mark.parametrize("arch", sorted(GENERATIVE))
def test_generate_checks_arguments(arch):
    m = GENERATIVE[arch]()
    ids = torch.randint(2, V, (1, 4))
    for bad in (dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(num_beams=0),
                dict(repetition_penalty=0.0), dict(max_new_tokens=-1)):
        kw = dict(dict(max_new_tokens=3), **bad)
        with pytest.raises(UserError):
            m.generate(ids, **kw)


def test_encoder_decoder_context_check():
    """The encoder-decoder checks its context as the decoder does: a user error naming it, not an
    IndexError/ValueError from the position table. max_seq_len = 16."""
    m = encoder_decoder()
    with pytest.raises(UserError, match="source .*context of 16"):
        m.generate(torch.randint(2, V, (1, 17)), 3)
    with pytest.raises(UserError, match="start token.*context of 16"):
        m.generate(torch.randint(2, V, (1, 4)), 16)
    assert m.generate(torch.randint(2, V, (1, 16)), 15, eos_token_id=-1).shape == (1, 16)


def test_decoder_context_check():
    m = decoder()
    with pytest.raises(UserError, match=r"prompt \(30 tokens\).*context of 32"):
        m.generate(torch.randint(2, V, (1, 30)), 3)
    assert m.generate(torch.randint(2, V, (1, 30)), 2, eos_token_id=-1).shape == (1, 32)


@pytest.mark.parametrize("beams", [1, 3])
def test_decoder_uncached_generate_equals_cached(beams):
    """use_cache=False (the whole prefix re-run each step, the reference path) gives the cached
    path's tokens, on a left-padded batch, for greedy and beam search."""
    m = decoder()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    ids = torch.randint(2, V, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    kw = dict(attention_mask=mask, num_beams=beams, eos_token_id=-1)
    a = m.generate(ids, 8, **kw)
    b = m.generate(ids, 8, use_cache=False, **kw)
    assert a.shape == (2, 14) and a.tolist() == b.tolist()


def test_generate_restores_training_mode():
    m = decoder().train()
    m.generate(torch.randint(2, V, (1, 3)), 2)
    assert m.training


# ------------------------------------------------------------------------------- nn items
@pytest.mark.parametrize("bias", [True, False])
def test_make_norm_honours_bias(bias):
    """make_norm("layernorm", bias=False) has no b, and equals torch's LayerNorm(bias=False)."""
    from zeroformer.nn.norms import make_norm

    ours = make_norm("layernorm", 8, 1e-5, bias=bias)
    ref = torch.nn.LayerNorm(8, eps=1e-5, bias=bias)
    assert (ours.bias is not None) == bias
    with torch.no_grad():
        ref.weight.copy_(torch.randn(8))
        ours.weight.copy_(ref.weight)
        if bias:
            ref.bias.copy_(torch.randn(8))
            ours.bias.copy_(ref.bias)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(ours(x), ref(x))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_quantize_int8_makes_only_int8():
    from zeroformer.nn.fast import Int8Linear, quantize_int8

    m = quantize_int8(decoder())
    kinds = {type(mod) for mod in m.modules()}
    assert Int8Linear in kinds and torch.nn.Linear not in kinds
    assert not any("Int4" in k.__name__ for k in kinds)


@pytest.mark.skipif(not hasattr(torch, "_weight_int4pack_mm_for_cpu"),
                    reason="this torch has no CPU int4 kernel")
@pytest.mark.parametrize("head", ["int4", "int8", "refine"])
def test_int4_head_is_one_string(head):
    from zeroformer.nn.fast import (Int4Linear, Int8Linear, RefinedInt4Linear,
                                    prepare_inference)

    from zeroformer.nn.q4 import Q4Linear

    int4 = (Int4Linear, Q4Linear)  # torch's kernel or ours (nn/fast.py:int4_layer)
    m = prepare_inference(decoder(vocab=64), fuse=False, int4=True, int4_head=head)
    assert type(m.blocks[0].ffn.up) in int4  # the body is int4 whatever the head
    expect = {"int4": int4, "int8": (Int8Linear,), "refine": (RefinedInt4Linear,)}[head]
    assert type(m.lm_head) in expect


@pytest.mark.parametrize("head", [True, False, "int2"])
def test_int4_head_refuses_other_values(head):
    from zeroformer.nn.fast import prepare_inference

    with pytest.raises(ValueError, match="int4_head"):
        prepare_inference(decoder(), int4=True, int4_head=head)
