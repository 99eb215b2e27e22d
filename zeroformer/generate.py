"""The generation engine, shared by every model that writes tokens (decoder-only and encoder–decoder).

Autoregressive decoding: p(y) = Π_t p(y_t | y_<t, x). Each step feeds only the newest token(s) to a
*session* that holds the model's KV cache, takes the next-token distribution, and picks:
- greedy (temperature 0): y_t = argmax p;
- sampling: softmax(logits / T), optionally restricted to the k most likely tokens (top-k) or to the
  smallest set whose probability reaches p (top-p / nucleus); a `seed` makes it reproducible;
- beam search: keep the `num_beams` best partial sequences by total log-probability; a finished
  hypothesis scores sum(log p) / lp(|Y|), where lp(|Y|) = |Y|^α (transformers' and Marian's
  form, the default) or GNMT's ((5 + |Y|) / 6)^α (Wu et al. 2016 eq. 14, used by Vaswani et
  al. 2017 with α = 0.6), |Y| the generated length (EOS included), α = length_penalty.

A session is anything with `step(ids (B, t), attention_mask (B, past + t) | None) -> logits (B, V)`
for the last position and `reorder(index)` (beam search keeps rows `index` of its cache): a
DecoderSession here, a Seq2SeqSession (models/encoder_decoder.py). `model.generate` (one method
for both kinds of model, models/base.py:GenerativeModel) checks the arguments and the context,
opens the session and calls `sample` or `beam_search`.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import UserError
from .nn.q4 import topk_indices


def check_sampling_args(temperature=0.0, top_k=None, top_p=None, num_beams=1,
                        repetition_penalty=1.0, max_new_tokens=0, stream=None, stop=None) -> None:
    """The one check of generation arguments (model.generate, sample, the CLI): each in its range,
    and nothing beam search does not support when num_beams > 1."""
    if temperature is None or temperature < 0:
        raise UserError(f"temperature must be >= 0 (got {temperature})")
    if top_k is not None and top_k < 1:
        raise UserError(f"top-k must be >= 1 (got {top_k})")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise UserError(f"top-p must be in (0, 1] (got {top_p})")
    if num_beams < 1:
        raise UserError(f"num_beams must be >= 1 (got {num_beams})")
    if repetition_penalty <= 0:
        raise UserError(f"repetition penalty must be > 0 (got {repetition_penalty})")
    if max_new_tokens < 0:
        raise UserError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
    if num_beams > 1:
        unsupported = [name for name, given in (
            ("temperature", temperature != 0.0), ("top_k", top_k is not None),
            ("top_p", top_p is not None), ("repetition_penalty", repetition_penalty != 1.0),
            ("stream", stream is not None), ("stop", stop is not None)) if given]
        if unsupported:
            raise UserError(f"beam search (num_beams={num_beams}) does not support "
                            f"{', '.join(unsupported)}; use num_beams=1 for it")


# ------------------------------------------------------------------------------ logits processing
def apply_repetition_penalty(logits, seen_ids, penalty: float, mask=None):
    """CTRL-style: a token already present has its logit divided by `penalty` (multiplied if < 0).

    logits (B, V); seen_ids (B, T); mask (B, T) or None: padding (0) does not count as seen, as
    in transformers (left padding of a batch is not part of the text).
    """
    if penalty == 1.0:
        return logits
    v = logits.size(-1)
    if mask is not None:  # send padding to a spare column V that is dropped below
        seen_ids = seen_ids.masked_fill(mask[:, -seen_ids.size(1):] == 0, v)
    seen = torch.zeros(logits.size(0), v + 1, dtype=torch.bool, device=logits.device)
    seen = seen.scatter_(1, seen_ids, True)[:, :v]
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def filter_top_k_top_p(logits, top_k=None, top_p=None):
    """Set to -inf every logit outside the top k / outside the nucleus of mass top_p. (B, V)."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass of strictly more likely tokens already reaches top_p
        drop = (probs.cumsum(-1) - probs) >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def next_tokens(logits, temperature, top_k, top_p, generator):
    """(B, V) logits -> (B,) chosen token ids."""
    if temperature == 0.0:
        return logits.argmax(-1)
    logits = filter_top_k_top_p(logits / temperature, top_k, top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(session, prompt, max_new_tokens, attention_mask=None, temperature=0.0, top_k=None,
           top_p=None, eos_token_id=None, pad_token_id=None, seed=None, repetition_penalty=1.0,
           stream: Callable[[torch.Tensor], None] | None = None,
           stop: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Greedy or sampled decoding. prompt: (B, T) -> (B, T + n) with n <= max_new_tokens.

    Rows that emitted `eos_token_id` (or for which `stop(seqs)` is True) are finished and padded with
    `pad_token_id` (default: eos). `stream(tokens (B,))` is called once per step.
    """
    check_sampling_args(temperature, top_k, top_p, 1, repetition_penalty, max_new_tokens)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=prompt.device).manual_seed(seed)
    eos = _as_set(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (min(eos) if eos else 0)
    seqs, mask = prompt, attention_mask
    done = torch.zeros(prompt.size(0), dtype=torch.bool, device=prompt.device)
    feed = prompt
    for _ in range(max_new_tokens):
        logits = session.step(feed, mask).float()
        logits = apply_repetition_penalty(logits, seqs, repetition_penalty, mask)
        tok = next_tokens(logits, temperature, top_k, top_p, generator)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        seqs = torch.cat([seqs, tok[:, None]], dim=1)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if stream is not None:
            stream(tok)
        if eos:
            done |= _isin(tok, eos)
        if stop is not None:
            done |= stop(seqs)
        if bool(done.all()):
            break
        feed = tok[:, None]
    return seqs


# -------------------------------------------------------------------------------- beam search
LENGTH_NORMS = ("length", "gnmt")


def length_divisor(length: int, alpha: float, form: str = "length") -> float:
    """The divisor of a hypothesis' sum(log p): |Y|^alpha ("length") or ((5 + |Y|) / 6)^alpha
    ("gnmt"). alpha = 0: no normalisation; larger alpha favours longer hypotheses."""
    if form == "gnmt":
        return ((5 + length) / 6) ** alpha
    return length ** alpha


def check_length_norm(form: str) -> None:
    if form not in LENGTH_NORMS:
        raise UserError(f"length norm {form!r} is not one of {', '.join(LENGTH_NORMS)}")


@torch.no_grad()
def beam_search(new_session: Callable[[int], object], prompt, max_new_tokens, num_beams=4,
                attention_mask=None, eos_token_id=None, pad_token_id=None,
                length_penalty=1.0, length_norm="length") -> torch.Tensor:
    """Batched beam search. `new_session(n)` builds a session for n = B * num_beams rows: row
    i * num_beams + j is beam j of prompt i (a session may share per-prompt state, such as the
    encoder output, among a prompt's beams: see Seq2SeqSession).

    prompt: (B, T) -> (B, T + n): the best finished hypothesis of each row, padded with pad/eos.
    Hypotheses score sum(log p) / length_divisor(generated length, length_penalty, length_norm).
    Each step ranks the 2K best
    continuations of a prompt: the first K that do not end in EOS are its next beams, and one that
    ends in EOS becomes a finished hypothesis only if it ranks among the first K (as in
    transformers' beam search).

    A sentence whose search is over is dropped from the batch: `session.reorder(index)` then gets
    fewer rows than before (index keeps the K beams of each sentence still running), so later
    steps only compute the sentences still running.
    """
    check_length_norm(length_norm)
    b, t0 = prompt.shape
    k = num_beams
    eos = _as_set(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (min(eos) if eos else 0)
    session = new_session(b * k)
    seqs = prompt.repeat_interleave(k, dim=0)                                  # (B*K, T)
    mask = attention_mask.repeat_interleave(k, dim=0) if attention_mask is not None else None
    scores = torch.full((b, k), float("-inf"), device=prompt.device)
    scores[:, 0] = 0.0                                 # all beams start equal: expand only beam 0
    finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(b)]
    done = [False] * b
    rows = list(range(b))          # the sentences still searched, in the session's row order
    feed = seqs
    for step in range(max_new_tokens):
        logp = session.step(feed, mask).float().log_softmax(-1)                 # (R*K, V)
        v = logp.size(-1)
        # the 2K best continuations of a sentence are among the 2K best of each of its beams:
        # rank those (R*K, 2K) instead of adding the score to every (R*K, V) entry
        beam_tok = topk_indices(logp, min(2 * k, v))          # (R*K, 2K), in no order (C heap)
        beam_lp = logp.gather(1, beam_tok)
        cand = (scores.view(-1, 1) + beam_lp).view(len(rows), -1)               # (R, K*2K)
        top_scores, pick = cand.topk(2 * k, dim=-1)                             # (R, 2K)
        top_tok = beam_tok.view(len(rows), -1).gather(1, pick)
        top_idx = (pick // beam_tok.size(1)) * v + top_tok                      # beam * V + tok
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()
        next_beam, next_tok, next_score = [], [], []
        norm = length_divisor(step + 1, length_penalty, length_norm)
        for a, i in enumerate(rows):   # a: row in the session, i: sentence in the batch
            chosen = []
            for rank, (s, idx) in enumerate(zip(top_scores[a], top_idx[a])):
                beam, tok = divmod(idx, v)
                if done[i] or len(chosen) == k:
                    break
                if tok in eos:  # a hypothesis ends here, if it ranks among the k best
                    if rank < k and s > float("-inf"):
                        hyp = torch.cat([seqs[a * k + beam], seqs.new_tensor([tok])])
                        finished[i].append((s / norm, hyp))
                    continue
                chosen.append((beam, tok, s))
            while len(chosen) < k:  # a finished row keeps dummy beams that can never win
                chosen.append((0, pad, float("-inf")))
            for beam, tok, s in chosen:
                next_beam.append(a * k + beam)
                next_tok.append(tok)
                next_score.append(s)
            finished[i].sort(key=lambda h: -h[0])
            del finished[i][k:]
            best_running = max(s for _, _, s in chosen)
            if len(finished[i]) == k and best_running / norm <= finished[i][-1][0]:
                done[i] = True
        index = torch.tensor(next_beam, device=prompt.device)
        tok = torch.tensor(next_tok, device=prompt.device)
        scores = torch.tensor(next_score, device=prompt.device).view(len(rows), k)
        keep = [a for a, i in enumerate(rows) if not done[i]]
        if not keep:
            break
        if len(keep) < len(rows):  # drop finished sentences from the batch
            sel = torch.tensor([a * k + j for a in keep for j in range(k)], device=prompt.device)
            index, tok, scores = index[sel], tok[sel], scores[keep]
            rows = [rows[a] for a in keep]
        seqs = torch.cat([seqs.index_select(0, index), tok[:, None]], dim=1)
        if mask is not None:
            mask = mask.index_select(0, index)   # (rows still running, past)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        session.reorder(index)
        feed = tok[:, None]
    n_gen = seqs.size(1) - t0
    for a, i in enumerate(rows):  # still running at the length limit: beams are hypotheses too
        if not done[i]:
            for j in range(k):
                s = scores[a, j].item()
                if s > float("-inf"):
                    finished[i].append((s / length_divisor(max(n_gen, 1), length_penalty,
                                                           length_norm), seqs[a * k + j]))
            finished[i].sort(key=lambda h: -h[0])
    best = [finished[i][0][1] for i in range(b)]
    width = max(len(h) for h in best)
    out = prompt.new_full((b, width), pad)
    for i, h in enumerate(best):
        out[i, : len(h)] = h
    return out


def _as_set(eos) -> set:
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, (list, tuple, set)) else {int(eos)}


def _isin(tok, ids: set):
    return torch.isin(tok, torch.tensor(sorted(ids), device=tok.device))


# -------------------------------------------------------------------------------- sessions
class Session:
    """What the model sessions share: with a cache, a step feeds the model only the new tokens;
    without one (use_cache=False, the slow reference path) the whole prefix, re-run every step."""

    def __init__(self, cache=None):
        self.cache, self.prefix = cache, None

    def tokens(self, ids):
        """ids (N, t), the newest tokens -> what the model is fed this step."""
        if self.cache is not None:
            return ids
        self.prefix = ids if self.prefix is None else torch.cat([self.prefix, ids], 1)
        return self.prefix

    def reorder(self, index):
        if self.cache is not None:
            self.cache.reorder(index)
        else:
            self.prefix = self.prefix.index_select(0, index)


class DecoderSession(Session):
    """Runs a decoder-only model over a preallocated KV cache; returns last-position logits."""

    def __init__(self, model, batch: int, max_len: int, use_cache: bool = True):
        super().__init__(model.new_cache(batch, max_len) if use_cache else None)
        self.model = model

    def step(self, ids, attention_mask=None):
        return self.model(self.tokens(ids), attention_mask=attention_mask, cache=self.cache,
                          last_only=True)[:, -1]
