"""Training SentencePiece models: unigram (Kudo 2018, as ``spm_train`` does it) and SentencePiece-
style BPE, written as a ``.model`` file that the `sentencepiece` library loads (tested: same ids).

The corpus (shared by both algorithms). Each line is normalized as the written model will
normalize it (identity rules: spaces collapsed and stripped, a dummy-prefix "▁", " " -> "▁").
A piece may hold "▁" only as its first character and may not mix Unicode scripts (SentencePiece's
IsValidSentencePiece; digits and punctuation are script "Common", marks take their neighbour's),
so no piece crosses the start of a word or a script change: the text is cut there into CHUNKS
("▁lord," -> "▁lord" + ","), which segment independently, and training runs on the distinct chunks
with their counts. Characters outside ``character_coverage`` (the rarest, by count) are left out
of the vocabulary (they will encode as <unk>); chunks are cut at them too.

Unigram (Kudo 2018, "Subword Regularization", section 3.2; SentencePiece unigram_model_trainer.cc):
  1. seed: every right-maximal substring of the chunks up to `max_piece_length` characters
     (followed in the text by at least two different characters: the internal nodes of the
     suffix tree, which SentencePiece enumerates with a suffix array), scored count * length,
     the `seed_size` best, plus every kept character (scored by its count); log p = log(v / sum v).
     We enumerate the chunks' substrings directly with their following character (a word's last
     chunk is taken to be followed by "▁"). Seeding with every repeated substring instead (not
     only right-maximal ones) gave 3% more tokens per character on held-out text.
  2. EM, two iterations per round: E-step = expected piece counts by forward-backward over each
     chunk's lattice (spm_lattice.Lattice, vectorised); M-step = SentencePiece's Bayesian update
     log p(w) = digamma(c(w)) - digamma(sum c), pieces with c < 0.5 dropped (characters never).
  3. prune to max(1.1 * vocab_size, 0.75 * size): a piece w that is its own best segmentation
     has the alternative segmentation alt(w) (its second best); removing w moves its Viterbi
     count c(w) onto alt(w), changing the corpus log-likelihood by
        loss(w) = c(w) * [log p(w) - sum_{v in alt(w)} log((c(v) + c(w)) / (C - c(w) + c(w)|alt(w)|))]
     (C = total Viterbi count, p(w) = c(w) / C); the pieces with the largest loss are kept.
  4. repeat 2-3 until the vocabulary is at most 1.1 * vocab_size; keep the best-scored pieces.

BPE (bpe_model_trainer.cc): from characters, merge the most frequent adjacent pair (counted over
chunks, weighted by chunk counts, with bpe_train.PairIndex) whose result is a valid piece; ties:
the shorter result, then the smaller string (SentencePiece's order); piece score = -(order of
creation), the characters last. Ids: <unk> 0, <s> 1, </s> 2, then the pieces. (Tested: the same
pieces in the same order as the library's trainer with identity normalization.)
"""

from __future__ import annotations

import heapq
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np

from ..errors import UserError
from . import spm_proto as P
from .spm_algos import SPACE, Normalizer
from .spm_lattice import Lattice, digamma

META = [("<unk>", P.UNKNOWN), ("<s>", P.CONTROL), ("</s>", P.CONTROL)]


