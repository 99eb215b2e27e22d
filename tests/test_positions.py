"""Positional encodings against the formulas they come from."""

import math

import torch

from zeroformer.nn.positions import RotaryEmbedding, sinusoidal_table


def test_sinusoidal_matches_paper_formula():
    d, table = 16, sinusoidal_table(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def test_sinusoidal_split_layout_is_a_permutation_of_interleaved():
    a, b = sinusoidal_table(20, 8), sinusoidal_table(20, 8, "split")
    assert torch.allclose(a[:, 0::2], b[:, :4]) and torch.allclose(a[:, 1::2], b[:, 4:])


def test_rope_equals_rotation_formula():
    d, base = 8, 10000.0
    rope = RotaryEmbedding(d, 32, base)
    x = torch.randn(1, 1, 1, d)
    for pos in (0, 3, 17):
        got = rope(x, torch.tensor([[pos]]))[0, 0, 0]
        want = torch.empty(d)
        for i in range(d // 2):                 # pair (i, i + d/2) rotated by pos * base^(-2i/d)
            theta = pos * base ** (-2 * i / d)
            a, b = x[0, 0, 0, i], x[0, 0, 0, i + d // 2]
            want[i] = a * math.cos(theta) - b * math.sin(theta)
            want[i + d // 2] = a * math.sin(theta) + b * math.cos(theta)
        assert torch.allclose(got, want, atol=1e-5)


def test_rope_dot_product_depends_only_on_relative_position():
    rope = RotaryEmbedding(16, 128)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return (rope(q, torch.tensor([[m]])) * rope(k, torch.tensor([[n]]))).sum().item()

    assert math.isclose(score(5, 2), score(50, 47), rel_tol=1e-4, abs_tol=1e-4)
    assert math.isclose(score(10, 10), score(90, 90), rel_tol=1e-4, abs_tol=1e-4)
    assert not math.isclose(score(5, 2), score(5, 3), rel_tol=1e-3)


def test_rope_keeps_norms():
    rope = RotaryEmbedding(16, 64)
    x = torch.randn(2, 3, 10, 16)
    pos = torch.arange(10).expand(2, 10)
    assert torch.allclose(rope(x, pos).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
