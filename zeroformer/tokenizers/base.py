"""The shared tokenizer base: special tokens, encode/decode, batching to tensors, save/load.

A tokenizer maps text to a list of integer ids and back:

    encode : str -> [id_1, ..., id_n]        decode : [id_1, ..., id_n] -> str

Every algorithm (char, word, byte-level BPE, WordPiece) subclasses `Tokenizer` and implements
`_encode_chunk(text) -> list[int]` (text that contains no special token), `id_to_token`,
`token_to_id`, `vocab_size`, `_decode_ids(ids) -> str` and `to_dict()` (its JSON form).

Special tokens (``<pad> <unk> <bos> <eos> <mask> [CLS] [SEP] <|endoftext|>`` ...) are whole
strings with a fixed id. `encode` finds them in the text first (like Hugging Face "added tokens")
and encodes only the text between them with the algorithm; `encode_ordinary` ignores them (like
tiktoken's ``encode_ordinary``). Roles (pad/unk/bos/eos/mask/cls/sep) name which special token
plays which part; `add_special_tokens=True` wraps a sequence as the vocabulary declares
(``<bos> ... <eos>`` or ``[CLS] a [SEP] b [SEP]``).

File format: every tokenizer saves to ONE JSON file, by default ``tokenizer.json`` (no pickle).
Byte-level BPE and WordPiece write the Hugging Face ``tokenizer.json`` layout, so the file also
loads in HF ``tokenizers``; char and word tokenizers write ``{"type": "char"|"word", ...}``.
`zeroformer.tokenizers.load_tokenizer(path)` reads both, and finds ``tokenizer.json`` in a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import regex

from ..errors import UserError

ROLES = ("pad", "unk", "bos", "eos", "mask", "cls", "sep")
TOKENIZER_FILE = "tokenizer.json"


MAX_ID = 2 ** 31  # token ids are below this (a hostile file's 10**30 would size an embedding)


def check_vocab(vocab, what="vocabulary") -> None:
    """Raise ValueError unless `vocab` maps strings to ids 0 <= id < MAX_ID. A tokenizer file is
    hostile input: `load_tokenizer` reports the ValueError as a UserError naming the file."""
    if not isinstance(vocab, dict):
        raise ValueError(f"the {what} is not a mapping of token -> id")
    for t, i in vocab.items():
        if not isinstance(t, str) or type(i) is not int or not 0 <= i < MAX_ID:
            raise ValueError(f"{what} entry {t!r:.40}: {i!r:.40} is not token -> id "
                             f"(0 <= id < {MAX_ID})")


class Tokenizer:
    """Base class. `special_tokens` maps token string -> id; `roles` maps role -> token string."""

    type = "base"

    def __init__(self, special_tokens=None, roles=None):
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        check_vocab(self.special_tokens, "special tokens")
        self.roles: dict[str, str] = {r: t for r, t in (roles or {}).items() if t is not None}
        for role, tok in self.roles.items():
            if role not in ROLES:
                raise ValueError(f"unknown special-token role {role!r} (known: {ROLES})")
            if tok not in self.special_tokens and self._lookup(tok) is None:
                raise ValueError(f"{role} token {tok!r} is not in the vocabulary")
        self._rebuild_special()

    # ---- special tokens --------------------------------------------------------------------
    def _rebuild_special(self):
        self._special_by_id = {i: t for t, i in self.special_tokens.items()}
        toks = sorted(self.special_tokens, key=len, reverse=True)  # longest first wins
        self._special_re = regex.compile("|".join(regex.escape(t) for t in toks)) if toks else None

    def _lookup(self, token):
        try:
            return self.token_to_id(token)
        except Exception:  # noqa: BLE001 - subclasses may not be fully built yet
            return None

    def role_token(self, role):
        return self.roles.get(role)

    def role_id(self, role):
        tok = self.roles.get(role)
        if tok is None:
            return None
        return self.special_tokens[tok] if tok in self.special_tokens else self.token_to_id(tok)

    pad_token = property(lambda self: self.role_token("pad"))
    unk_token = property(lambda self: self.role_token("unk"))
    bos_token = property(lambda self: self.role_token("bos"))
    eos_token = property(lambda self: self.role_token("eos"))
    pad_token_id = property(lambda self: self.role_id("pad"))
    unk_token_id = property(lambda self: self.role_id("unk"))
    bos_token_id = property(lambda self: self.role_id("bos"))
    eos_token_id = property(lambda self: self.role_id("eos"))
    mask_token_id = property(lambda self: self.role_id("mask"))
    cls_token_id = property(lambda self: self.role_id("cls"))
    sep_token_id = property(lambda self: self.role_id("sep"))

    # ---- what subclasses implement ---------------------------------------------------------
    def _encode_chunk(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode_ids(self, ids) -> str:
        raise NotImplementedError

    def id_to_token(self, i: int) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    # ---- encoding --------------------------------------------------------------------------
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with the algorithm only; special-token strings are ordinary text."""
        if not isinstance(text, str):
            raise UserError(f"can only encode text (str), got {type(text).__name__}")
        return self._encode_chunk(text)

    def encode(self, text: str, add_special_tokens: bool = False, pair: str | None = None):
        """Text -> ids. Special-token strings in the text become their ids.

        `add_special_tokens=True` wraps the result (``<bos> x <eos>`` or ``[CLS] x [SEP]``);
        `pair` is a second segment (``[CLS] a [SEP] b [SEP]``).
        """
        ids = self._encode_with_special(text)
        if pair is not None:
            ids2 = self._encode_with_special(pair)
            return self.wrap(ids, ids2)[0] if add_special_tokens else ids + ids2
        return self.wrap(ids)[0] if add_special_tokens else ids

    def _encode_with_special(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise UserError(f"can only encode text (str), got {type(text).__name__}")
        if self._special_re is None:
            return self._encode_chunk(text)
        out, start = [], 0
        for m in self._special_re.finditer(text):
            if m.start() > start:
                out += self._encode_chunk(text[start:m.start()])
            out.append(self.special_tokens[m.group()])
            start = m.end()
        if start < len(text):
            out += self._encode_chunk(text[start:])
        return out

    def wrap(self, ids, pair_ids=None):
        """Add the declared special tokens around one or two segments -> (ids, token_type_ids).

        Default: ``<bos>? a <eos>?`` (a pair is concatenated: ``<bos> a b <eos>``). WordPiece
        overrides this with ``[CLS] a [SEP] b [SEP]``.
        """
        bos, eos = self.bos_token_id, self.eos_token_id
        body = list(ids) + (list(pair_ids) if pair_ids is not None else [])
        out = ([bos] if bos is not None and self.add_bos else []) + body
        out += [eos] if eos is not None and self.add_eos else []
        return out, [0] * len(out)

    add_bos = True
    add_eos = False

    def tokenize(self, text: str) -> list[str]:
        """Text -> pieces (the vocabulary strings of the ids)."""
        return [self.id_to_token(i) for i in self.encode(text)]

    # ---- decoding --------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text. Special tokens are written as their strings unless skipped."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out, run = [], []
        for i in ids:
            i = int(i)
            if i in self._special_by_id:
                if run:
                    out.append(self._decode_ids(run))
                    run = []
                if not skip_special_tokens:
                    out.append(self._special_by_id[i])
            else:
                if not 0 <= i < self.vocab_size:
                    raise UserError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
                run.append(i)
        if run:
            out.append(self._decode_ids(run))
        return "".join(out)

    # ---- batches ---------------------------------------------------------------------------
    def encode_batch(self, texts, add_special_tokens=False, padding=True, truncation=False,
                     max_length=None, padding_side="right", return_tensors="pt", pairs=None):
        """Encode many texts -> {"input_ids": (B, T), "attention_mask": (B, T), "token_type_ids"}.

        `padding=True` pads to the longest sequence (or to `max_length` if `padding="max_length"`)
        with the pad id (0 when the vocabulary has no pad token; masked out either way).
        `truncation=True` cuts each sequence to `max_length` ids. `padding_side="left"` suits
        batched generation. `return_tensors=None` returns lists.
        """
        if isinstance(texts, str):
            texts = [texts]
        rows, types = [], []
        for k, t in enumerate(texts):
            a = self._encode_with_special(t)
            b = self._encode_with_special(pairs[k]) if pairs is not None else None
            if add_special_tokens:
                ids, tt = self.wrap(a, b)
            else:
                ids = a + (b or [])
                tt = [0] * len(a) + [1] * len(b or [])
            if truncation:
                if max_length is None:
                    raise UserError("truncation needs max_length")
                ids, tt = ids[:max_length], tt[:max_length]
            rows.append(ids)
            types.append(tt)
        width = max((len(r) for r in rows), default=0)
        if padding == "max_length":
            if max_length is None:
                raise UserError("padding='max_length' needs max_length")
            width = max(width, max_length)
        pad = self.pad_token_id if self.pad_token_id is not None else 0
        out = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        for ids, tt in zip(rows, types):
            n = width - len(ids) if padding else 0
            fill, zeros, ones = [pad] * n, [0] * n, [1] * len(ids)
            left = padding_side == "left"
            out["input_ids"].append(fill + ids if left else ids + fill)
            out["attention_mask"].append(zeros + ones if left else ones + zeros)
            out["token_type_ids"].append(zeros + tt if left else tt + zeros)
        if return_tensors == "pt":
            import torch

            if padding or len({len(r) for r in rows}) <= 1:
                out = {k: torch.tensor(v, dtype=torch.long).reshape(len(rows), -1)
                       for k, v in out.items()}
        return out

    __call__ = encode_batch

    # ---- files -----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the tokenizer as one JSON file; a folder (or a path without a suffix) gets
        ``tokenizer.json`` inside it. Returns the file's path."""
        p = Path(path)
        if p.is_dir() or not p.suffix:
            p = p / TOKENIZER_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path):
        from . import load_tokenizer

        return load_tokenizer(path)

    def _special_dict(self):
        return {"special_tokens": self.special_tokens, "roles": self.roles}

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special={list(self.special_tokens)})"


def read_training_text(files, desc="reading"):
    """Read training files as UTF-8 text; a file that is not UTF-8 is a UserError naming it."""
    texts = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise UserError(f"training file not found: {p}")
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not valid UTF-8 text (byte {e.start}: {e.reason}); "
                            "convert it to UTF-8 first") from None
        except OSError as e:
            raise UserError(f"{p}: cannot read ({e.strerror or e})") from None
    return texts


class TableTokenizer(Tokenizer):
    """A tokenizer whose vocabulary is a table: `stoi` (piece -> id) and `itos` (id -> piece, the
    special tokens included). Char and word tokenizers are this."""

    def id_to_token(self, i):
        return self.itos[i]

    def token_to_id(self, token):
        return self.special_tokens.get(token, self.stoi.get(token))

    @property
    def vocab_size(self):
        return len(self.itos)
