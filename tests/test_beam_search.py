"""Beam search (zeroformer/generate.py) on the encoder-decoder: 1 beam = greedy; a wide enough beam
finds the exact best hypothesis (checked by brute-force enumeration); EOS and padding handling."""

import itertools

import pytest
import torch

import zeroformer
from zeroformer.models import build_model
from zeroformer.models.encoder_decoder import Seq2SeqSession

V, PAD, EOS = 5, 0, 1


def model(vocab=V, seed=0):
    cfg = zeroformer.preset("transformer-small", vocab_size=vocab, n_layer=1, n_encoder_layer=1,
                            d_model=16, n_head=2, d_ff=32, max_seq_len=32, dropout=0.0,
                            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    torch.manual_seed(seed)
    m = build_model(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def score(m, src, hyp, alpha, norm="length"):
    """sum log p(hyp_t | hyp_<t, src) / lp(len), computed with one teacher-forced forward;
    lp = len^alpha, or GNMT's ((5 + len) / 6)^alpha (Wu et al. 2016, eq. 14)."""
    tgt = torch.tensor([[PAD] + hyp])
    logp = m(src, tgt[:, :-1]).log_softmax(-1)[0]
    total = sum(logp[t, tok].item() for t, tok in enumerate(hyp))
    return total / (((5 + len(hyp)) / 6) ** alpha if norm == "gnmt" else len(hyp) ** alpha)


def brute_force(m, src, max_new, alpha, norm="length"):
    """Every hypothesis: a sequence ending in EOS at or before max_new, or any max_new tokens."""
    best, best_s = None, float("-inf")
    words = [t for t in range(V) if t != EOS]
    for n in range(1, max_new + 1):
        for body in itertools.product(words, repeat=n - 1):
            for last in (list(range(V)) if n == max_new else [EOS]):
                hyp = list(body) + [last]
                s = score(m, src, hyp, alpha, norm)
                if s > best_s:
                    best, best_s = hyp, s
    return best, best_s


@pytest.mark.parametrize("alpha,norm", [(0.0, "length"), (1.0, "length"), (0.6, "gnmt"),
                                        (2.0, "gnmt")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exact_best(alpha, norm, seed):
    m = model(seed=seed)
    src = torch.randint(2, V, (1, 5), generator=torch.Generator().manual_seed(seed))
    max_new = 3
    best, best_s = brute_force(m, src, max_new, alpha, norm)
    out = m.generate(src, max_new, num_beams=V ** max_new, length_penalty=alpha,
                     length_norm=norm)[0, 1:].tolist()
    hyp = out[: out.index(EOS) + 1] if EOS in out else out
    assert score(m, src, hyp, alpha, norm) == pytest.approx(best_s, abs=1e-5), (hyp, best)


def test_one_beam_equals_greedy():
    m = model(vocab=40, seed=4)
    src = torch.randint(2, 40, (4, 7), generator=torch.Generator().manual_seed(9))
    mask = torch.ones_like(src)
    mask[2, 3:] = 0
    greedy = m.generate(src, 12, attention_mask=mask)
    beam1 = m.generate(src, 12, attention_mask=mask, num_beams=1)
    # num_beams=1 through the beam-search code path itself (not the greedy shortcut)
    from zeroformer.generate import beam_search

    memory = m.encode(src, mask)
    direct = beam_search(lambda n: Seq2SeqSession(m, memory, mask, 13), greedy[:, :1], 12,
                         num_beams=1, eos_token_id=EOS, pad_token_id=PAD)
    assert beam1.tolist() == greedy.tolist()
    assert direct.tolist() == greedy.tolist()


def test_finished_sentences_leave_the_batch_and_results_do_not_change():
    from zeroformer.generate import beam_search

    m = model(vocab=12, seed=1)  # a model whose sentences end at different steps
    src = torch.randint(2, 12, (6, 5), generator=torch.Generator().manual_seed(4))
    memory = m.encode(src)
    rows_seen = []

    class Counting(Seq2SeqSession):
        def step(self, ids, attention_mask=None):
            rows_seen.append(ids.size(0))
            return super().step(ids, attention_mask)

    start = torch.full((6, 1), PAD)
    both = beam_search(lambda n: Counting(m, memory.repeat_interleave(n // 6, 0), None, 21),
                       start, 20, num_beams=3, eos_token_id=EOS, pad_token_id=PAD)
    assert rows_seen[0] == 18 and min(rows_seen) < 18  # some sentences finished early
    for i in range(6):
        one = m.generate(src[i:i + 1], 20, num_beams=3)[0].tolist()
        assert both[i, : len(one)].tolist() == one
        assert all(t == PAD for t in both[i, len(one):].tolist())


@pytest.mark.parametrize("use_cache", [True, False])
def test_beams_sharing_one_memory_row_equal_a_copy_per_beam(use_cache):
    """Seq2SeqSession(rows=B*K) keeps one encoder output / cross K/V per sentence and folds the
    K beams' queries into one attention: logits must equal giving every beam its own copy, also
    after beams are reordered within sentences and after a sentence leaves the batch."""
    m = model(vocab=30, seed=3)
    g = torch.Generator().manual_seed(5)
    src = torch.randint(2, 30, (3, 6), generator=g)
    mask = torch.ones_like(src)
    mask[1, 4:] = 0
    k = 4
    memory = m.encode(src, mask)
    shared = Seq2SeqSession(m, memory, mask, 8, use_cache, rows=3 * k)
    copied = Seq2SeqSession(m, memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0), 8,
                            use_cache)
    ids = torch.randint(2, 30, (3 * k, 1), generator=g)
    orders = [torch.tensor([1, 0, 0, 3, 4, 4, 6, 5, 9, 9, 8, 11]),   # beams move within sentences
              torch.tensor([4, 5, 6, 7, 8, 9, 10, 11]),              # sentence 0 finished
              torch.tensor([0, 0, 2, 1, 7, 6, 5, 4])]
    for step in range(4):
        a, b = shared.step(ids), copied.step(ids)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        if step < len(orders):
            shared.reorder(orders[step])
            copied.reorder(orders[step])
            ids = torch.randint(2, 30, (orders[step].numel(), 1), generator=g)


class ScriptedSession:
    """A session whose next-token probabilities are a table keyed by the row's prefix (the prompt
    included); `default(prefix)` gives them for a prefix not in the table (else all 1e-6)."""

    def __init__(self, table, rows, default=None):
        self.table, self.prefix, self.default = table, [()] * rows, default

    def step(self, ids, attention_mask=None):
        self.prefix = [p + tuple(r) for p, r in zip(self.prefix, ids.tolist())]
        return torch.stack([self.logits(p) for p in self.prefix])

    def logits(self, prefix):
        out = torch.full((V,), 1e-6)
        probs = self.table.get(prefix) or (self.default(prefix) if self.default else {})
        for tok, prob in probs.items():
            out[tok] = prob
        return out.log()

    def reorder(self, index):
        self.prefix = [self.prefix[i] for i in index.tolist()]


def test_an_eos_ranked_below_the_beam_width_does_not_finish_a_hypothesis():
    """K = 2. Step 2 ranks (2 4) -1.386 running, (3 </s>) -1.397 EOS rank 1, (2 </s>) -1.492 EOS
    rank 2, (3 4) -2.003 running. Only an EOS within the top K ranks finishes a hypothesis (as in
    transformers), so (2 </s>) must not take the second slot: if it did, the search would stop at
    step 3 (best running -2.733 / 3 <= -1.492 / 2) and return (3 </s>) (-0.699), missing
    (2 4 2 </s>) (-2.743 / 4 = -0.686)."""
    table = {(): {2: 0.5, 3: 0.45, EOS: 0.025, 4: 0.025},
             (2,): {4: 0.5, EOS: 0.45, 2: 0.025, 3: 0.025},
             (3,): {EOS: 0.55, 4: 0.3, 2: 0.075, 3: 0.075},
             (2, 4): {2: 0.26, 3: 0.25, 4: 0.245, PAD: 0.2438, EOS: 0.0012},
             (2, 4, 2): {EOS: 0.99}}
    table = {(PAD,) + prefix: probs for prefix, probs in table.items()}
    from zeroformer.generate import beam_search

    out = beam_search(lambda n: ScriptedSession(table, n), torch.tensor([[PAD]]), 6, num_beams=2,
                      eos_token_id=EOS, pad_token_id=PAD, length_penalty=1.0)
    assert out[0].tolist()[:5] == [PAD, 2, 4, 2, EOS]


def scripted_score(session, prompt, hyp, alpha):
    """sum log softmax(scripted logits) over hyp / len(hyp)^alpha."""
    total = 0.0
    for t, tok in enumerate(hyp):
        total += session.logits(tuple(prompt) + tuple(hyp[:t])).log_softmax(-1)[tok].item()
    return total / len(hyp) ** alpha


def test_beam_output_ends_at_eos_and_is_padded():
    """Three prompts whose best hypotheses end at different steps: (2) -> "3 </s>" (2 tokens),
    (3) -> "4 2 3 </s>" (4 tokens), (4) -> never EOS ("2" six times, the length limit). Each row
    is the prompt, its hypothesis up to and including EOS, then padding to the batch's width; and
    each is the best of every hypothesis (brute force over the same distribution)."""
    table = {(2,): {3: 0.8, 4: 0.15, EOS: 0.05}, (2, 3): {EOS: 0.9, 4: 0.1},
             (3,): {4: 0.85, 2: 0.1, EOS: 0.05}, (3, 4): {2: 0.9, EOS: 0.1},
             (3, 4, 2): {3: 0.9, EOS: 0.1}, (3, 4, 2, 3): {EOS: 0.95, 2: 0.05}}

    def default(prefix):  # the third prompt (and any unscripted prefix): EOS nearly impossible
        return {2: 0.7, 3: 0.2, 4: 0.0999, EOS: 1e-4}

    from zeroformer.generate import beam_search

    prompt = torch.tensor([[2], [3], [4]])
    sessions = []

    def new_session(n):
        sessions.append(ScriptedSession(table, n, default))
        return sessions[-1]

    max_new, alpha = 6, 1.0
    out = beam_search(new_session, prompt, max_new, num_beams=2, eos_token_id=EOS,
                      pad_token_id=PAD, length_penalty=alpha)
    assert out.tolist() == [[2, 3, EOS, PAD, PAD, PAD, PAD],
                            [3, 4, 2, 3, EOS, PAD, PAD],
                            [4, 2, 2, 2, 2, 2, 2]]
    ref = ScriptedSession(table, 1, default)
    words = [t for t in range(1, V) if t != EOS]   # PAD (0) has probability ~1e-6 everywhere
    for row in out.tolist():
        body = [t for t in row[1:] if t != PAD]
        got = scripted_score(ref, row[:1], body, alpha)
        best = max(scripted_score(ref, row[:1], list(b) + [last], alpha)
                   for n in range(1, max_new + 1) for b in itertools.product(words, repeat=n - 1)
                   for last in ([EOS] + (words if n == max_new else [])))
        assert got == pytest.approx(best, abs=1e-6), row


@pytest.mark.parametrize("arch", ["encoder-decoder", "llama", "gpt2"])
def test_cache_read_by_ancestry_finds_the_beams_of_copied_rows(arch, monkeypatch):
    """Beam search with the KV cache never moved (rows read through the ancestry table,
    q4_step.c:zf_attend_rows) returns the tokens of beam search with rows copied each step:
    32-wide heads, grouped-query heads, a batch whose sentences finish apart, and left-padded
    decoder prompts (the padding mask read by the kernel)."""
    from zeroformer.nn import q4
    from zeroformer.nn.kv_cache import KVCache

    if not q4.available():
        pytest.skip("the C kernels are not built here (no C compiler or no AVX-512 VNNI)")
    g = torch.Generator().manual_seed(7)
    if arch == "encoder-decoder":
        cfg = zeroformer.preset("transformer-small", vocab_size=40, n_layer=2, n_encoder_layer=1,
                                d_model=64, n_head=2, d_ff=64, max_seq_len=64, dropout=0.0,
                                pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
        ids = torch.randint(2, 40, (5, 7), generator=g)
        mask = torch.ones_like(ids)
        mask[2, 5:] = 0
    else:
        extra = dict(n_kv_head=2, d_ff=128, max_seq_len=64) if arch == "llama" else {}
        cfg = zeroformer.preset("tiny" if arch == "gpt2" else "llama", vocab_size=40, n_layer=2,
                                d_model=64, n_head=4, dropout=0.0, eos_token_id=EOS, **extra)
        ids = torch.randint(2, 40, (4, 6), generator=g)
        mask = torch.ones_like(ids)
        mask[1, :2] = 0                       # left padding
        mask[3, :1] = 0
    torch.manual_seed(3)
    m = build_model(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)                       # peaked distributions: sentences end at different steps
    fast = m.generate(ids, 24, num_beams=4, attention_mask=mask)
    monkeypatch.setattr(KVCache, "by_ancestry", False)
    slow = m.generate(ids, 24, num_beams=4, attention_mask=mask)
    assert torch.equal(fast, slow)
