"""SentencePiece's normalizer and its two segmentation algorithms, as the library computes them.

normalize (SentencePiece ``normalizer.cc``), on the UTF-8 bytes of the text:
  1. cut the text into prefixes: the longest user-defined piece at the position, else the longest
     rule of the precompiled charsmap (a Darts double-array trie: source bytes -> replacement,
     e.g. NFKC plus whitespace rules for ``nmt_nfkc``; empty for ``identity``), else one character;
  2. ``remove_extra_whitespaces``: drop leading spaces, collapse runs of spaces, drop trailing ones;
  3. ``add_dummy_prefix``: start with one space; ``escape_whitespaces``: every ' ' becomes "▁".

BPE (LLaMA, Mistral; ``bpe_model.cc``): start from characters (user-defined pieces whole and
frozen); repeatedly merge the adjacent pair whose concatenation is a piece with the HIGHEST score
(ties: the leftmost), until no adjacent pair is a piece. A max-heap of candidate pairs keyed by
(-score, left); after a merge only the two new neighbour pairs are pushed, stale entries skipped.

Unigram (T5, Marian, ALBERT; ``unigram_model.cc``): Viterbi over the character lattice,
    best(j) = max_{i<j, text[i:j] a piece} best(i) + score(text[i:j]),
with scores = log-probabilities, sums in float32 as the library does; a character that begins no
one-character piece gets an unknown node scored min(score) - 10; user-defined pieces score
len_bytes * max(score) - 0.1 so they always win. Ties keep the first candidate found (earliest
start, then shortest). The candidates at a position come from walking a trie of the pieces
(`unigram_trie`: nested dicts, built once), never from slicing substrings.
Normalization takes the plain path (no trie walk per byte) when no charsmap rule can apply to
the text (`Normalizer._no_rule`, decided per distinct character, cached).
"""

from __future__ import annotations

import heapq
import math
import struct
from array import array

from ..errors import UserError

SPACE = "\u2581"  # ▁
UNK_PENALTY = 10.0


