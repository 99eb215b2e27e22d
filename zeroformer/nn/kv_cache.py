"""Key/value caches: what a decoding step keeps of the earlier positions.

KVCache: (B, h_kv, T_max, d) keys and values of one layer, appended in place (generate.py, beam
search); SlotKVCache: the same for independently-running sequences in slots (batching.py);
StaticKV: cross-attention keys/values over the encoder output, computed once.
"""

from __future__ import annotations

import torch

from . import q4


class KVCache:
    """Preallocated keys/values of one attention layer: (B, h_kv, T_max, d) each.

    `append(k, v)` writes the new positions in place and returns the keys/values so far, so a
    decoding step costs O(T) attention but never re-runs the projections of earlier tokens.

    Beam search reorders rows every step (`reorder(index)`: row r continues beam index[r]). The
    paper-plain way copies them: k, v <- k[index], v[index], O(rows x length) each step. The fast
    way (CPU fp32, where nn/q4.py's kernels are compiled) never moves a row: a table
    anc (B, T_max) int32 says which row holds position j of beam r, beam search reorders that
    table instead (4 bytes per position, not 2 h_kv d floats), and `attend_new` reads keys and
    values through it (q4_step.c:zf_attend_rows). Beam r writes its new position t into row r:
    no beam has a position t yet, so nothing still referenced is overwritten.
    """

    def __init__(self, batch: int, n_kv_head: int, max_len: int, head_dim: int, dtype, device):
        # empty, not zeros: no position is read before it is written (filling 2 x 8 MB per layer
        # was 2% of a beam search's time)
        self.k = torch.empty(batch, n_kv_head, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.length = 0
        self.anc = None     # (B, T_max) int32 once rows are read by ancestry (see above)
        self._own = None    # arange(B) int32: row r's new position is in row r
        self.rows = batch   # the beams in use (rows 0..rows-1 of anc) when read by ancestry

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """k, v (B', h_kv, t, d) -> the keys and values of positions 0..length+t-1."""
        t0, t1 = self.length, self.length + k.size(2)
        if t1 > self.k.size(2):
            raise ValueError(f"KV cache full: {t1} > {self.k.size(2)} positions")
        self._write(k, v, t0, t1)
        if self.anc is None:
            return self.k[:, :, :t1], self.v[:, :, :t1]
        pos = torch.arange(t1, device=self.k.device)       # each beam's positions, gathered:
        rows = self.anc[: self.rows, :t1].long()           # (rows, t1, h_kv, d) -> (rows, h_kv, t1, d)
        return self.k[rows, :, pos].transpose(1, 2), self.v[rows, :, pos].transpose(1, 2)

    def _write(self, k, v, t0, t1):
        n = k.size(0)
        self.k[:n, :, t0:t1] = k
        self.v[:n, :, t0:t1] = v
        if self.anc is not None:
            self.anc[:n, t0:t1] = self._own[:n, None]
        self.length = t1

    def attend_new(self, q, k, v, mask=None):
        """The fast path of one decoding step when rows are read by ancestry: append k, v
        (R, h_kv, 1, d) and return softmax(q K^T / sqrt(d) + M) V for q (R, h, 1, d) — or None,
        writing nothing, where it does not apply (then `append` and attention as usual).
        mask: None or bool (R or 1, 1, 1, length + 1)."""
        t1 = self.length + 1
        if (self.anc is None or q.size(2) != 1 or k.size(2) != 1 or q.size(0) != self.rows
                or q.dtype != torch.float32 or k.dtype != torch.float32 or t1 > self.k.size(2)):
            return None
        keep = None
        if mask is not None:
            if (mask.dtype != torch.bool or mask.dim() != 4 or mask.size(1) != 1
                    or mask.size(2) != 1 or mask.size(3) != t1):
                return None
            keep = mask.expand(self.rows, 1, 1, t1).reshape(self.rows, t1)
        self._write(k, v, self.length, t1)
        return q4.attend_rows(q, self.k, self.v, self.anc, t1, keep)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search): k, v <- k[index], v[index] (or the ancestry
        table, see the class). `index` may be shorter than the batch (finished rows dropped).

        Copying: most beams continue their own row (index[r] == r), so when the batch keeps its
        size and fewer than half the rows change, only those are copied, in place (the right-hand
        side is gathered first, so a row copied from a row that changes too reads the old value)."""
        t, n = self.length, index.numel()
        if self.anc is None and self._by_ancestry():
            self._own = torch.arange(self.k.size(0), dtype=torch.int32)
            self.anc = self._own[:, None].repeat(1, self.k.size(2))
        if self.anc is not None:
            if n > self.rows:
                raise ValueError(f"cannot keep {n} rows of {self.rows}")
            self.anc[:n, :t] = self.anc[: self.rows, :t].index_select(0, index)
            self.rows = n
            return
        if n == self.k.size(0):
            moved = (index != torch.arange(n, device=index.device)).nonzero().squeeze(1)
            if moved.numel() < n // 2:
                if moved.numel():
                    src = index.index_select(0, moved)
                    for cache in (self.k[:, :, :t], self.v[:, :, :t]):
                        cache.index_copy_(0, moved, cache.index_select(0, src))
                return
        spare = getattr(self, "_spare", None)  # a second buffer pair, reused: no allocation
        if spare is None or spare[0].size(0) != n:
            shape = (n,) + self.k.shape[1:]
            spare = (self.k.new_empty(shape), self.v.new_empty(shape))
        torch.index_select(self.k[:, :, :t], 0, index, out=spare[0][:, :, :t])
        torch.index_select(self.v[:, :, :t], 0, index, out=spare[1][:, :, :t])
        old = (self.k, self.v)
        self.k, self.v = spare
        self._spare = old if old[0].size(0) == n else None

    by_ancestry = True  # False: always copy rows (the reference path; tests compare the two)

    def _by_ancestry(self) -> bool:
        return (self.by_ancestry and self.k.dtype == torch.float32 and self.k.device.type == "cpu"
                and self.k.is_contiguous() and q4.available())


class Slots:
    """What the SlotKVCaches of all layers share (batched decoding, zeroformer/batching.py): the
    cache has `max_batch` slots of `max_len` positions; a slot holds one sequence. Before each
    forward pass the engine says where the new keys go:

        prefill(slot)            the prompt (1, t) fills positions 0..t-1 of `slot`
        decode(positions (R,))   row r of the batch (R <= max_batch: slots 0..R-1) feeds one token,
                                 written at positions[r] of slot r; attention then reads positions
                                 0..width-1 of those R slots (width = max(positions) + 1), and the
                                 caller's (R, width) mask keeps each row to its own 0..positions[r].
    """

    def __init__(self, max_batch: int, max_len: int):
        self.max_batch, self.max_len = max_batch, max_len
        self.slot, self.positions, self.width, self.past = None, None, 0, 0

    def prefill(self, slot: int) -> None:
        self.slot, self.positions, self.width, self.past = slot, None, 0, 0

    def decode(self, positions: torch.Tensor, width: int | None = None) -> None:
        self.slot, self.positions = None, positions
        self.width = int(positions.max()) + 1 if width is None else width
        self.past = self.width - 1          # the model reads cache.length as "positions before"
        self._rows = torch.arange(positions.numel(), device=positions.device)


class SlotKVCache:
    """Keys/values of one attention layer for `max_batch` independent sequences (slots):
    (max_batch, h_kv, max_len, d) each, written where `slots` (a Slots, shared by every layer)
    says. Same protocol as KVCache: `length`, and `append(k, v)` -> the keys/values to attend to."""

    def __init__(self, slots: Slots, n_kv_head: int, head_dim: int, dtype, device):
        self.slots = slots
        self.k = torch.zeros(slots.max_batch, n_kv_head, slots.max_len, head_dim, dtype=dtype,
                             device=device)
        self.v = torch.zeros_like(self.k)

    @property
    def length(self) -> int:
        return self.slots.past

    def append(self, k: torch.Tensor, v: torch.Tensor):
        s = self.slots
        if s.slot is not None:                          # prefill: k (1, h_kv, t, d) -> slot
            t = k.size(2)
            if t > s.max_len:
                raise ValueError(f"KV cache full: {t} > {s.max_len} positions")
            self.k[s.slot, :, :t] = k[0]
            self.v[s.slot, :, :t] = v[0]
            return self.k[s.slot:s.slot + 1, :, :t], self.v[s.slot:s.slot + 1, :, :t]
        r = k.size(0)                                   # decode: k (R, h_kv, 1, d), one per row
        if s.width > s.max_len:
            raise ValueError(f"KV cache full: {s.width} > {s.max_len} positions")
        self.k[s._rows, :, s.positions] = k[:, :, 0]    # (R, h_kv, d) at (row, :, position)
        self.v[s._rows, :, s.positions] = v[:, :, 0]
        return self.k[:r, :, :s.width], self.v[:r, :, :s.width]

    def attend_new(self, q, k, v, mask=None):
        return None  # slots use append + attention

    def reorder(self, index: torch.Tensor) -> None:
        raise ValueError("a slot cache keeps its rows in place (no beam search over it)")


class StaticKV:
    """Keys/values computed once (cross-attention over the encoder output)."""

    def __init__(self):
        self.k = self.v = None

    def reorder(self, index: torch.Tensor) -> None:
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


