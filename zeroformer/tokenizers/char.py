"""Character tokenizer: one id per Unicode character (the tutorial starting point).

    vocab = sorted(set(text))         encode(s) = [index(c) for c in s]

Training is reading the set of characters of the corpus; `vocab_size` is that count plus any
special tokens (which take the first ids). A character outside the vocabulary becomes the
``<unk>`` id if the tokenizer has one, else encoding raises a UserError naming the character.

    tok = CharTokenizer.train(text)                      # e.g. Shakespeare: 65 characters
    tok = CharTokenizer.train(text, special_tokens=["<pad>", "<unk>"])
"""

from __future__ import annotations

from ..errors import UserError
from .base import TableTokenizer

DEFAULT_ROLES = {"<pad>": "pad", "<unk>": "unk", "<bos>": "bos", "<eos>": "eos",
                 "<mask>": "mask", "[CLS]": "cls", "[SEP]": "sep", "[PAD]": "pad",
                 "[UNK]": "unk", "[MASK]": "mask"}


def roles_from_specials(specials):
    """Guess roles from conventional special-token spellings (``<pad>`` -> pad, ...)."""
    return {DEFAULT_ROLES[s]: s for s in specials if s in DEFAULT_ROLES}


class CharTokenizer(TableTokenizer):
    """Ids are positions in `chars` (after the special tokens)."""

    type = "char"
    add_bos = False

    def __init__(self, chars, special_tokens=(), roles=None):
        specials = list(special_tokens)
        self.chars = [c for c in chars if c not in specials]
        self.stoi = {c: i + len(specials) for i, c in enumerate(self.chars)}
        self.itos = {i: c for c, i in self.stoi.items()}
        for i, s in enumerate(specials):
            self.itos[i] = s
        super().__init__({s: i for i, s in enumerate(specials)},
                         roles if roles is not None else roles_from_specials(specials))

    @classmethod
    def train(cls, text, vocab_size=None, special_tokens=(), progress=False):
        """Build the vocabulary from `text` (a str or an iterable of str).

        `vocab_size`, if given, keeps the most frequent characters (ties: first in code-point
        order) so that specials + characters fit; the rest map to ``<unk>``.
        """
        from collections import Counter

        counts = Counter()
        for t in [text] if isinstance(text, str) else text:
            counts.update(t)
        chars = sorted(counts)
        if vocab_size is not None:
            keep = max(0, vocab_size - len(special_tokens))
            chars = sorted(sorted(chars, key=lambda c: -counts[c])[:keep])
        return cls(chars, special_tokens)

    def _encode_chunk(self, text):
        stoi, unk = self.stoi, self.unk_token_id
        try:
            return [stoi[c] for c in text]
        except KeyError:
            if unk is None:
                bad = next(c for c in text if c not in stoi)
                raise UserError(f"character {bad!r} is not in the character vocabulary "
                                f"({len(self.chars)} characters) and it has no <unk>") from None
            return [stoi.get(c, unk) for c in text]

    def _decode_ids(self, ids):
        return "".join(self.itos[i] for i in ids)

    def to_dict(self):
        return {"type": self.type, "version": 1, "chars": self.chars,
                "special_tokens": list(self.special_tokens), "roles": self.roles}

    @classmethod
    def from_dict(cls, d):
        return cls(d["chars"], d.get("special_tokens", ()), d.get("roles"))
