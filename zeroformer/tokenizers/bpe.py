"""Byte-level BPE (GPT-2, SmolLM2, LLaMA-3 family): encode, decode, train, read, export.

Text -> ids in three steps:

1. pre-tokenize: a regex cuts the text into pieces that never merge across each other; GPT-2's is
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``.
   Some vocabularies split first with another pattern (SmolLM2: every digit alone, ``\\p{N}``).
2. bytes -> symbols: each piece's UTF-8 bytes are spelled with 256 printable characters
   (GPT-2's byte<->unicode map: printable bytes map to themselves, the rest to U+0100...), so
   the space before a word shows as "Ġ" and every string (any Unicode) is representable.
3. merge: start from single bytes; repeatedly merge the leftmost adjacent pair with the lowest
   rank (the earliest learned merge) until no pair has a rank; look up each part's id. After a
   merge only the two neighbouring pairs' ranks change, so only those are looked up again.

The rank of a pair (a, b) comes from an explicit merge list (HF ``tokenizer.json``, ``vocab.bpe``,
GGUF) or, for ``*.tiktoken`` files, is the rank of the token a+b (tiktoken's rule). Results are
cached per piece, so a piece seen before costs one dict lookup: the hot path is
``regex.findall`` + dict lookups + ``list.extend``.

Training (`train`, in bpe_train.py) and file readers/writers (bpe_io.py) build this class.
"""

from __future__ import annotations

import regex

from ..errors import UserError
from .base import Tokenizer, check_vocab

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CACHE_LIMIT = 200_000


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map byte -> printable character: 188 printable bytes stay, 68 move to U+0100+."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# str.translate table: a latin-1 decoded byte string -> its byte-level spelling, in C.
_SPELL = str.maketrans({chr(b): c for b, c in BYTE_TO_CHAR.items()})


def spell(piece: str) -> str:
    """Unicode text -> its byte-level spelling (one symbol per UTF-8 byte)."""
    return piece.encode("utf-8").decode("latin-1").translate(_SPELL)


def unspell(symbols: str) -> bytes:
    """Byte-level spelling -> bytes (characters outside the map are taken as their UTF-8)."""
    out = bytearray()
    for c in symbols:
        b = CHAR_TO_BYTE.get(c)
        if b is None:
            out += c.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


