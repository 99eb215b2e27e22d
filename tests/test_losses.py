"""The output layer fused with the loss (train/losses.py:linear_cross_entropy) equals the two-step
reference F.linear -> cross_entropy: loss and every gradient, with padding, label smoothing, a
bias, tied embeddings in a whole model, and (within a stated tolerance) under bf16 autocast."""

import pytest
import torch
import torch.nn.functional as F

import zeroformer
from zeroformer.models import build_model
from zeroformer.train.losses import (IGNORE_INDEX, cross_entropy, has_output_layer,
                                     linear_cross_entropy)
from zeroformer.train.task import LMTask
from zeroformer.train.translation import TranslationTask


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("block", [7, 256])
def test_fused_loss_and_gradients_equal_logits_then_cross_entropy(eps, block):
    torch.manual_seed(0)
    h = torch.randn(3, 41, 16, requires_grad=True)
    w = (torch.randn(97, 16) * 0.3).requires_grad_()
    b = torch.randn(97).requires_grad_()
    y = torch.randint(0, 97, (3, 41))
    y[0, 30:] = IGNORE_INDEX
    y[2, ::3] = IGNORE_INDEX
    ref, n_ref = cross_entropy(F.linear(h, w, b), y, eps)
    g_ref = torch.autograd.grad(ref * 2.5, [h, w, b])
    out, n = linear_cross_entropy(h, w, b, y, eps, block=block)
    g = torch.autograd.grad(out * 2.5, [h, w, b])
    assert n == n_ref == int((y != IGNORE_INDEX).sum())
    assert abs(out.item() - ref.item()) < 1e-5 * ref.item()
    for a, r in zip(g, g_ref):
        assert _rel(a, r) < 1e-5
    assert g[0][0, 30:].abs().max() == 0  # ignored positions get no gradient


def test_fused_loss_without_gradients_and_without_bias():
    torch.manual_seed(1)
    h, w, y = torch.randn(50, 8), torch.randn(33, 8), torch.randint(0, 33, (50,))
    with torch.no_grad():
        out, _ = linear_cross_entropy(h, w, None, y, 0.1, block=16)
    ref, _ = cross_entropy(h @ w.t(), y, 0.1)
    assert abs(out.item() - ref.item()) < 1e-5 * ref.item()


def test_fused_loss_under_bf16_autocast_within_tolerance():
    """bf16 matmuls, fp32 softmax: loss within 0.5%, gradients within 2% relative L2."""
    torch.manual_seed(2)
    h = torch.randn(200, 64, requires_grad=True)
    w = (torch.randn(500, 64) * 0.2).requires_grad_()
    y = torch.randint(0, 500, (200,))
    ref, _ = cross_entropy(h @ w.t(), y, 0.1)
    g_ref = torch.autograd.grad(ref, [h, w])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = linear_cross_entropy(h, w, None, y, 0.1)
    g = torch.autograd.grad(out, [h, w])
    assert out.dtype == torch.float32 and g[1].dtype == torch.float32
    assert abs(out.item() - ref.item()) < 5e-3 * ref.item()
    for a, r in zip(g, g_ref):
        assert _rel(a, r) < 2e-2


def _grads(model, loss):
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["translate", "gpt2"])
def test_tasks_fused_loss_equals_the_logits_path_on_a_whole_model(family, monkeypatch):
    """The tasks take the fused path for our models (tied embeddings, Marian's logits bias);
    the same batch through the plain logits path gives the same loss and gradients."""
    import zeroformer.train.losses as losses_mod

    torch.manual_seed(3)
    if family == "translate":
        cfg = zeroformer.preset("transformer-small", vocab_size=61, n_layer=2, n_encoder_layer=2,
                                d_model=32, n_head=4, d_ff=64, max_seq_len=32, dropout=0.0,
                                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        model = build_model(cfg)
        with torch.no_grad():
            model.final_logits_bias.normal_()
        pairs = [([5, 6, 7, 1], [8, 9, 1]), ([10, 11, 1], [12, 13, 14, 15, 1]),
                 ([3, 4, 1], [2, 1])]
        task = TranslationTask(model, None, pairs, [], batch_tokens=64)
        batch = task.train_batch(0)
    else:
        cfg = zeroformer.preset("gpt2", vocab_size=61, n_layer=2, d_model=32, n_head=4,
                                max_seq_len=32, dropout=0.0)
        model = build_model(cfg)
        task = LMTask(model, torch.randint(0, 61, (500,)), None, batch_size=3, block_size=16,
                      label_smoothing=0.1)
        batch = task.train_batch(0)
    assert has_output_layer(model)
    model.eval()  # no dropout: both paths see the same network
    fused, n = task.loss(model, batch)
    g_fused = _grads(model, fused)
    model.zero_grad()
    monkeypatch.setattr(losses_mod, "has_output_layer", lambda m: False)
    ref, n_ref = task.loss(model, batch)
    g_ref = _grads(model, ref)
    assert n == n_ref and abs(fused.item() - ref.item()) < 1e-5 * ref.item()
    assert g_fused.keys() == g_ref.keys()
    scale = max(float(g.norm()) for g in g_ref.values())
    for k in g_ref:  # (a key bias has a zero gradient in exact math: rounding noise only)
        assert (g_fused[k] - g_ref[k]).norm() <= 1e-4 * g_ref[k].norm() + 1e-6 * scale, k
