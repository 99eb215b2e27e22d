"""Inverted dropout with the fast CPU mask (zeroformer/nn/dropout.py): the drop rate is p (to
1/65536), the kept elements are scaled by 1/(1-p') so the mean is unchanged, the gradient is the
same mask, evaluation is the identity, and a seed reproduces the mask."""

import math

import pytest
import torch

from zeroformer.nn.dropout import Dropout, dropout, dropout_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.01])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    n = 1_000_003                                   # not a multiple of 4: the last word is cut
    m = dropout_mask((n,), p)
    dropped = float((m == 0).float().mean())
    assert abs(dropped - p) < 6 * math.sqrt(p * (1 - p) / n)          # 6 sigma
    p_used = round(p * 65536) / 65536
    assert torch.allclose(m[m != 0], torch.tensor(1 / (1 - p_used)))
    assert abs(float(m.mean()) - 1.0) < 6 * math.sqrt(p / (1 - p) / n)   # E[mask] = 1


def test_mask_elements_are_independent_of_their_neighbours():
    """Four elements share one 64-bit word: their drops must still be independent."""
    torch.manual_seed(1)
    m = dropout_mask((400_000, 4), 0.5) == 0
    both = float((m[:, 0] & m[:, 1]).float().mean())
    assert abs(both - 0.25) < 6 * math.sqrt(0.25 * 0.75 / 400_000)
    assert abs(float(m[:, 3].float().mean()) - 0.5) < 0.005


def test_module_train_eval_gradient_and_seed():
    x = torch.randn(8, 16, 32, requires_grad=True)
    d = Dropout(0.1)
    d.eval()
    assert d(x) is x
    d.train()
    torch.manual_seed(5)
    y = d(x)
    torch.manual_seed(5)
    assert torch.equal(y, d(x))                       # reproducible under a seed
    (g,) = torch.autograd.grad(y.sum(), x)
    mask = y.detach() / x.detach()
    assert torch.allclose(g, mask, atol=1e-6)        # dy/dx is the mask itself
    assert torch.equal(dropout(x, 0.0), x)
    assert dropout(x, 1.0).abs().max() == 0
    with pytest.raises(ValueError):
        Dropout(1.5)
