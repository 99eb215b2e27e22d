"""Batched decoding for many users: continuous batching over a slot cache.

Independent requests (each its own prompt, length, sampling settings and seed) decode together:
one forward pass per step computes the next token of every running sequence, a new request is
admitted at a token boundary and a finished one retired, without stopping the others.

A *slot* is one row of a preallocated KV cache (models/base.py:new_slot_cache): per layer,
keys and values (max_batch, h_kv, max_len, d_head); a request owns one slot from admission to
its end, and slot s holds its positions 0..L_s - 1 (its own length L_s). A step runs:

    decode   every running request feeds its newest token, row r of the batch = slot r:
                 ids (R, 1), positions p_r = L_r (R, 1),  R = highest busy slot + 1;
             a free slot below R rides along as a dummy row (token 0 at position 0; the slot is
             overwritten when it is next admitted). The key mask (R, W), W = max_r p_r + 1,
                 M[r, j] = (j <= p_r)
             keeps every row to its own positions; RoPE / learned positions use p_r per row.
             Each row's logits (V,) pick its token with the request's own torch.Generator.
    retire   a request that emitted EOS, met `stop`, reached max_new_tokens or was cancelled
             frees its slot at once.
    admit    a queued request takes the lowest free slot; its prompt (1, T) runs alone
             (prefill: one forward over the prompt into the slot, the same call as
             model.generate makes), which gives its first token.

So each running request gets one token per step, and its tokens equal decoding it alone with
model.generate (greedy exactly; sampled with a seed, the same draws: tests/test_batching.py).

    engine = BatchEngine(model, max_batch=16, max_len=512)
    rid = engine.add(prompt_ids, max_new_tokens=64, temperature=0.8, top_p=0.9, seed=1)
    for ev in engine.step(): ...        # Event(rid, token, finished)
    engine.cancel(rid)
    outputs = engine.run([dict(prompt_ids=..., max_new_tokens=...), ...])   # token lists
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

import torch

from .errors import UserError
from .generate import _as_set, apply_repetition_penalty, check_sampling_args, next_tokens


class SlotSession:
    """A decoder-only model over a slot cache (models/base.py:new_slot_cache). The model is any
    module called as model(ids, attention_mask=, position_ids=, cache=, last_only=) -> logits."""

    def __init__(self, model, max_batch: int, max_len: int):
        self.model, self.cache = model, model.new_slot_cache(max_batch, max_len)
        self.slots = self.cache.slots

    def prefill(self, slot: int, ids: torch.Tensor) -> torch.Tensor:
        """ids (1, T): a prompt into positions 0..T-1 of `slot` -> last-position logits (1, V)."""
        self.slots.prefill(slot)
        return self.model(ids, cache=self.cache, last_only=True)[:, -1]

    def decode(self, ids: torch.Tensor, positions: torch.Tensor, width: int | None = None):
        """ids (R,): row r's token, written at positions[r] (R,) of slot r -> logits (R, V).
        width: max(positions) + 1 when the caller knows it (saves a device sync)."""
        self.slots.decode(positions, width)
        keys = torch.arange(self.slots.width, device=ids.device)
        mask = keys[None, :] <= positions[:, None]                         # (R, W)
        return self.model(ids[:, None], attention_mask=mask, position_ids=positions[:, None],
                          cache=self.cache, last_only=True)[:, -1]


class Event(NamedTuple):
    """What a step did for one request: `token` (None when it ended without one: cancelled,
    max_new_tokens=0), and whether the request is finished."""
    rid: int
    token: int | None
    finished: bool


@dataclass
class Request:
    rid: int
    prompt: torch.Tensor                      # (1, T)
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    eos: set = field(default_factory=set)
    generator: torch.Generator | None = None
    repetition_penalty: float = 1.0
    stop: Callable[[torch.Tensor], object] | None = None
    tokens: list = field(default_factory=list)
    slot: int | None = None

    def seqs(self) -> torch.Tensor:
        """(1, T + n): the prompt and the tokens so far (what `stop` and the penalty read)."""
        return torch.cat([self.prompt, self.prompt.new_tensor([self.tokens])], 1)


class BatchEngine:
    """Continuous batching of independent requests over `max_batch` cache slots of `max_len`
    positions each (a request needs len(prompt) + max_new_tokens <= max_len). More requests than
    slots wait in a queue, first come first served. Puts the model in eval mode."""

    def __init__(self, model, max_batch: int = 16, max_len: int | None = None):
        context = model.config.max_seq_len
        max_len = context if max_len is None else max_len
        if max_batch < 1 or not 1 <= max_len <= context:
            raise UserError(f"batched decoding needs max_batch >= 1 and 1 <= max_len <= the "
                            f"model's context {context} (got {max_batch}, {max_len})")
        model.eval()
        self.model, self.max_batch, self.max_len = model, max_batch, max_len
        self.session = model.slot_session(max_batch, max_len)
        self.free = list(range(max_batch))   # a heap: the lowest free slot first
        self.running: dict[int, Request] = {}  # slot -> request
        self.queue: deque[Request] = deque()
        self.pending: list[Event] = []         # events of add()/cancel(), reported by step()
        self._next_rid = 0
        self._device = model.decoder_embeddings.tok.weight.device

    # ------------------------------------------------------------------------- the requests
    def add(self, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_k=None,
            top_p=None, eos_token_id=None, seed: int | None = None,
            repetition_penalty: float = 1.0, stop=None) -> int:
        """Queue a request -> its id. prompt_ids: token ids (a list or a (T,) / (1, T) tensor).
        The arguments mean what they mean in model.generate (eos_token_id default: the model's;
        `stop(seqs (1, T + n))` true ends it); a `seed` gives the request its own generator, so
        its draws equal model.generate(..., seed=seed)."""
        check_sampling_args(temperature, top_k, top_p, 1, repetition_penalty, max_new_tokens)
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=self._device).view(1, -1)
        if prompt.size(1) < 1:
            raise UserError("a request needs a prompt of at least one token")
        if prompt.size(1) + max_new_tokens > self.max_len:
            raise UserError(f"prompt ({prompt.size(1)} tokens) + max_new_tokens "
                            f"({max_new_tokens}) exceed the engine's max_len {self.max_len}")
        eos = self.model.config.eos_token_id if eos_token_id is None else eos_token_id
        gen = None if seed is None else torch.Generator(device=self._device).manual_seed(seed)
        rid, self._next_rid = self._next_rid, self._next_rid + 1
        req = Request(rid, prompt, max_new_tokens, temperature, top_k, top_p, _as_set(eos), gen,
                      repetition_penalty, stop)
        if max_new_tokens == 0:
            self.pending.append(Event(rid, None, True))
        else:
            self.queue.append(req)
        return rid

    def cancel(self, rid: int) -> bool:
        """End a request now (running: its slot is free for the next admission; queued: it never
        runs). False if it is not known or already finished."""
        for slot, req in list(self.running.items()):
            if req.rid == rid:
                self._retire(slot)
                self.pending.append(Event(rid, None, True))
                return True
        for req in self.queue:
            if req.rid == rid:
                self.queue.remove(req)
                self.pending.append(Event(rid, None, True))
                return True
        return False

    @property
    def busy(self) -> bool:
        """Anything left to do: a request running or queued, or an event not yet reported."""
        return bool(self.running or self.queue or self.pending)

    # ------------------------------------------------------------------------------ a step
    @torch.no_grad()
    def step(self) -> list[Event]:
        """One token boundary: decode every running request, retire the finished ones, admit
        queued requests into free slots (their first token). -> the events, in that order."""
        events, self.pending = self.pending, []
        if self.running:
            rows = max(self.running) + 1
            ids, pos = [0] * rows, [0] * rows        # a free slot below `rows`: a dummy row
            for slot, req in self.running.items():
                ids[slot] = req.tokens[-1]
                pos[slot] = req.prompt.size(1) + len(req.tokens) - 1
            logits = self.session.decode(self._tensor(ids), self._tensor(pos), max(pos) + 1)
            logits = logits.float()                                           # (R, V)
            greedy = None      # every greedy row's argmax in one call (the first maximum, as
            if any(r.temperature == 0.0 and r.repetition_penalty == 1.0   # torch.argmax; numpy's
                   for r in self.running.values()):          # is ~20x faster on a CPU (V = 49k))
                greedy = (logits.numpy().argmax(1) if logits.device.type == "cpu"
                          else logits.argmax(-1)).tolist()
            for slot, req in sorted(self.running.items()):
                if greedy is not None and req.temperature == 0.0 and req.repetition_penalty == 1.0:
                    events.append(self._take(slot, req, greedy[slot]))
                else:
                    events.append(self._emit(slot, req, logits[slot:slot + 1]))
        while self.queue and self.free:
            req = self.queue.popleft()
            req.slot = slot = heapq.heappop(self.free)
            self.running[slot] = req
            logits = self.session.prefill(slot, req.prompt).float()           # (1, V)
            events.append(self._emit(slot, req, logits))
        return events

    def _tensor(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self._device)

    def _emit(self, slot: int, req: Request, logits: torch.Tensor) -> Event:
        """Pick the request's next token from its logits (1, V), exactly as generate.sample
        does for one row; retire it if it is finished."""
        if req.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, req.seqs(), req.repetition_penalty)
        tok = int(next_tokens(logits, req.temperature, req.top_k, req.top_p, req.generator)[0])
        return self._take(slot, req, tok)

    def _take(self, slot: int, req: Request, tok: int) -> Event:
        """Append the request's next token; retire it if it is finished."""
        req.tokens.append(tok)
        done = tok in req.eos or len(req.tokens) >= req.max_new_tokens
        if not done and req.stop is not None:
            done = bool(torch.as_tensor(req.stop(req.seqs())).any())
        if done:
            self._retire(slot)
        return Event(req.rid, tok, done)

    def _retire(self, slot: int) -> None:
        del self.running[slot]
        heapq.heappush(self.free, slot)

    # ------------------------------------------------------------------------ conveniences
    def stream(self):
        """Step until nothing is left; yields every Event."""
        while self.busy:
            yield from self.step()

    def run(self, requests: Iterable[dict]) -> list[list[int]]:
        """Add every request (keyword arguments of `add`), decode them all -> each request's
        generated tokens (without the prompt), in the order given."""
        rids = [self.add(**r) for r in requests]
        out: dict[int, list[int]] = {rid: [] for rid in rids}
        for ev in self.stream():
            if ev.token is not None and ev.rid in out:
                out[ev.rid].append(ev.token)
        return [out[rid] for rid in rids]
