"""Word tokenizer: one id per word or punctuation mark, ``<unk>`` for the rest (tutorial level).

    pieces = regex.findall(r"\\w+|[^\\w\\s]", text)      # words, and each punctuation mark alone
    vocab  = specials + the (vocab_size - #specials) most frequent pieces of the corpus

Whitespace is not kept: decoding joins words with one space and glues punctuation to the word
before it, so ``decode(encode(x))`` is x only up to spacing. `lowercase=True` folds case first.
"""

from __future__ import annotations

from collections import Counter

import regex

from ..errors import UserError
from .base import TableTokenizer

WORD_PATTERN = r"\w+|[^\w\s]"
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


class WordTokenizer(TableTokenizer):
    type = "word"
    add_bos, add_eos = True, True

    def __init__(self, words, special_tokens=SPECIALS, roles=None, lowercase=False):
        from .char import roles_from_specials

        specials = list(special_tokens)
        self.words = [w for w in words if w not in specials]
        self.stoi = {w: i + len(specials) for i, w in enumerate(self.words)}
        self.itos = {i: w for w, i in self.stoi.items()} | dict(enumerate(specials))
        self.lowercase = lowercase
        self._re = regex.compile(WORD_PATTERN)
        super().__init__({s: i for i, s in enumerate(specials)},
                         roles if roles is not None else roles_from_specials(specials))
        if self.unk_token_id is None:
            raise ValueError("a word tokenizer needs an <unk> special token")

    @classmethod
    def train(cls, text, vocab_size=None, special_tokens=SPECIALS, lowercase=False, progress=False):
        """Keep the most frequent pieces (ties: first seen) so specials + words = vocab_size."""
        counts = Counter()
        for t in [text] if isinstance(text, str) else text:
            counts.update(regex.findall(WORD_PATTERN, t.lower() if lowercase else t))
        keep = None if vocab_size is None else vocab_size - len(special_tokens)
        if keep is not None and keep < 1:
            raise UserError(f"word vocab size {vocab_size} leaves no room beside {len(special_tokens)} specials")
        return cls([w for w, _ in counts.most_common(keep)], special_tokens, lowercase=lowercase)

    def _encode_chunk(self, text):
        stoi, unk = self.stoi, self.unk_token_id
        return [stoi.get(w, unk) for w in self._re.findall(text.lower() if self.lowercase else text)]

    def _decode_ids(self, ids):
        out = ""
        for i in ids:
            w = self.itos[i]
            glue = not out or (len(w) == 1 and not w.isalnum() and w not in "([{\"'")
            out += w if glue else " " + w
        return out

    def to_dict(self):
        return {"type": self.type, "version": 1, "words": self.words, "lowercase": self.lowercase,
                "special_tokens": list(self.special_tokens), "roles": self.roles}

    @classmethod
    def from_dict(cls, d):
        return cls(d["words"], d.get("special_tokens", SPECIALS), d.get("roles"), d.get("lowercase", False))