_F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """Round a Python float to the nearest float32 (the library sums scores in float); beyond
    float32's range, +-inf as float arithmetic gives (a hostile file's scores can get there)."""
    try:
        return _F32.unpack(_F32.pack(x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _prefix_match(text: str, pos: int, user: dict, max_len: int) -> int:
    """Length of the longest user-defined piece at text[pos:], or 0."""
    for n in range(min(max_len, len(text) - pos), 0, -1):
        if text[pos:pos + n] in user:
            return n
    return 0


class Normalizer:
    """The normalization a model file declares (see the module docstring)."""

    def __init__(self, spec, user_defined=(), source="<model>"):
        self.add_dummy_prefix = spec.add_dummy_prefix
        self.remove_extra = spec.remove_extra_whitespaces
        self.escape = spec.escape_whitespaces
        self.user = {p.encode("utf-8"): p for p in user_defined}
        self.user_max = max((len(p) for p in self.user), default=0)
        self.units = self.blob = None
        self._info = {}  # char -> _char_info
        cm = spec.precompiled_charsmap
        if cm:
            if len(cm) < 4:
                raise UserError(f"{source}: precompiled_charsmap shorter than its header")
            n = int.from_bytes(cm[:4], "little")
            if n > len(cm) - 4 or n % 4:
                raise UserError(f"{source}: precompiled_charsmap trie size {n} does not fit "
                                f"its {len(cm)} bytes")
            self.units = array("I", cm[4:4 + n])
            if array("I").itemsize != 4:  # pragma: no cover
                raise RuntimeError("array('I') is not 32-bit here")
            if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian
                self.units.byteswap()
            self.blob = cm[4 + n:]
            try:
                self.blob.decode("utf-8")  # every rule's replacement (NUL-separated) is text
            except UnicodeDecodeError:
                raise UserError(f"{source}: precompiled_charsmap replacements are not UTF-8") from None
            if not self.units:
                self.units = None

    # ---- the Darts-clone double array: longest rule at b[pos:] -----------------------------
    def _rule(self, b: bytes, pos: int):
        units, size = self.units, len(self.units)
        u = units[0]
        node = (u >> 10) << ((u & 0x200) >> 6)
        best_len = best_val = 0
        for i in range(pos, len(b)):
            c = b[i]
            node ^= c
            if node >= size:
                break
            u = units[node]
            if (u & 0x800000FF) != c:
                break
            node ^= (u >> 10) << ((u & 0x200) >> 6)
            if (u >> 8) & 1:
                if node >= size:
                    break
                best_len, best_val = i - pos + 1, units[node] & 0x7FFFFFFF
        if not best_len:
            return None, 0
        end = self.blob.find(b"\0", best_val)
        if best_val >= len(self.blob) or end < 0:
            raise UserError(f"precompiled_charsmap rule points outside its strings ({best_val})")
        return self.blob[best_val:end], best_len

    def _prefixes(self, text: str):
        """Yield the normalized prefixes (bytes) of the text, as NormalizePrefix does."""
        b = text.encode("utf-8")
        pos, n = 0, len(b)
        while pos < n:
            if self.user:
                m = _prefix_match_bytes(b, pos, self.user, self.user_max)
                if m:
                    yield b[pos:pos + m]
                    pos += m
                    continue
            if self.units is not None:
                rep, m = self._rule(b, pos)
                if m:
                    yield rep
                    pos += m
                    continue
            m = _char_len(b[pos])
            yield b[pos:pos + m]
            pos += m

    def _after(self, b: bytes):
        """The trie node reached from the root by the bytes `b`, or None when no rule goes on."""
        units, size = self.units, len(self.units)
        u = units[0]
        node = (u >> 10) << ((u & 0x200) >> 6)
        for c in b:
            node ^= c
            if node >= size or (units[node] & 0x800000FF) != c:
                return None
            u = units[node]
            node ^= (u >> 10) << ((u & 0x200) >> 6)
        return node

    def _char_info(self, c: str):
        """(may a rule change c where it stands?, the bytes that would carry a rule on past c,
        c's first UTF-8 byte); cached per character by `_no_rule`."""
        b = c.encode("utf-8")
        rep, m = self._rule(b, 0)
        if m and rep != b:
            return True, frozenset(), b[0]
        node = self._after(b)
        units, size = self.units, len(self.units)
        if node is None:
            return False, frozenset(), b[0]
        cont = frozenset(x for x in range(256)
                         if (node ^ x) < size and (units[node ^ x] & 0x800000FF) == x)
        return False, cont, b[0]

    def _no_rule(self, text: str) -> bool:
        """True when no charsmap rule matches anywhere in `text`: no character is changed by a
        rule alone, and no character begins with a byte that could carry a rule on from the
        character before it (checked over the distinct characters: conservative, exact)."""
        info, cont, chars = self._info, set(), set(text)
        for c in chars:
            got = info.get(c)
            if got is None:
                got = info[c] = self._char_info(c)
            if got[0]:
                return False
            cont |= got[1]
        return not cont or not any(info[c][2] in cont for c in chars)

    def normalize(self, text: str) -> str:
        if not self.user and (self.units is None or self._no_rule(text)):
            return self._normalize_plain(text)
        prefixes = list(self._prefixes(text))
        k = 0
        if self.remove_extra:
            while k < len(prefixes) and prefixes[k] == b" ":
                k += 1
        if k == len(prefixes):
            return ""
        sp_sym = SPACE.encode() if self.escape else b" "
        out = bytearray(sp_sym if self.add_dummy_prefix else b"")
        prev_space = self.remove_extra
        for sp in prefixes[k:]:
            if prev_space:
                sp = sp.lstrip(b" ")
            if sp:
                out += sp.replace(b" ", sp_sym) if self.escape else sp
                prev_space = sp.endswith(b" ")
            if not self.remove_extra:
                prev_space = False
        if self.remove_extra:
            while out.endswith(sp_sym):
                del out[len(out) - len(sp_sym):]
        return out.decode("utf-8", "replace")  # valid unless a rule points inside a character

    def _normalize_plain(self, text: str) -> str:
        """No charsmap, no user-defined pieces: the same rules on str, without a byte loop."""
        if self.remove_extra:
            text = text.lstrip(" ")
            if not text:
                return ""
            while "  " in text:
                text = text.replace("  ", " ")
        elif not text:
            return ""
        sp_sym = SPACE if self.escape else " "
        out = (sp_sym if self.add_dummy_prefix else "") + (text.replace(" ", SPACE)
                                                           if self.escape else text)
        return out.rstrip(sp_sym) if self.remove_extra else out


def _char_len(lead: int) -> int:
    return 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def _prefix_match_bytes(b: bytes, pos: int, user: dict, max_len: int) -> int:
    for n in range(min(max_len, len(b) - pos), 0, -1):
        if b[pos:pos + n] in user:
            return n
    return 0


def bpe_segment(text: str, vocab: dict, scores: list, unused: set, user: dict, user_max: int,
                trace: list | None = None):
    """SentencePiece BPE over normalized `text` -> list of pieces (strings).

    `vocab`: piece -> id for normal, user-defined and unused pieces; `scores[id]`; `unused`: ids
    of unused pieces (merged through, then split back into their parts as the library does).
    `trace`: a list that receives (score, left, right, pieces after the merge) per merge.
    """
    sym, frozen = [], []
    pos = 0
    while pos < len(text):
        m = _prefix_match(text, pos, user, user_max) if user else 0
        sym.append(text[pos:pos + (m or 1)])
        frozen.append(bool(m))
        pos += m or 1
    n = len(sym)
    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    heap, rev = [], {}

    def push(left, right):
        if left < 0 or right < 0 or frozen[left] or frozen[right]:
            return
        piece = sym[left] + sym[right]
        i = vocab.get(piece)
        if i is None:
            return
        heapq.heappush(heap, (-scores[i], left, right, len(piece)))
        if i in unused:
            rev[piece] = (sym[left], sym[right])

    for k in range(1, n):
        push(k - 1, k)

    while heap:
        _, left, right, size = heapq.heappop(heap)
        a, b = sym[left], sym[right]
        if not a or not b or len(a) + len(b) != size:
            continue
        sym[left], sym[right] = a + b, ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prv[nxt[right]] = left
        if trace is not None:  # the pieces now: follow nxt from the first symbol (never merged away)
            k, now = 0, []
            while k >= 0:
                now.append(sym[k])
                k = nxt[k]
            trace.append((scores[vocab[a + b]], a, b, now))
        push(prv[left], left)
        push(left, nxt[left])
    out = []

    def reseg(w):
        i = vocab.get(w)
        if i is None or i not in unused or w not in rev:
            out.append(w)
            return
        reseg(rev[w][0])
        reseg(rev[w][1])

    k = 0 if n else -1
    while k >= 0:
        if rev:
            reseg(sym[k])
        else:
            out.append(sym[k])
        k = nxt[k]
    return out


def unigram_trie(vocab: dict, scores: list, unused: set, user_ids: set, max_score: float):
    """The pieces as a trie: a node is (children: char -> node, end) where `end` is None or, for
    a node that ends a usable piece, (id, the score its edge adds, compare-in-double): a normal
    piece adds its float32 score; a user-defined one len_bytes * max(score) - 0.1 (see the
    module doc). Unused pieces are walked through (the library's trie holds them) but end
    nothing. -> (root's children, the longest piece's length)."""
    root: dict = {}
    for w, i in vocab.items():
        if not w:
            continue  # an empty piece matches nothing
        children, node = root, None
        for c in w:
            node = children.get(c)
            if node is None:
                node = children[c] = [{}, None]
            children = node[0]
        if i in unused:
            continue
        if i in user_ids:
            node[1] = (i, f32(len(w.encode("utf-8")) * max_score) - 0.1, True)
        else:
            node[1] = (i, scores[i], False)
    return root, max(map(len, vocab), default=0)


def unigram_segment(text: str, trie: dict, unk_id: int, min_score: float):
    """Viterbi segmentation of normalized `text` -> list of (piece, id); unknown characters come
    back one per node with `unk_id` (the caller merges runs / falls back to bytes). `trie`:
    unigram_trie's; candidates at a position are found by walking it (no substring objects).

    Scores are float32 as in the library: best(j) is kept in an array('f'); a candidate sum is
    compared in double first and rounded only when it might win (rounding is monotone, so
    round(c) > best implies c > best: the same decisions as rounding every sum)."""
    n = len(text)
    unk_score = f32(min_score - UNK_PENALTY)
    best = array("f", bytes(4 * (n + 1)))
    tmp = array("f", b"\0\0\0\0")
    start = [-1] * (n + 1)
    ids = [0] * (n + 1)
    start[0] = 0  # the origin is reached
    root, max_len = trie
    for s in range(n):
        here = best[s]
        single = False
        children = root
        for e, c in enumerate(text[s:s + max_len], s + 1):
            node = children.get(c)
            if node is None:
                break
            children, t = node
            if t is None:
                continue
            if e == s + 1:
                single = True
            cand = t[1] + here
            if start[e] == -1:
                best[e], start[e], ids[e] = cand, s, t[0]
            elif cand > best[e]:
                if not t[2]:
                    tmp[0] = cand
                    if tmp[0] <= best[e]:
                        continue
                best[e], start[e], ids[e] = cand, s, t[0]
        if not single:
            e = s + 1
            tmp[0] = unk_score + here
            if start[e] == -1 or tmp[0] > best[e]:
                best[e], start[e], ids[e] = tmp[0], s, unk_id
    out, e = [], n
    while e > 0:
        s = start[e]
        out.append((text[s:e], ids[e]))
        e = s
    out.reverse()
    return out