@lru_cache(maxsize=None)
def script(c: str) -> str:
    """An approximation of the Unicode script SentencePiece looks up: letters by the first word
    of their name (LATIN, CYRILLIC, CJK; Hiragana and Katakana count as Han, as in SentencePiece),
    marks "inherit" (take the previous character's), everything else "Common"."""
    cat = unicodedata.category(c)
    if cat[0] == "M":
        return ""
    if cat[0] != "L":
        return "Common"
    name = unicodedata.name(c, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "Han"
    return name.split(" ")[0] or "Common"


def normalizer_spec() -> P.ModelSpec:
    return P.ModelSpec(normalizer_name="identity")


def corpus_chunks(texts, character_coverage=0.9995):
    """Texts -> (Counter of chunks, kept characters by decreasing count); see the module doc."""
    norm = Normalizer(normalizer_spec())
    words = Counter()  # "▁" + word -> count (a normalized line is "▁w1▁w2...")
    for text in texts:
        for line in text.split("\n"):
            words.update(norm.normalize(line.rstrip("\r")).split(SPACE)[1:])
    chars = Counter()
    for w, f in words.items():
        chars[SPACE] += f
        for c, n in Counter(w).items():
            chars[c] += n * f
    total, acc, kept = sum(chars.values()), 0, []
    for c, n in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if acc >= character_coverage * total:
            break
        acc += n
        kept.append(c)
    keep = set(kept)
    chunks = Counter()
    for w, f in words.items():
        for chunk_next in _chunks(SPACE + w, keep):
            chunks[chunk_next] += f
    return chunks, kept


def _chunks(s: str, keep: set):
    """A word -> [(chunk, the character after it in the text; "▁" after the last)]."""
    out, cur, prev = [], "", None
    for c in s:
        if c not in keep:
            out.append((cur, c))
            cur, prev = "", None
            continue
        if c == SPACE:
            out.append((cur, c))
            cur, prev = c, None
            continue
        sc = script(c) or prev
        if prev is not None and sc != prev:
            out.append((cur, c))
            cur = ""
        cur += c
        prev = sc
    out.append((cur, SPACE))
    return [x for x in out if x[0]]


def _merge_followers(chunks: Counter) -> Counter:
    out = Counter()
    for (x, _), f in chunks.items():
        out[x] += f
    return out


def write_spec(pieces, model_type) -> P.ModelSpec:
    """(piece, score) list -> a ModelSpec: <unk> <s> </s>, then the pieces, identity normalizer."""
    spec = normalizer_spec()
    spec.model_type = model_type
    spec.pieces = [P.Piece(p, 0.0, t) for p, t in META] + [P.Piece(w, float(s)) for w, s in pieces]
    spec.vocab_size = len(spec.pieces)
    return spec


def _check_size(vocab_size, kept):
    if not kept:
        raise UserError("the training text is empty (no characters after normalization)")
    if vocab_size < len(META) + len(kept):
        raise UserError(f"vocab size {vocab_size} is too small: the corpus needs {len(kept)} "
                        f"characters + {len(META)} special pieces (lower --character-coverage?)")


def _check_reached(vocab_size, n_pieces):
    if n_pieces + len(META) < vocab_size:
        raise UserError(f"vocab size {vocab_size} is too large for this text: training found "
                        f"{n_pieces + len(META)} pieces (set --vocab-size to at most that)")


# ---- unigram ---------------------------------------------------------------------------------
def train_unigram(texts, vocab_size, character_coverage=0.9995, max_piece_length=16,
                  seed_size=1_000_000, shrinking_factor=0.75, sub_iterations=2, log=None):
    """Texts -> a unigram ModelSpec of `vocab_size` pieces (steps 1-4 of the module docstring);
    `log(message)` hears the log-likelihood per character of every EM iteration."""
    with_next, kept = corpus_chunks(texts, character_coverage)
    _check_size(vocab_size, kept)
    chunks = _merge_followers(with_next)
    strings = list(chunks)
    freq = np.array([chunks[x] for x in strings], dtype=np.float64)
    char_count, subs, right = Counter(), Counter(), {}
    for (x, after), f in with_next.items():
        n = len(x)
        for i in range(n):
            char_count[x[i]] += f
            for j in range(i + 2, min(n, i + max_piece_length) + 1):
                w = x[i:j]
                subs[w] += f
                nxt = x[j] if j < n else after
                if right.setdefault(w, nxt) != nxt:
                    right[w] = None  # seen before two different characters: right-maximal
    seeds = [(w, c * len(w)) for w, c in subs.items() if right[w] is None]
    seeds.sort(key=lambda kv: (-kv[1], kv[0]))
    seeds = [(c, char_count[c]) for c in kept] + seeds[:seed_size]
    pieces = [w for w, _ in seeds]
    piece_id = {w: k for k, w in enumerate(pieces)}
    value = np.array([v for _, v in seeds], dtype=np.float64)
    score = np.log(value) - np.log(value.sum())
    is_char = np.zeros(len(pieces), dtype=bool)
    is_char[:len(kept)] = True
    del subs, seeds
    lat = _build_lattice(strings, piece_id, max_piece_length)
    alive = np.ones(len(pieces), dtype=bool)
    desired = int(vocab_size * 1.1)
    while True:
        for _ in range(sub_iterations):
            counts, objective = lat.expected_counts(np.where(alive, score, -np.inf), freq,
                                                    len(pieces))
            alive &= (counts >= 0.5) | is_char
            score = _m_step(counts, alive, is_char)
            lat = lat.subset(alive[lat.piece])
            if log:
                log(f"EM: {int(alive.sum())} pieces, log-likelihood/char "
                    f"{objective / float(freq @ lat.lengths):.4f}")
        if alive.sum() <= desired:
            break
        alive = _prune(lat, score, alive, is_char, freq, pieces,
                       max(desired, int(shrinking_factor * alive.sum())))
        lat = lat.subset(alive[lat.piece])
    n_keep = vocab_size - len(META)
    order = np.flatnonzero(alive & ~is_char)
    order = order[np.lexsort((order, -score[order]))][:n_keep - len(kept)]
    final = [(pieces[k], score[k]) for k in np.flatnonzero(is_char)] + \
            [(pieces[k], score[k]) for k in order]
    final.sort(key=lambda ws: (-np.float32(ws[1]), ws[0]))
    _check_reached(vocab_size, len(final))
    return write_spec(final, P.UNIGRAM)


def _m_step(counts, alive, is_char):
    """log p(w) = digamma(c(w)) - digamma(sum c); a character whose expected count fell under
    0.5 stays, scored just under the lowest piece (as SentencePiece's finalization scores it)."""
    c = np.where(alive & (counts >= 0.5), counts, 0.0)
    score = np.full(len(counts), -np.inf)
    big = c > 0
    score[big] = digamma(c[big]) - digamma(c.sum())
    low = alive & ~big
    score[low] = score[big].min() - 1e-4 if big.any() else 0.0
    return score


def _build_lattice(strings, piece_id, max_len):
    es, ei, ej, ep = [], [], [], []
    for s, x in enumerate(strings):
        n = len(x)
        for i in range(n):
            for j in range(i + 1, min(n, i + max_len) + 1):
                k = piece_id.get(x[i:j])
                if k is not None:
                    es.append(s)
                    ei.append(i)
                    ej.append(j)
                    ep.append(k)
    return Lattice([len(x) for x in strings], es, ei, ej, ep)


def _prune(lat, score, alive, is_char, freq, pieces, target):
    """-> the alive mask after keeping `target` pieces (see step 3 of the module docstring)."""
    n = len(pieces)
    _, vs, vp = lat.viterbi(score)
    count = np.bincount(vp, weights=freq[vs], minlength=n)
    total = count.sum()
    # each alive multi-character piece as a string of its own, its lattice from one occurrence
    cand = np.flatnonzero(alive & ~is_char)
    first = np.full(n, -1, dtype=np.int64)
    first[lat.piece[::-1]] = np.arange(len(lat.piece))[::-1]
    cand = cand[first[cand] >= 0]
    occ = first[cand]
    s, a, b = lat.s[occ], lat.i[occ], lat.j[occ]
    # edges of string s with start in [a, b): contiguous when sorted by (string, start)
    order = np.lexsort((lat.j, lat.i, lat.s))
    key = lat.s[order] * (lat.lengths.max() + 1) + lat.i[order]
    width = lat.lengths.max() + 1
    lo = np.searchsorted(key, s * width + a)
    hi = np.searchsorted(key, s * width + b)
    sizes = hi - lo
    owner = np.repeat(np.arange(len(cand)), sizes)
    e = order[np.repeat(lo - np.cumsum(np.concatenate([[0], sizes[:-1]])), sizes)
              + np.arange(sizes.sum())]
    inside = (lat.j[e] <= b[owner]) & ~((lat.i[e] == a[owner]) & (lat.j[e] == b[owner]))
    e, owner = e[inside], owner[inside]
    plat = Lattice(b - a, owner, lat.i[e] - a[owner], lat.j[e] - a[owner], lat.piece[e])
    alt_score, alt_s, alt_p = plat.viterbi(score)
    own = score[cand]
    has_alt = np.isfinite(alt_score)
    keep = alive & is_char
    keep[cand[~has_alt & (count[cand] > 0)]] = True  # no alternative: always kept
    ok = has_alt & (own >= alt_score) & (count[cand] > 0)  # its own best segmentation
    cw = count[cand]
    n_alt = np.bincount(alt_s, minlength=len(cand))
    with np.errstate(divide="ignore", invalid="ignore"):
        lp_alt = np.bincount(alt_s, weights=np.log(count[alt_p] + cw[alt_s]),
                             minlength=len(cand))
        lp_alt = lp_alt - n_alt * np.log(total - cw + cw * n_alt)
        loss = cw / total * (np.log(cw) - np.log(total) - lp_alt)
    room = target - int(keep.sum())
    idx = np.flatnonzero(ok)
    idx = idx[np.lexsort((cand[idx], -loss[idx]))][:max(room, 0)]
    keep[cand[idx]] = True
    return keep


# ---- BPE ----------------------------------------------------------------------------------------
def train_spm_bpe(texts, vocab_size, character_coverage=0.9995, max_piece_length=16, log=None):
    """Texts -> a SentencePiece BPE ModelSpec of `vocab_size` pieces (see the module docstring)."""
    from .bpe_train import PairIndex

    chunks, kept = corpus_chunks(texts, character_coverage)
    _check_size(vocab_size, kept)
    chunks = _merge_followers(chunks)
    tokens = list(kept)
    token_id = {c: k for k, c in enumerate(tokens)}
    words = [[token_id[c] for c in w] for w in chunks]
    index = PairIndex(words, list(chunks.values()))
    counts = index.pairs

    def entry(a, b, c):  # SentencePiece's order: most frequent, then shorter, then smaller string
        w = tokens[a] + tokens[b]
        return -c, len(w), w, a, b

    heap = [entry(a, b, c) for (a, b), c in counts.items()]
    heapq.heapify(heap)
    merged = []
    n_merges = vocab_size - len(META) - len(kept)
    while len(merged) < n_merges and heap:
        neg, _, new, a, b = heapq.heappop(heap)
        if counts.get((a, b), 0) != -neg or neg == 0:
            continue
        if len(new) > max_piece_length:
            continue  # not a valid piece: never merged (pushed again only if its count changes)
        c = token_id.get(new)
        if c is None:
            c = token_id[new] = len(tokens)
            tokens.append(new)
            merged.append(new)
        for pair in index.merge(a, b, c):
            cnt = counts[pair]
            if cnt > 0:
                heapq.heappush(heap, entry(pair[0], pair[1], cnt))
            else:
                counts.pop(pair, None)
    _check_reached(vocab_size, len(merged) + len(kept))
    order = merged + kept
    return write_spec([(w, -k) for k, w in enumerate(order)], P.BPE)

