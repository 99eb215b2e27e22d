"""The opus-mt (Marian) tokenizer: ``source.spm`` + ``target.spm`` + ``vocab.json``, as transformers'
``MarianTokenizer`` computes it (tested against it).

encode: a leading language code ``>>xx<<`` is its own token; the rest is cut into pieces by the
source SentencePiece model; each piece -> its id in ``vocab.json`` (the model's ids, not the
``.spm``'s), ``<unk>`` when absent. ``add_special_tokens=True`` appends ``</s>`` (no ``<bos>``).

decode: ids -> pieces: the special tokens' ids (their ids in ``vocab.json``) -> the special
token, else through the decoding vocabulary, else the decoding SentencePiece model's piece of that
id; runs of ordinary pieces -> text with the decoding model's decode_pieces, a special token
written as itself followed by a space, "▁" -> " ", the result stripped. With
``skip_special_tokens`` the special tokens' ids are dropped first.
- shared vocabulary (transformers' default): decoding vocabulary = ``vocab.json``, decoding
  model = ``source.spm`` (transformers uses the source model unless the vocabularies are separate);
- ``separate_vocabs: true`` in ``tokenizer_config.json``: decoding vocabulary =
  ``target_vocab.json``, decoding model = ``target.spm``; encoding is unchanged (the source side).
transformers' optional Moses punctuation normalizer (``sacremoses``) is not applied: texts are
encoded as it does without that package.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .base import Tokenizer
from .sentencepiece import SPACE, SentencePieceTokenizer


class MarianTokenizer(Tokenizer):
    type = "marian"
    add_bos = False
    add_eos = True

    def __init__(self, source: SentencePieceTokenizer, target: SentencePieceTokenizer,
                 vocab: dict, folder=None, target_vocab: dict | None = None):
        self.source, self.target, self.folder = source, target, folder
        self.stoi = dict(vocab)
        self.separate = target_vocab is not None
        self.itos = {i: t for t, i in (target_vocab if self.separate else vocab).items()}
        self.decoding = target if self.separate else source
        roles = {"eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
        if "<unk>" not in self.stoi:
            raise UserError(f"{folder}: vocab.json has no <unk> token")
        roles = {r: t for r, t in roles.items() if t in self.stoi}
        specials = {t: self.stoi[t] for t in roles.values()}
        super().__init__(specials, roles)

    def id_to_token(self, i: int) -> str:
        """The decoding vocabulary's piece; an id it lacks falls back to the decoding model's piece
        (as transformers does)."""
        t = self._special_by_id.get(i, self.itos.get(i))
        if t is None:
            if not 0 <= i < self.decoding.vocab_size:
                raise UserError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            t = self.decoding.id_to_token(i) or "<unk>"
        return t

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    @property
    def vocab_size(self) -> int:
        return len(self.stoi)

    def _encode_chunk(self, text: str) -> list[int]:
        unk = self.stoi["<unk>"]
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[:end + 2]], text[end + 2:]
        pieces = self.source.encode_pieces(text)
        return [self.stoi.get(p, unk) for p in code + pieces]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out, run, specials = [], [], self.special_tokens
        for i in map(int, ids):
            if skip_special_tokens and i in self._special_by_id:
                continue
            t = self.id_to_token(i)
            if t in specials:
                out.append(self.decoding.decode_pieces(run) + t + " ")
                run = []
            else:
                run.append(t)
        out.append(self.decoding.decode_pieces(run))
        return "".join(out).replace(SPACE, " ").strip()

    def _decode_ids(self, ids) -> str:
        return self.decode(ids)

    def to_dict(self) -> dict:
        raise UserError("a Marian tokenizer is its folder's source.spm, target.spm and vocab.json")

    def save(self, path) -> Path:
        raise UserError("saving a Marian tokenizer is not supported yet (copy its folder's "
                        "source.spm, target.spm and vocab.json)")

    @classmethod
    def from_folder(cls, folder) -> MarianTokenizer:
        d = Path(folder)
        cfg_path = d / "tokenizer_config.json"
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise UserError(f"{cfg_path}: unreadable ({e})") from None
            separate = isinstance(cfg, dict) and bool(cfg.get("separate_vocabs"))
        else:
            separate = False
        return cls(SentencePieceTokenizer.from_file(d / "source.spm"),
                   SentencePieceTokenizer.from_file(d / "target.spm"), _vocab(d / "vocab.json"),
                   folder=d, target_vocab=_vocab(d / "target_vocab.json") if separate else None)


def _vocab(path: Path) -> dict:
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              and v >= 0 for v in vocab.values()):
        raise UserError(f"{path}: expected {{piece: id}} with ids >= 0")
    return vocab
