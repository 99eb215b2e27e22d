"""Batched decoding (zeroformer/batching.py): every request's tokens equal decoding it alone with
model.generate, whatever else shares the batch, on a GPT-2-style decoder (learned positions) and a
LLaMA-style one (RoPE, grouped-query attention). The reference is the single-request path
(model.generate over a DecoderSession), which tests/test_decoder_parity.py ties to transformers.

Logits of a batched step equal the alone step's within LOGIT_ATOL (fp32; only the summation order
of the batched matmuls and of the masked softmax differs); tokens are compared exactly."""

import pytest
import torch

from zeroformer import preset
from zeroformer.batching import BatchEngine
from zeroformer.errors import UserError
from zeroformer.generate import DecoderSession
from zeroformer.models import build_model

LOGIT_ATOL = 1e-5

STYLES = {
    "gpt2": dict(position="learned", norm="layernorm", activation="gelu_tanh", bias=True,
                 tie_embeddings=True),
    "llama": dict(position="rope", n_kv_head=2, norm="rmsnorm", gated_ffn=True,
                  activation="silu", bias=False, tie_embeddings=False),
}


@pytest.fixture(scope="module", params=sorted(STYLES))
def model(request):
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=97, eos_token_id=None, dropout=0.0, attn_dropout=0.0,
                 **STYLES[request.param])
    return build_model(cfg).eval()


def prompt(n, seed):
    return torch.randint(1, 97, (n,), generator=torch.Generator().manual_seed(seed))


def alone(model, req):
    """The tokens model.generate gives for one request (the reference)."""
    kw = {k: v for k, v in req.items() if k not in ("prompt_ids",)}
    ids = req["prompt_ids"][None]
    return model.generate(ids, **kw)[0, ids.size(1):].tolist()


def test_batched_logits_equal_alone(model):
    """Three prompts of different lengths in slots 0..2: each decode step's logits, row by row,
    equal the alone session's; with slot 1 idle the batch carries a dummy row."""
    prompts = [prompt(n, s)[None] for n, s in ((4, 1), (9, 2), (6, 3))]
    engine = BatchEngine(model, max_batch=4, max_len=32)
    batched = engine.session
    singles = [DecoderSession(model, 1, 32) for _ in prompts]
    feeds = []
    with torch.no_grad():
        for slot, (p, single) in enumerate(zip(prompts, singles)):
            a, b = batched.prefill(slot, p), single.step(p)
            torch.testing.assert_close(a, b, atol=LOGIT_ATOL, rtol=0)
            feeds.append(b.argmax(-1))
        lengths = [p.size(1) for p in prompts]
        for step in range(8):
            idle = step >= 4                    # from step 4 on, slot 1 is free (a dummy row)
            ids = torch.cat(feeds)
            pos = torch.tensor(lengths)
            if idle:
                ids[1], pos[1] = 0, 0
            out = batched.decode(ids, pos)
            for r, single in enumerate(singles):
                if idle and r == 1:
                    continue
                ref = single.step(feeds[r][:, None])
                torch.testing.assert_close(out[r:r + 1], ref, atol=LOGIT_ATOL, rtol=0)
                feeds[r] = ref.argmax(-1)
                lengths[r] += 1


