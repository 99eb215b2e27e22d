"""Training WordPiece: merge the pair with the highest likelihood gain

    score(a, b) = freq(ab) / (freq(a) * freq(b))

(unlike BPE's raw freq(ab), this prefers pairs whose parts rarely occur apart).

    1. BERT basic tokenization of the corpus (same rules as encoding); count words once
    2. spell each word as characters, pieces after the first with "##": "hug" -> h ##u ##g
    3. freq(symbol) and freq(pair) weighted by word counts; index pair -> words, symbol -> pairs
    4. repeat until the vocabulary is full: pop the best-scoring pair from a heap (lazy: an entry
       is used only if its score is still current), merge it in the words that contain it
       ("h" + "##u" -> "hu", "##u" + "##g" -> "##ug"), update the counts of only those words, and
       re-push every pair whose score changed (its count, or the count of one of its symbols).
"""

from __future__ import annotations

import heapq
from collections import Counter

from ..errors import UserError
from .bpe_train import PairIndex


def train_wordpiece(cls, text, vocab_size, special_tokens, lowercase=True, progress=False):
    from tqdm import tqdm

    specials = list(dict.fromkeys(special_tokens or ()))
    helper = cls({t: i for i, t in enumerate(specials or ["[UNK]"])}, lowercase=lowercase)
    texts = [text] if isinstance(text, str) else list(text)
    words_count = Counter()
    for t in tqdm(texts, desc="pre-tokenizing", disable=not progress or len(texts) < 2):
        words_count.update(helper.pre_tokenize(helper.normalize(t)))

    tokens = list(specials)
    tok_id = {t: i for i, t in enumerate(tokens)}

    def intern(s):
        if s not in tok_id:
            tok_id[s] = len(tokens)
            tokens.append(s)
        return tok_id[s]

    words = [[intern(c if i == 0 else "##" + c) for i, c in enumerate(w)] for w in words_count]
    freqs = list(words_count.values())
    if vocab_size < len(tokens):
        raise UserError(f"WordPiece vocab size {vocab_size} is smaller than the {len(tokens)} "
                        "characters and special tokens of the corpus")

    index = PairIndex(words, freqs, symbols=True)
    sym, pairs, pairs_of = index.sym, index.pairs, index.pairs_of

    def score(p):
        return pairs[p] / (sym[p[0]] * sym[p[1]])

    heap = [(-score(p), p) for p in pairs]
    heapq.heapify(heap)
    bar = tqdm(total=vocab_size - len(tokens), desc="WordPiece merges", disable=not progress)
    while len(tokens) < vocab_size and heap:
        neg, (a, b) = heapq.heappop(heap)
        if pairs.get((a, b), 0) <= 0 or -neg != score((a, b)):
            continue
        new = tokens[a] + tokens[b][2:]
        before = len(tokens)
        c = intern(new)
        bar.update(len(tokens) - before)
        touched = index.merge(a, b, c) | pairs_of[a] | pairs_of[b] | pairs_of[c]
        for p in touched:
            if pairs.get(p, 0) > 0 and sym[p[0]] > 0 and sym[p[1]] > 0:
                heapq.heappush(heap, (-score(p), p))
    bar.close()
    return cls({t: i for i, t in enumerate(tokens)}, lowercase=lowercase,
               special_tokens={t: i for i, t in enumerate(specials)} or None)
