"""The opus-mt (Marian) tokenizer: ``source.spm`` + ``target.spm`` + ``vocab.json``, as transformers'
``MarianTokenizer`` computes it (tested against it).

encode: a leading language code ``>>xx<<`` is its own token; the rest is cut into pieces by the
source SentencePiece model; each piece -> its id in ``vocab.json`` (the model's ids, not the
``.spm``'s), ``<unk>`` when absent. ``add_special_tokens=True`` appends ``</s>`` (no ``<bos>``).

decode (shared vocabulary, transformers' default): ids -> pieces through ``vocab.json``; runs of
ordinary pieces -> text with the SOURCE SentencePiece model's decode_pieces (transformers uses the
source model unless the vocabularies are separate), a special token written as itself followed by
a space, "▁" -> " ", the result stripped. transformers' optional Moses punctuation normalizer
(``sacremoses``) is not applied: texts are encoded as it does without that package.
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
                 vocab: dict, folder=None):
        self.source, self.target, self.folder = source, target, folder
        self.stoi = dict(vocab)
        self.itos = {i: t for t, i in vocab.items()}
        roles = {"eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
        if "<unk>" not in self.stoi:
            raise UserError(f"{folder}: vocab.json has no <unk> token")
        roles = {r: t for r, t in roles.items() if t in self.stoi}
        specials = {t: self.stoi[t] for t in roles.values()}
        super().__init__(specials, roles)

    def id_to_token(self, i: int) -> str:
        """vocab.json's piece; an id it lacks falls back to the source model's piece (as
        transformers does)."""
        t = self.itos.get(i)
        if t is None:
            if not 0 <= i < self.source.vocab_size:
                raise UserError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            t = self.source.id_to_token(i)
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
        out, run = [], []
        for i in map(int, ids):
            if i in self._special_by_id:
                if skip_special_tokens:
                    continue
                out.append(self.source.decode_pieces(run) + self._special_by_id[i] + " ")
                run = []
            else:
                run.append(self.id_to_token(i))
        out.append(self.source.decode_pieces(run))
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
            if isinstance(cfg, dict) and cfg.get("separate_vocabs"):
                raise UserError(f"{d}: Marian tokenizers with separate vocabularies are not "
                                "supported yet")
        try:
            vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise UserError(f"{d / 'vocab.json'}: unreadable ({e})") from None
        if not isinstance(vocab, dict) or not all(isinstance(v, int) and v >= 0
                                                  for v in vocab.values()):
            raise UserError(f"{d / 'vocab.json'}: expected {{piece: id}} with ids >= 0")
        return cls(SentencePieceTokenizer.from_file(d / "source.spm"),
                   SentencePieceTokenizer.from_file(d / "target.spm"), vocab, folder=d)