def test_continuous_batching_equals_alone(model):
    """More requests than slots, different prompt lengths, greedy and sampled (own seeds), one
    ending early on EOS, one cancelled mid-way, one added while others run."""
    early = dict(prompt_ids=prompt(3, 10), max_new_tokens=12, temperature=1.0, seed=4)
    free_run = alone(model, early)
    stop_at = next(i for i in range(1, 12) if free_run[i] not in free_run[:i])
    early["eos_token_id"] = free_run[stop_at]        # it ends on EOS after stop_at + 1 tokens
    reqs = [
        early,
        dict(prompt_ids=prompt(11, 11), max_new_tokens=10, temperature=0.9, top_k=20, seed=1),
        dict(prompt_ids=prompt(5, 12), max_new_tokens=14),
        dict(prompt_ids=prompt(8, 13), max_new_tokens=15, temperature=1.1, top_p=0.8, seed=5),
        dict(prompt_ids=prompt(6, 14), max_new_tokens=9, repetition_penalty=1.3),
        dict(prompt_ids=prompt(2, 15), max_new_tokens=11, temperature=0.7, seed=9),
    ]
    late = dict(prompt_ids=prompt(7, 16), max_new_tokens=8, temperature=0.8, top_k=5, seed=3)
    engine = BatchEngine(model, max_batch=3, max_len=40)
    rids = [engine.add(**r) for r in reqs]
    cancel_rid, got = rids[3], {}
    finished, widths, holes, step = set(), set(), 0, 0
    while engine.busy:
        if engine.running:
            lens = {r.prompt.size(1) + len(r.tokens) for r in engine.running.values()}
            widths.add(len(lens))
            holes += max(engine.running) + 1 > len(engine.running)
        for ev in engine.step():
            assert ev.rid not in finished
            if ev.token is not None:
                got.setdefault(ev.rid, []).append(ev.token)
            if ev.finished:
                finished.add(ev.rid)
        step += 1
        assert step < 100, "the engine does not finish"
        if step == 2:
            rids.append(engine.add(**late))
        if len(got.get(cancel_rid, [])) == 4 and cancel_rid not in finished:
            assert engine.cancel(cancel_rid) and not engine.cancel(cancel_rid)
    assert finished == set(rids)
    for rid, req in zip(rids, reqs + [late]):
        want = alone(model, req)
        if rid == cancel_rid:
            assert got[rid] == want[:4]
        else:
            assert got[rid] == want, f"request {rid}"
    assert len(got[rids[0]]) == stop_at + 1             # stopped at its EOS
    assert max(widths) > 1 and holes > 0                # mixed lengths; a dummy row rode along


def test_queue_and_run(model):
    """Five requests through two slots (each retirement admits the next), then `run`."""
    reqs = [dict(prompt_ids=prompt(n, n), max_new_tokens=5) for n in (3, 8, 5, 4, 6)]
    engine = BatchEngine(model, max_batch=2, max_len=16)
    rids = [engine.add(**r) for r in reqs]
    events = []
    for _ in range(100):                                 # bounded: a stuck engine fails
        events += engine.step()
    assert not engine.busy
    got = {rid: [e.token for e in events if e.rid == rid] for rid in rids}
    assert [got[rid] for rid in rids] == [alone(model, r) for r in reqs]
    assert engine.run(reqs[:1]) == [alone(model, reqs[0])]


def test_cancel_queued_and_zero_tokens(model):
    engine = BatchEngine(model, max_batch=1, max_len=16)
    a = engine.add(prompt(3, 1), 4)
    b = engine.add(prompt(3, 2), 4)
    z = engine.add(prompt(3, 3), 0)
    assert engine.cancel(b) and not engine.cancel(99)
    events = list(engine.stream())
    assert {e.rid for e in events} == {a, b, z}
    assert [e.token for e in events if e.rid == b] == [None]
    assert [e.token for e in events if e.rid == z] == [None]
    assert len([e for e in events if e.rid == a]) == 4


def test_user_errors(model):
    engine = BatchEngine(model, max_batch=2, max_len=10)
    with pytest.raises(UserError, match="max_len"):
        engine.add(prompt(6, 0), 5)
    with pytest.raises(UserError, match="top-p"):
        engine.add(prompt(3, 0), 2, top_p=1.5)
    with pytest.raises(UserError, match="context"):
        BatchEngine(model, max_batch=2, max_len=model.config.max_seq_len + 1)
    seq2seq = build_model(preset("transformer-small", n_layer=1, d_model=32, n_head=2, d_ff=64,
                                 vocab_size=50))
    with pytest.raises(UserError, match="decoder-only"):
        BatchEngine(seq2seq, max_batch=2, max_len=16)
