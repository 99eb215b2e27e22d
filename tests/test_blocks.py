"""Norms, feed-forward, the one block in its configurations, and the decoder model."""

import pytest
import torch

from zeroformer import preset
from zeroformer.config import ModelConfig
from zeroformer.models import build_model
from zeroformer.nn.blocks import TransformerBlock
from zeroformer.nn.feedforward import FeedForward
from zeroformer.nn.norms import LayerNorm, RMSNorm


def test_layernorm_formula_and_learned_parameters():
    ln = LayerNorm(6, eps=1e-5)
    assert {n for n, _ in ln.named_parameters()} == {"weight", "bias"}
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(3, 6)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    assert torch.allclose(ln(x), ln.weight * (x - mu) / torch.sqrt(var + 1e-5) + ln.bias, atol=1e-5)


def test_rmsnorm_formula():
    n = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        n.weight.uniform_(0.5, 2)
    x = torch.randn(3, 6)
    assert torch.allclose(n(x), n.weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6),
                          atol=1e-5)


def test_swiglu_formula():
    f = FeedForward(8, 16, "silu", gated=True, bias=False)
    x = torch.randn(2, 8)
    want = f.down(torch.nn.functional.silu(f.gate(x)) * f.up(x))
    assert torch.allclose(f(x), want)


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("cross", [False, True])
def test_block_shapes_and_gradients(prenorm, cross):
    cfg = ModelConfig(d_model=32, n_head=4, d_ff=64, prenorm=prenorm)
    block = TransformerBlock(cfg, causal=not cross, cross_attention=cross)
    x = torch.randn(2, 5, 32, requires_grad=True)
    mem = torch.randn(2, 7, 32) if cross else None
    y = block(x, memory=mem)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_post_norm_output_is_normalised_pre_norm_is_not():
    x = torch.randn(2, 5, 32) * 10
    post = TransformerBlock(ModelConfig(d_model=32, n_head=4, d_ff=64, prenorm=False), causal=True)
    pre = TransformerBlock(ModelConfig(d_model=32, n_head=4, d_ff=64, prenorm=True), causal=True)
    assert torch.allclose(post(x).std(-1, unbiased=False), torch.ones(2, 5), atol=1e-3)
    assert not torch.allclose(pre(x).std(-1, unbiased=False), torch.ones(2, 5), atol=1e-1)


def test_causal_block_never_sees_the_future():
    block = TransformerBlock(ModelConfig(d_model=16, n_head=2, d_ff=32), causal=True).eval()
    x = torch.randn(1, 6, 16)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, 16)
    assert torch.allclose(block(x)[:, :4], block(x2)[:, :4], atol=1e-6)


def test_dropout_is_inverted():
    block = TransformerBlock(ModelConfig(d_model=16, n_head=2, d_ff=32, dropout=0.5), causal=True)
    same = TransformerBlock(ModelConfig(d_model=16, n_head=2, d_ff=32, dropout=0.0), causal=True)
    same.load_state_dict(block.state_dict())
    x = torch.randn(1, 4, 16)
    block.eval()
    assert torch.equal(block.dropout(x), x)   # identity at inference: y = x
    assert torch.equal(block(x), same.eval()(x))  # the block as if it had no dropout at all
    drop = block.dropout.train()
    y = drop(torch.ones(10000))
    assert set(y.unique().tolist()) <= {0.0, 2.0}  # kept values scaled by 1/(1-p)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_one_decoder_class_for_gpt2_and_llama(name):
    cfg = preset(name, n_layer=2, d_model=64, n_head=4, n_kv_head=2 if name == "llama" else None,
                 d_ff=128, vocab_size=100, max_seq_len=32)
    m = build_model(cfg)
    assert type(m).__name__ == "Decoder"
    assert m(torch.randint(0, 100, (2, 9))).shape == (2, 9, 100)
    kinds = {type(mod).__name__ for mod in m.modules()}
    assert ("RMSNorm" in kinds) == (name == "llama")
    assert ("RotaryEmbedding" in kinds) == (name == "llama")


def test_config_round_trip(tmp_path):
    cfg = preset("smollm2-135m")
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg


def test_presets_parameter_counts():
    """GPT-2 small is the well-known 124,439,808 parameters (tied embeddings)."""
    with torch.device("meta"):
        m = build_model(preset("gpt2"))
    assert sum(p.numel() for p in m.parameters()) == 124_439_808
