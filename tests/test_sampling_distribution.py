"""Sampling draws from the distribution it claims: softmax(logits / T), restricted to the top k /
the nucleus of mass p and renormalised there (zeroformer/generate.py). Many seeded draws through
`sample()` are compared with the expected probabilities by a chi-square goodness-of-fit test, and a
token outside the kept set never appears.

The expected distribution is computed here from the definition (not from our code):
    p_i = exp(l_i / T) / Σ_j exp(l_j / T)
    top-k: keep the k largest p_i; top-p: keep the smallest set of most likely tokens (after top-k,
    renormalised) whose mass reaches p; then renormalise over what is kept.
The test fails at p-value < 1e-4 (chi-square with kept - 1 degrees of freedom; the p-value from the
regularized incomplete gamma function): a correct implementation fails one case in 10,000 per
seed, and a fixed seed makes the outcome reproducible.
"""

import math
import pytest
import torch

from zeroformer.generate import sample

# 12 tokens, most likely not first, no two logits equal (no ties at a top-k/top-p boundary)
LOGITS = torch.tensor([0.5, 2.0, -1.0, 1.2, -3.0, 1.5, 0.0, -0.3, 1.0, -2.0, 0.8, -0.6])
N = 60_000
ALPHA = 1e-4


def chi2_pvalue(stat: float, df: int) -> float:
    """P(X >= stat) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df/2, stat/2)."""
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                   torch.tensor(stat / 2, dtype=torch.float64)).item()


def expected(logits, temperature, top_k=None, top_p=None):
    """The definition above, in float64 plain Python: {token: probability} over the kept set."""
    z = [x / temperature for x in logits.double().tolist()]
    m = max(z)
    w = [math.exp(x - m) for x in z]
    order = sorted(range(len(w)), key=lambda i: -w[i])
    if top_k is not None:
        order = order[:top_k]
    if top_p is not None:
        total = sum(w[i] for i in order)
        kept, mass = [], 0.0
        for i in order:
            kept.append(i)
            mass += w[i] / total
            if mass >= top_p:
                break
        assert abs(mass - top_p) > 1e-3 and abs(mass - w[i] / total - top_p) > 1e-3  # no tie
        order = kept
    total = sum(w[i] for i in order)
    return {i: w[i] / total for i in order}


class FixedSession:
    """Every row, every step: the same logits."""

    def step(self, ids, attention_mask=None):
        return LOGITS.expand(ids.size(0), -1).clone()


def draws(temperature, top_k=None, top_p=None, seed=0):
    prompt = torch.zeros(N, 1, dtype=torch.long)
    out = sample(FixedSession(), prompt, 1, temperature=temperature, top_k=top_k, top_p=top_p,
                 seed=seed)
    return torch.bincount(out[:, 1], minlength=LOGITS.numel()).tolist()


CASES = [dict(temperature=0.5), dict(temperature=2.0), dict(temperature=1.0, top_k=4),
         dict(temperature=0.7, top_p=0.8), dict(temperature=2.0, top_p=0.6),
         dict(temperature=1.5, top_k=7, top_p=0.9)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sampled_tokens_follow_the_tempered_filtered_softmax(case):
    want = expected(LOGITS, **case)
    counts = draws(**case)
    outside = {i: c for i, c in enumerate(counts) if i not in want and c}
    assert not outside, f"tokens outside the kept set were drawn: {outside}"
    stat = sum((counts[i] - N * p) ** 2 / (N * p) for i, p in want.items())
    pvalue = chi2_pvalue(stat, len(want) - 1)
    assert pvalue >= ALPHA, (stat, pvalue, counts, want)


def test_the_kept_sets_are_what_the_cases_claim():
    """The cases exercise real filtering (else a broken filter would pass): top-k keeps k,
    each top-p case drops tokens that still have noticeable probability."""
    assert len(expected(LOGITS, 1.0, top_k=4)) == 4
    for case in CASES[3:5]:
        full = expected(LOGITS, case["temperature"])
        kept = expected(LOGITS, **case)
        assert 1 < len(kept) < LOGITS.numel()
        # the most likely dropped token would be drawn thousands of times if it were kept
        assert N * max(p for i, p in full.items() if i not in kept) > 1000


def test_the_chi_square_tail():
    """Q(df/2, x/2) against known values: df 2 is exp(-x/2) exactly; the alpha = 1e-4 quantiles
    of df 3 and 11 are 21.108 and 37.367 (statistical tables)."""
    assert chi2_pvalue(10.0, 2) == pytest.approx(math.exp(-5.0), rel=1e-9)
    assert chi2_pvalue(21.108, 3) == pytest.approx(1e-4, rel=1e-3)
    assert chi2_pvalue(37.367, 11) == pytest.approx(1e-4, rel=1e-3)
