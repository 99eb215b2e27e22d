"""The generation engine on a random decoder: cache == no cache, beams, padding, filters."""

import pytest
import torch

from zeroformer import preset
from zeroformer.generate import DecoderSession, beam_search, filter_top_k_top_p
from zeroformer.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = preset("tiny", n_kv_head=2, position="rope", norm="rmsnorm", gated_ffn=True,
                 activation="silu", vocab_size=50)
    return build_model(cfg).eval()


def greedy_without_cache(model, ids, n):
    for _ in range(n):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    return ids


def test_cached_equals_uncached_logits_each_step(model):
    ids = torch.randint(0, 50, (2, 12))
    full = model(ids)
    cache = model.new_cache(2, 12)
    parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, i:i + 1], cache=cache)
                                                for i in range(5, 12)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_greedy_with_cache_equals_without(model):
    ids = torch.randint(0, 50, (3, 6))
    assert torch.equal(model.generate(ids, 10), greedy_without_cache(model, ids, 10))


def test_one_beam_equals_greedy(model):
    ids = torch.randint(0, 50, (3, 6))
    beams = beam_search(lambda n: DecoderSession(model, n, 16), ids, 10, num_beams=1)
    assert torch.equal(beams, model.generate(ids, 10))


def test_beam_search_finds_at_least_greedy_likelihood(model):
    ids = torch.randint(0, 50, (2, 4))

    def logprob(seq):
        lp = model(seq[:, :-1]).log_softmax(-1)
        return lp[:, 3:].gather(-1, seq[:, 4:, None]).sum((1, 2))

    g, b = model.generate(ids, 6), model.generate(ids, 6, num_beams=4)
    assert (logprob(b) >= logprob(g) - 1e-4).all()


def test_left_padded_batch_equals_single_prompts(model):
    a, b = torch.randint(0, 50, (1, 7)), torch.randint(0, 50, (1, 4))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    out = model.generate(batch, 8, attention_mask=mask)
    assert torch.equal(out[0], model.generate(a, 8)[0])
    assert torch.equal(out[1, 3:], model.generate(b, 8)[0])


def test_seeded_sampling_is_reproducible(model):
    ids = torch.randint(0, 50, (2, 5))
    kw = dict(temperature=1.0, top_k=20, top_p=0.9)
    x, y = model.generate(ids, 12, seed=7, **kw), model.generate(ids, 12, seed=7, **kw)
    assert torch.equal(x, y)
    assert not torch.equal(x, model.generate(ids, 12, seed=8, **kw))


def test_eos_stops_and_pads(model):
    ids = torch.randint(0, 50, (1, 5))
    first = model.generate(ids, 1)[0, -1].item()
    out = model.generate(ids, 10, eos_token_id=first)
    assert out.shape == (1, 6) and out[0, -1].item() == first


@pytest.mark.parametrize("k,p", [(5, None), (None, 0.7), (10, 0.5), (None, 1.0)])
def test_filters_match_transformers(k, p):
    tr = pytest.importorskip("transformers")
    logits = torch.randn(4, 40)
    ours = filter_top_k_top_p(logits, k, p)
    ref = logits.clone()
    if k is not None:
        ref = tr.TopKLogitsWarper(top_k=k)(None, ref)
    if p is not None and p < 1.0:
        ref = tr.TopPLogitsWarper(top_p=p)(None, ref)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))


def test_generating_past_the_context_is_a_user_error(model):
    from zeroformer.errors import UserError

    ids = torch.randint(0, 50, (1, 100))
    with pytest.raises(UserError, match="context of 128"):
        model.generate(ids, 29)
    assert model.generate(ids, 28).shape == (1, 128)