class BPETokenizer(Tokenizer):
    """Byte-level BPE over `vocab` (spelled token -> id) and `merges` (ordered pairs).

    `patterns`: pre-tokenizer regexes applied in turn (all but the last split a piece keeping the
    matches as pieces; the last cuts with findall). `merges=None` means tiktoken's rule: a pair's
    rank is the id of the merged token. `ignore_merges`: a piece that is a whole token is taken as
    is (LLaMA-3). `add_prefix_space`: HF ByteLevel's, see `pretokenize`. `chat_template`: the
    Jinja chat template a GGUF/HF file carries, or None.
    """

    type = "bpe"
    add_bos = False

    def __init__(self, vocab, merges=None, patterns=(GPT2_PATTERN,), special_tokens=None,
                 roles=None, add_prefix_space=False, ignore_merges=False, add_bos=False,
                 add_eos=False, chat_template=None):
        self.vocab = dict(vocab)
        check_vocab(self.vocab)
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.merges = [tuple(m) for m in merges] if merges is not None else None
        if any(len(m) != 2 or not all(isinstance(x, str) for x in m) for m in self.merges or ()):
            raise ValueError("a merge is not a pair of strings")
        self._pair_ranks = {} if self.merges is None else \
            {m: r for r, m in reversed(list(enumerate(self.merges)))}
        self.patterns = list(patterns)
        self._compiled = [regex.compile(p) for p in self.patterns]
        self.add_prefix_space = add_prefix_space
        self.ignore_merges = ignore_merges
        self.add_bos, self.add_eos = add_bos, add_eos
        self.chat_template = chat_template
        self._cache: dict[str, list[int]] = {}
        specials = dict(special_tokens or {})
        for t, i in specials.items():
            self.id_to_tok.setdefault(i, t)
        self._size = max(self.id_to_tok, default=-1) + 1
        self._bytes = {}  # id -> bytes, filled lazily by decode
        super().__init__(specials, roles)

    # ---- encoding --------------------------------------------------------------------------
    def pretokenize(self, text: str) -> list[str]:
        """Cut text into the pieces BPE works on (each piece is merged on its own)."""
        return pretokenize(text, self._compiled, self.add_prefix_space)

    def _encode_chunk(self, text: str) -> list[int]:
        cache, out = self._cache, []
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        for piece in self.pretokenize(text):
            ids = cache.get(piece)
            if ids is None:
                ids = cache[piece] = self._bpe(spell(piece))
            out += ids
        return out

    def _bpe(self, word: str, trace: list | None = None) -> list[int]:
        """Merge the symbols of one spelled piece, leftmost lowest-ranked pair first; -> ids.
        `trace`: a list that receives (rank, left, right, parts after the merge) per merge (the
        step-by-step view of `zeroformer viz tokenizer`)."""
        vocab = self.vocab
        if self.ignore_merges and word in vocab:
            return [vocab[word]]
        parts, inf = list(word), float("inf")
        if self.merges is None:  # tiktoken: a pair's rank is the rank of the token it makes
            rank = lambda a, b: vocab.get(a + b, inf)  # noqa: E731
        else:
            ranks = self._pair_ranks
            rank = lambda a, b: ranks.get((a, b), inf)  # noqa: E731
        rs = [rank(a, b) for a, b in zip(parts, parts[1:])]  # rs[i] = rank of (parts[i], parts[i+1])
        while rs:
            best = min(rs)
            if best == inf:
                break
            i = rs.index(best)  # the leftmost lowest-ranked pair
            if trace is not None:
                trace.append((best, parts[i], parts[i + 1], parts[:i] + [parts[i] + parts[i + 1]]
                              + parts[i + 2:]))
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
            del rs[i]
            if i > 0:  # only the two neighbouring pairs change
                rs[i - 1] = rank(parts[i - 1], parts[i])
            if i < len(rs):
                rs[i] = rank(parts[i], parts[i + 1])
        try:
            return [vocab[p] for p in parts]
        except KeyError as e:
            raise UserError(f"this BPE vocabulary lacks the symbol {e.args[0]!r} (a byte "
                            "token?): it cannot encode the text") from None

    # ---- decoding and vocabulary -----------------------------------------------------------
    def _token_bytes(self, i: int) -> bytes:
        b = self._bytes.get(i)
        if b is None:
            b = self._bytes[i] = unspell(self.id_to_tok[i]) if i in self.id_to_tok else b""
        return b

    def _decode_ids(self, ids) -> str:
        return b"".join(self._token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids) -> bytes:
        """Ids -> raw bytes (a streaming decoder joins these and decodes complete characters)."""
        return b"".join(self._token_bytes(int(i)) for i in ids)

    def id_to_token(self, i):
        return self.id_to_tok[i]

    def token_to_id(self, token):
        return self.special_tokens.get(token, self.vocab.get(token))

    @property
    def vocab_size(self):
        return self._size

    # ---- training and files (implemented in bpe_train.py / bpe_io.py) ------------------------
    @classmethod
    def train(cls, text, vocab_size, special_tokens=("<|endoftext|>",), patterns=(GPT2_PATTERN,),
              progress=False, add_prefix_space=False):
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text` (str or list of str),
        pre-tokenized exactly as the result will encode (`pretokenize`)."""
        from .bpe_train import train_bpe

        return train_bpe(cls, text, vocab_size, special_tokens, patterns, progress, add_prefix_space)

    def save(self, path):
        """Write HF ``tokenizer.json``; beside a file named so, also ``tokenizer_config.json``
        (roles, add_bos/add_eos, chat template: where HF keeps them)."""
        import json

        from .bpe_io import hf_config

        p = super().save(path)
        if p.name == "tokenizer.json":
            (p.parent / "tokenizer_config.json").write_text(
                json.dumps(hf_config(self), ensure_ascii=False, indent=1), encoding="utf-8")
        return p

    def to_dict(self):
        """The Hugging Face ``tokenizer.json`` layout (loads in HF ``tokenizers``)."""
        from .bpe_io import to_hf_dict

        return to_hf_dict(self)

    @classmethod
    def from_hf_dict(cls, d, source="tokenizer.json"):
        from .bpe_io import from_hf_dict

        return from_hf_dict(cls, d, source)

    @classmethod
    def from_tiktoken(cls, path):
        from .bpe_io import from_tiktoken

        return from_tiktoken(cls, path)

    @classmethod
    def from_encoder_json(cls, encoder_path, merges_path):
        from .bpe_io import from_encoder_json

        return from_encoder_json(cls, encoder_path, merges_path)


def pretokenize(text: str, compiled, add_prefix_space: bool = False) -> list[str]:
    """The pre-tokenizer of both encoding and training: `text` -> the pieces BPE merges within.

    `compiled`: regexes; all but the last split each piece at their matches, keeping the matches
    as pieces ("isolated"); the last cuts with findall, keeping any text it skips as pieces too.
    `add_prefix_space` (HF ByteLevel's rule): a space before every piece the splits leave that
    does not start with one; applied before the last regex when that is GPT-2's (ByteLevel's own
    regex), else to the final pieces. An empty text has no pieces.
    """
    *splits, last = compiled
    pieces = [text] if text else []
    for pat in splits:  # split, keeping the matches as pieces of their own ("isolated")
        pieces = [s for p in pieces for s in _split_isolated(pat, p)]
    byte_level_regex = last.pattern == GPT2_PATTERN
    if add_prefix_space and byte_level_regex:
        pieces = [p if p.startswith(" ") else " " + p for p in pieces]
    out = []
    for p in pieces:
        found = last.findall(p)
        if sum(map(len, found)) != len(p):  # the pattern skips some text: keep it as pieces
            found = _split_isolated(last, p)
        out += found
    if add_prefix_space and not byte_level_regex:
        out = [p if p.startswith(" ") else " " + p for p in out]
    return out


def _split_isolated(pat, text):
    """Split `text` at every match of `pat`, keeping each match as its own piece."""
    out, start = [], 0
    for m in pat.finditer(text):
        if m.start() > start:
            out.append(text[start:m.start()])
        if m.end() > m.start():
            out.append(m.group())
        start = m.end()
    if start < len(text):
        out.append(text[start:])
    return out
