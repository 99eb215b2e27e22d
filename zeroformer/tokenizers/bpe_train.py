"""Training byte-level BPE: learn merges from a corpus, updating pair counts incrementally.

    1. pre-tokenize the corpus once (`bpe.pretokenize`, the encoder's own pre-tokenizer)
       and count each distinct piece:                                  words = {piece: freq}
    2. spell each piece as its UTF-8 bytes (ids 0..255 after the special tokens)
    3. count adjacent pairs, weighted by word frequency:   count(a, b) = sum_w freq(w) * #(a,b in w)
       and index which words contain each pair:          where(a, b) = {w, ...}
    4. repeat until the vocabulary is full:
         (a, b) = argmax count   (ties: the smaller ids, so training is deterministic)
         new token ab; for each word w in where(a, b): replace a,b by ab in w, subtract w's old
         pairs from `count` and add its new pairs (only the words that contain (a, b) are touched;
         the corpus is never recounted)

The argmax is a heap of (-count, a, b) with lazy deletion: an entry is used only if its count is
still the current one; every pair whose count changed is pushed again.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

import regex

from ..errors import UserError
from .bpe import BYTE_TO_CHAR, pretokenize


def merge_pair(word: list[int], a: int, b: int, c: int) -> list[int]:
    """`word` with every adjacent (a, b), left to right, replaced by the merged symbol c."""
    merged, i, n = [], 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            merged.append(c)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


class PairIndex:
    """Adjacent-pair statistics of a list of words (symbol-id lists, each with a frequency), kept
    up to date as pairs are merged: the shared core of BPE and WordPiece training.

        pairs[(a, b)] = sum_w freq(w) * #(a, b adjacent in w)     where[(a, b)] = {w, ...}
    and with `symbols=True` (WordPiece's score needs them):
        sym[s] = sum_w freq(w) * #(s in w)                         pairs_of[s] = {(a, b) with s}
    """

    def __init__(self, words: list[list[int]], freqs: list[int], symbols: bool = False):
        self.words, self.freqs, self.symbols = words, freqs, symbols
        self.pairs: dict[tuple, int] = defaultdict(int)
        self.where: dict[tuple, set] = defaultdict(set)
        self.sym: dict[int, int] = defaultdict(int)
        self.pairs_of: dict[int, set] = defaultdict(set)
        for w, word in enumerate(words):
            self._add(w, word)

    def _add(self, w: int, word: list[int], sign: int = 1) -> list[tuple]:
        f = sign * self.freqs[w]
        if self.symbols:
            for s in word:
                self.sym[s] += f
        pairs = list(zip(word, word[1:]))
        for p in pairs:
            self.pairs[p] += f
            if sign > 0:
                self.where[p].add(w)
                if self.symbols:
                    self.pairs_of[p[0]].add(p)
                    self.pairs_of[p[1]].add(p)
        return pairs

    def merge(self, a: int, b: int, c: int) -> set:
        """Replace (a, b) by c in every word that holds it; -> the pairs whose count changed
        (the merged pair itself is dropped from the index)."""
        changed = set()
        for w in self.where.pop((a, b), ()):
            word = self.words[w]
            merged = merge_pair(word, a, b, c)
            if len(merged) == len(word):
                continue
            changed.update(self._add(w, word, -1))
            changed.update(self._add(w, merged))
            self.words[w] = merged
        self.pairs.pop((a, b), None)
        changed.discard((a, b))
        return changed


def count_pieces(texts, patterns, add_prefix_space=False, progress=False):
    """Pre-tokenize each text with `bpe.pretokenize` (what encoding runs) and count the pieces."""
    from tqdm import tqdm

    compiled = [regex.compile(p) for p in patterns]
    counts = Counter()
    for text in tqdm(texts, desc="pre-tokenizing", unit="text", disable=not progress or len(texts) < 2):
        counts.update(pretokenize(text, compiled, add_prefix_space))
    return counts


def train_bpe(cls, text, vocab_size, special_tokens=("<|endoftext|>",), patterns=None,
              progress=False, add_prefix_space=False):
    """Learn merges so that specials + 256 bytes + merged tokens = `vocab_size` tokens."""
    from tqdm import tqdm

    from .bpe import GPT2_PATTERN
    from .bpe_io import guess_roles

    patterns = list(patterns or [GPT2_PATTERN])
    specials = list(dict.fromkeys(special_tokens or ()))
    base = len(specials)
    if vocab_size < base + 256:
        raise UserError(f"BPE vocab size {vocab_size} is too small: needs at least {base + 256} "
                        f"(256 bytes + {base} special tokens)")
    texts = [text] if isinstance(text, str) else list(text)
    piece_counts = count_pieces(texts, patterns, add_prefix_space, progress)

    tokens = list(specials) + [BYTE_TO_CHAR[b] for b in range(256)]  # id -> spelled string
    token_id = {t: i for i, t in enumerate(tokens) if i >= base}  # specials never merge into
    words = [[base + b for b in w.encode("utf-8")] for w in piece_counts]
    freqs = list(piece_counts.values())

    index = PairIndex(words, freqs)
    counts = index.pairs
    heap = [(-c, a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)

    merges = []
    bar = tqdm(total=vocab_size - len(tokens), desc="BPE merges", unit="merge", disable=not progress)
    while len(tokens) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        if counts.get((a, b), 0) != -neg or neg == 0:
            continue  # stale entry: the count has changed since it was pushed
        new = tokens[a] + tokens[b]
        c = token_id.get(new)
        if c is None:
            c = token_id[new] = len(tokens)
            tokens.append(new)
            bar.update(1)
        merges.append((tokens[a], tokens[b]))
        for pair in index.merge(a, b, c):
            cnt = counts[pair]
            if cnt > 0:
                heapq.heappush(heap, (-cnt, pair[0], pair[1]))
            else:
                counts.pop(pair, None)
    bar.close()
    vocab = {t: i for i, t in enumerate(tokens) if i >= base}
    spec = {t: i for i, t in enumerate(specials)}
    return cls(vocab, merges, patterns, spec, guess_roles(spec), add_prefix_space=add_prefix_space)
