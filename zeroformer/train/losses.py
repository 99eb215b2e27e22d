"""Losses. Each returns (mean loss over counted positions, number of counted positions).

Cross-entropy with label smoothing (the paper's epsilon_ls, section 5.4): the target
distribution puts 1 - eps on the true token and eps spread uniformly over the vocabulary:

    q(k) = (1 - eps) * [k = y] + eps / V
    L = - sum_k q(k) log softmax(z)_k = (1 - eps) * NLL(y) + eps * mean_k(-log softmax(z)_k)
      = lse(z) - (1 - eps) * z_y - eps * mean_k(z_k)                  (lse = log sum_k exp z_k)
    dL/dz = softmax(z) - q

Positions whose target is `ignore_index` (padding, unmasked MLM positions) are not counted.

`linear_cross_entropy` is the same loss with the output layer z = h W^T + b folded in: only the
counted rows are projected, a few hundred rows at a time, and each block's gradient (softmax - q)
is turned into dL/dh and dL/dW at once, so the (N, V) logits, their log-softmax and their
gradient are never held in memory together (tests/test_losses.py: equal to the two-step form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, int]:
    """logits (..., V), targets (...) long -> (scalar loss in fp32, n counted targets)."""
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    n = int((targets != ignore_index).sum())
    loss = F.cross_entropy(logits, targets, ignore_index=ignore_index,
                           label_smoothing=label_smoothing)
    return loss, n


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, label_smoothing: float = 0.0,
                         ignore_index: int = IGNORE_INDEX, block: int = 256
                         ) -> tuple[torch.Tensor, int]:
    """cross_entropy(hidden @ weight.T + bias, targets) without materialising the logits.

    hidden (..., d), weight (V, d), bias (V,) or None, targets (...) -> (scalar fp32 loss, n).
    Under autocast the two matmuls run in the autocast dtype (as F.linear would); the softmax
    and the loss stay fp32.
    """
    d = hidden.size(-1)
    targets = targets.reshape(-1)
    keep = (targets != ignore_index).nonzero().squeeze(1)
    h, t = hidden.reshape(-1, d).index_select(0, keep), targets.index_select(0, keep)
    mm_dtype = torch.float32
    if torch.is_autocast_enabled(h.device.type):
        mm_dtype = torch.get_autocast_dtype(h.device.type)
    if bias is None:
        bias = torch.zeros(weight.size(0), device=weight.device)
    with torch.autocast(h.device.type, enabled=False):
        loss = _LinearCrossEntropy.apply(h, weight, bias, t, float(label_smoothing), block,
                                         mm_dtype)
    return loss, int(keep.numel())


def output_layer_loss(model, hidden: torch.Tensor, targets: torch.Tensor,
                      label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """The loss of `model.lm_head` (plus Marian's fixed `final_logits_bias`, when the model has
    one) over the final hidden states (B, T, d): `linear_cross_entropy` with the model's head."""
    head = model.lm_head
    bias = head.bias
    extra = getattr(model, "final_logits_bias", None)
    if extra is not None:
        bias = extra if bias is None else bias + extra
    return linear_cross_entropy(hidden, head.weight, bias, targets, label_smoothing)


def bare_model(model):
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return model


def has_output_layer(model) -> bool:
    """True when `model(..., return_hidden=True)` + `output_layer_loss` can replace logits + loss
    (our decoder and encoder-decoder, bare or inside DDP)."""
    return isinstance(getattr(bare_model(model), "lm_head", None), torch.nn.Linear)


def model_loss(model, labels: torch.Tensor, label_smoothing: float, *inputs, **kwargs
               ) -> tuple[torch.Tensor, int]:
    """cross_entropy(model(*inputs, **kwargs), labels): through `output_layer_loss` (the output
    layer fused with the loss) when the model has a plain lm_head, else through the logits.
    A DDP wrapper's forward runs (it must: it prepares the gradient all-reduce); the output layer
    is then applied outside it, which DDP allows (its hooks sit on every parameter's gradient)."""
    if has_output_layer(model):
        hidden = model(*inputs, return_hidden=True, **kwargs)
        return output_layer_loss(bare_model(model), hidden, labels, label_smoothing)
    return cross_entropy(model(*inputs, **kwargs), labels, label_smoothing)


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss AND the gradients block by block (the loss is the graph's end,
    so dL/dz is known then); backward only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, h, weight, bias, t, eps, block, mm_dtype):
        n, v = h.size(0), weight.size(0)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grads = need_h or need_w or need_b
        w = weight.to(mm_dtype)
        f32 = dict(dtype=torch.float32, device=h.device)
        grad_h = torch.empty(h.shape, **f32) if need_h else None
        grad_w = torch.zeros(weight.shape, **f32) if need_w else None
        grad_b = torch.zeros(v, **f32) if need_b else None  # a fixed bias (Marian's): none
        minus = torch.full((min(block, n), 1), eps - 1.0, **f32)  # -(1 - eps) at the target
        total = torch.zeros((), **f32)
        for i in range(0, n, block):
            hc, tc = h[i: i + block].to(mm_dtype), t[i: i + block, None]
            if mm_dtype == torch.float32:
                z = torch.addmm(bias, hc, w.t())                   # (block, V) logits
            else:
                z = (hc @ w.t()).float().add_(bias)
            z_y, z_mean = z.gather(1, tc).squeeze(1), z.mean(1)
            m = z.amax(1, keepdim=True)
            p = z.sub_(m).exp_()                                   # in place: z is not needed
            s = p.sum(1, keepdim=True)
            lse = (m + s.log()).squeeze(1)
            total += ((1 - eps) * (lse - z_y) + eps * (lse - z_mean)).sum()
            if not grads:
                continue
            dz = p.div_(s).sub_(eps / v).scatter_add_(1, tc, minus[: len(tc)])  # softmax(z) - q
            dz_mm = dz.to(mm_dtype)
            if need_h:
                grad_h[i: i + block] = dz_mm @ w
            if need_w and mm_dtype == torch.float32:
                grad_w.addmm_(dz_mm.t(), hc)
            elif need_w:
                grad_w += dz_mm.t() @ hc
            if need_b:
                grad_b += dz.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.n, ctx.dtypes = max(n, 1), (h.dtype, weight.dtype, bias.dtype)
        return total / max(n, 1)

    @staticmethod
    def backward(ctx, grad_out):
        scale = grad_out / ctx.n
        return tuple(None if g is None else (g * scale).to(dt)
                     for g, dt in zip(ctx.saved_tensors, ctx.dtypes)) + (None,) * 4
