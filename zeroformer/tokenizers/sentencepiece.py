"""SentencePiece tokenizers (LLaMA-1/2, Mistral, T5, Marian, ALBERT) read from their ``.model`` file.

Encode = the library's ``SentencePieceProcessor.encode`` (tested id for id against it):

    text -> normalize (spm_algos.Normalizer) -> BPE merges or unigram Viterbi (spm_algos)
         -> pieces -> ids; a piece not in the vocabulary is <unk>: with ``byte_fallback`` it is
         spelled as its UTF-8 bytes ``<0xNN>``, else a run of unknown pieces is ONE <unk>.

Decode = the library's ``decode``: pieces joined, "▁" -> " ", the first piece's leading "▁" (the
dummy prefix) removed, runs of ``<0xNN>`` pieces reassembled as UTF-8 (a byte that starts no valid
character -> U+FFFD), <unk> -> " ⁇ ".

Conventions (our Tokenizer base's, not the library's, where they differ):
- control pieces (``<s>``, ``</s>``, ...) are special tokens: their strings in the text become their
  ids in `encode` (as Hugging Face's LLaMA tokenizer does), `encode_ordinary` is exactly the
  library's encode; the library's decode drops control pieces, ours writes them unless
  ``skip_special_tokens=True`` (which equals the library).
- ``add_special_tokens=True`` puts ``<bos>`` in front (LLaMA); the library adds nothing by default.
- user-defined pieces are matched by the algorithm (never normalized or split), as the library.
- beside a ``tokenizer.model``, a Hugging Face ``tokenizer_config.json``'s add_bos_token /
  add_eos_token / chat_template are read (a llama folder without tokenizer.json).
- `save` writes the ``.model`` file (a folder, or a checkpoint's ``tokenizer.json``, gets
  ``tokenizer.model``); spm_proto.serialize_model writes one for a vocabulary read from GGUF.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import UserError
from . import spm_proto as P
from .base import Tokenizer
from .spm_algos import SPACE, Normalizer, bpe_segment, unigram_segment, unigram_trie

MODEL_FILE = "tokenizer.model"
MAX_MODEL_BYTES = 1 << 30
CACHE_LIMIT = 200_000


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece BPE or unigram model (`spec`: a parsed spm_proto.ModelSpec)."""

    type = "sentencepiece"
    add_bos = True
    add_eos = False
    chat_template = None

    def __init__(self, spec: P.ModelSpec, model_bytes: bytes | None = None, source="<model>"):
        if spec.model_type not in (P.BPE, P.UNIGRAM):
            kind = {P.WORD: "word", P.CHAR: "char"}.get(spec.model_type, str(spec.model_type))
            raise UserError(f"{source}: SentencePiece model type {kind!r} is not supported "
                            "(BPE and unigram are)")
        if spec.treat_whitespace_as_suffix:
            raise UserError(f"{source}: treat_whitespace_as_suffix models are not supported")
        if spec.has_denormalizer:
            raise UserError(f"{source}: models with a denormalizer are not supported")
        self.spec, self.model_bytes, self.source = spec, model_bytes, source
        self.itos = [p.piece for p in spec.pieces]
        self.types = [p.type for p in spec.pieces]
        self.scores = [p.score for p in spec.pieces]
        normal = (P.NORMAL, P.USER_DEFINED, P.UNUSED)
        self.vocab, self.reserved = {}, {}
        for i, p in enumerate(spec.pieces):
            table = self.vocab if p.type in normal else self.reserved
            if p.piece in self.vocab or p.piece in self.reserved:
                raise UserError(f"{source}: piece {p.piece!r} appears twice (ids "
                                f"{self.piece_id(p.piece)} and {i})")
            table[p.piece] = i
        self.unused = {i for i, t in enumerate(self.types) if t == P.UNUSED}
        user = [p.piece for p in spec.pieces if p.type == P.USER_DEFINED]
        self.user = {u: self.vocab[u] for u in user}
        self.user_max = max((len(u) for u in user), default=0)
        unks = [i for i, t in enumerate(self.types) if t == P.UNKNOWN]
        if len(unks) != 1:
            raise UserError(f"{source}: a SentencePiece model needs exactly one unknown piece "
                            f"(found {len(unks)})")
        self.unk_id_ = unks[0]
        self.byte_fallback = spec.byte_fallback
        self.byte_ids = {}
        if self.byte_fallback:
            for b in range(256):
                i = self.reserved.get(f"<0x{b:02X}>")
                if i is None or self.types[i] != P.BYTE:
                    raise UserError(f"{source}: byte_fallback model lacks the piece <0x{b:02X}>")
                self.byte_ids[b] = i
        self.byte_of = {i: b for b, i in self.byte_ids.items()}
        normal_scores = [p.score for p in spec.pieces if p.type == P.NORMAL]
        self.min_score = min(normal_scores, default=3.4028234663852886e38)
        self.max_score = max(normal_scores + [1.1754943508222875e-38])
        self.trie = (unigram_trie(self.vocab, self.scores, self.unused, set(self.user.values()),
                                  self.max_score) if spec.model_type == P.UNIGRAM else None)
        self.normalizer = Normalizer(spec, user, source)
        # BPE word cache: when no piece has a space symbol after another character, no merge
        # crosses the start of a word, so words segment alone (same pieces) and are cached.
        sym = re.escape(SPACE if spec.escape_whitespaces else " ")
        self._word_start = re.compile(f"(?<=[^{sym}])(?={sym})")
        crossing = re.compile(f"[^{sym}]{sym}")
        self._words = None if any(crossing.search(w) for w in self.vocab) else {}
        specials = {p.piece: i for i, p in enumerate(spec.pieces) if p.type == P.CONTROL}
        roles = {"unk": self.itos[self.unk_id_]}
        for role, piece in (("bos", spec.bos_piece), ("eos", spec.eos_piece),
                            ("pad", spec.pad_piece)):
            if piece in specials:
                roles[role] = piece
        super().__init__(specials, roles)

    # ---- vocabulary ------------------------------------------------------------------------
    def piece_id(self, piece: str) -> int:
        """The library's PieceToId: reserved pieces first, then normal ones, else <unk>."""
        i = self.reserved.get(piece)
        if i is None:
            i = self.vocab.get(piece, self.unk_id_)
        return i

    def id_to_token(self, i: int) -> str:
        return self.itos[i]

    def token_to_id(self, token: str) -> int | None:
        return self.reserved.get(token, self.vocab.get(token))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # ---- encode ----------------------------------------------------------------------------
    def _encode_chunk(self, text: str) -> list[int]:
        return [i for _, i in self.encode_pairs(text)]

    def encode_pieces(self, text: str) -> list[str]:
        """The library's ``encode(text, out_type=str)``: an unknown piece is the text it covers."""
        return [w for w, _ in self.encode_pairs(text)]

    def encode_pairs(self, text: str) -> list[tuple[str, int]]:
        """Text -> (piece, id) pairs, special-token strings ordinary (the library's encode)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise UserError(f"cannot encode text with an unpaired surrogate at {e.start}") from None
        norm = self.normalizer.normalize(text)
        if not norm:
            return []
        if self.spec.model_type == P.BPE:
            pairs = [(w, self.piece_id(w)) for w in self._bpe_pieces(norm)]
        else:
            pairs = unigram_segment(norm, self.trie, self.unk_id_, self.min_score)
        out, prev_unk = [], False
        for w, i in pairs:
            unk = i == self.unk_id_
            if unk and self.byte_fallback:
                out += [(self.itos[self.byte_ids[b]], self.byte_ids[b]) for b in w.encode("utf-8")]
            elif unk and prev_unk:  # a run of unknown pieces is one <unk>, covering the run
                out[-1] = (out[-1][0] + w, i)
            else:
                out.append((w, i))
            prev_unk = unk
        return out

    def _bpe_pieces(self, norm: str) -> list[str]:
        def seg(text):
            return bpe_segment(text, self.vocab, self.scores, self.unused, self.user, self.user_max)

        if self._words is None:
            return seg(norm)
        out, cache = [], self._words
        for w in self._word_start.split(norm):
            got = cache.get(w)
            if got is None:
                got = seg(w)
                if len(cache) < CACHE_LIMIT:
                    cache[w] = got
            out += got
        return out

    # ---- decode ----------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text as the library decodes them (control pieces written unless skipped)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        pairs = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise UserError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            pairs.append((self.itos[i], i))
        return self._decode_pairs(pairs, skip_special_tokens)

    def decode_pieces(self, pieces) -> str:
        """Piece strings -> text (the library's decode_pieces: a piece not in the vocabulary is
        its own surface, control pieces vanish)."""
        return self._decode_pairs([(w, self.piece_id(w)) for w in pieces], True)

    def _decode_pairs(self, pairs, skip_special_tokens: bool) -> str:
        out, pending = [], bytearray()
        text_len, bos_ws_seen = 0, False
        strip_first = self.spec.add_dummy_prefix or self.spec.remove_extra_whitespaces
        for piece, i in pairs:
            if i in self.byte_of:
                pending.append(self.byte_of[i])
                continue
            if pending:
                s = _bytes_to_text(pending)
                out.append(s)
                text_len += len(s)
                pending = bytearray()
            is_bos_ws = not (bos_ws_seen or text_len)
            t = self.types[i]
            bos_ws_seen = False
            if t == P.CONTROL:
                if not skip_special_tokens:
                    out.append(piece)  # not counted as text: the next piece's "▁" still goes
                continue
            if t == P.UNKNOWN:
                s = self.spec.unk_surface if piece == self.itos[i] else piece
            else:
                if is_bos_ws and strip_first and piece.startswith(SPACE):
                    piece = piece[1:]
                    bos_ws_seen = not self.spec.remove_extra_whitespaces
                s = piece.replace(SPACE, " ")
            out.append(s)
            text_len += len(s)
        if pending:
            out.append(_bytes_to_text(pending))
        return "".join(out)

    def _decode_ids(self, ids) -> str:
        return self.decode(ids)

    # ---- files -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        raise UserError("a SentencePiece tokenizer saves as its .model file (use save)")

    def save(self, path) -> Path:
        """Write the ``.model`` file (atomically): the bytes it was read from, else the spec
        serialized (a GGUF vocabulary). A folder, or the ``tokenizer.json`` a checkpoint writer
        asks for, gets ``tokenizer.model`` beside it. Returns the path written."""
        p = Path(path)
        if p.is_dir() or not p.suffix:
            p = p / MODEL_FILE
        elif p.suffix == ".json":
            p = p.with_name(MODEL_FILE)
        if self.model_bytes is None:
            self.model_bytes = P.serialize_model(self.spec)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-" + p.name)
        with os.fdopen(fd, "wb") as f:
            f.write(self.model_bytes)
        os.replace(tmp, p)
        return p

    @classmethod
    def from_file(cls, path) -> SentencePieceTokenizer:
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_MODEL_BYTES:
                raise UserError(f"{p}: {size} bytes is too large for a SentencePiece model file")
            buf = p.read_bytes()
        except OSError as e:
            raise UserError(f"{p}: cannot read ({e.strerror})") from None
        tok = cls(P.parse_model(buf, source=p), buf, source=p)
        tok._read_hf_config(p.with_name("tokenizer_config.json"))
        return tok

    def _read_hf_config(self, cfg_path: Path):
        """A Hugging Face llama folder's tokenizer_config.json beside the model: add_bos_token /
        add_eos_token (LlamaTokenizer's defaults: True / False) and the chat template."""
        self.chat_template = None
        if not cfg_path.is_file():
            return
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise UserError(f"{cfg_path}: unreadable ({e})") from None
        if not isinstance(cfg, dict):
            raise UserError(f"{cfg_path}: expected a JSON object")
        self.add_bos = bool(cfg.get("add_bos_token", True))
        self.add_eos = bool(cfg.get("add_eos_token", False))
        template = cfg.get("chat_template")
        self.chat_template = template if isinstance(template, str) else None

    @classmethod
    def from_bytes(cls, buf: bytes, source="<bytes>") -> SentencePieceTokenizer:
        return cls(P.parse_model(buf, source=source), bytes(buf), source=source)


def _bytes_to_text(b: bytes) -> str:
    """UTF-8 bytes -> text, one U+FFFD per byte that starts no valid character (the library's
    rule; Python's 'replace' would give one per maximal invalid run)."""
    out, pos, n = [], 0, len(b)
    while pos < n:
        lead = b[pos]
        m = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 \
            else 4 if 0xF0 <= lead < 0xF5 else 0
        if m:
            try:
                out.append(b[pos:pos + m].decode("utf-8"))
                pos += m
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        pos += 1
    return "".join(out)
