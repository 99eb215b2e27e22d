"""A reader for SentencePiece ``.model`` files (a serialized ``ModelProto``), written from the wire format.

Why our own reader and not the ``protobuf`` package with SentencePiece's schema: it needs no
generated code and no extra dependency (the ``sentencepiece`` wheel's ``sentencepiece_model_pb2``
itself needs ``protobuf``, which this project does not otherwise install), and a hostile file's
lengths are checked against the bytes actually present before anything is sliced or allocated:
a truncated file, a length that runs past its message, a bad wire type or a varint over 10
bytes is a `UserError` naming the file, never a crash or a huge allocation.

Protocol buffer wire format (https://protobuf.dev/programming-guides/encoding/): a message is a
sequence of (key, value); key = varint(field_number << 3 | wire_type); wire type 0 = varint,
1 = 8 bytes, 2 = varint length + that many bytes (strings, bytes, sub-messages), 5 = 4 bytes.
Unknown fields are skipped, as protobuf does.

The fields read (numbers from SentencePiece's ``sentencepiece_model.proto``):

| message        | field (number)                                                                      |
|----------------|-------------------------------------------------------------------------------------|
| ModelProto     | pieces (1), trainer_spec (2), normalizer_spec (3), denormalizer_spec (5)            |
| SentencePiece  | piece (1, string), score (2, float), type (3: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) |
| TrainerSpec    | model_type (3: 1 unigram, 2 BPE, 3 word, 4 char), vocab_size (4), split_digits (25), treat_whitespace_as_suffix (24), byte_fallback (35), unk_id/bos_id/eos_id/pad_id (40-43), unk_surface (44), unk/bos/eos/pad_piece (45-48) |
| NormalizerSpec | name (1), precompiled_charsmap (2), add_dummy_prefix (3), remove_extra_whitespaces (4), escape_whitespaces (5) |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import UserError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4


class _Truncated(Exception):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a base-128 varint at `pos` (< `end`) -> (value, next position)."""
    v = shift = 0
    for k in range(10):
        if pos >= end:
            raise _Truncated("truncated varint")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, pos
        shift += 7
    raise _Truncated("varint longer than 10 bytes")


def fields(buf: bytes, start: int = 0, end: int | None = None):
    """Yield (field_number, wire_type, value) of the message in buf[start:end]; value is an int
    (varint, fixed32/64 as raw unsigned) or a (start, end) span for length-delimited fields."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _Truncated("field number 0")
        if wt == 0:
            v, pos = _varint(buf, pos, end)
        elif wt == 1 or wt == 5:
            n = 8 if wt == 1 else 4
            if pos + n > end:
                raise _Truncated("truncated fixed-width field")
            v = int.from_bytes(buf[pos:pos + n], "little")
            pos += n
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise _Truncated(f"field {num}: length {n} runs past the end of its message")
            v = (pos, pos + n)
            pos += n
        else:
            raise _Truncated(f"field {num}: unsupported wire type {wt}")
        yield num, wt, v


def _int32(v: int) -> int:
    """A varint as a signed int32/int64 (negatives are sign-extended to 10 bytes)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _f32(v: int) -> float:
    return struct.unpack("<f", struct.pack("<I", v & 0xFFFFFFFF))[0]


@dataclass
class Piece:
    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class ModelSpec:
    """What a ``.model`` file says (defaults are the proto's defaults)."""

    pieces: list = field(default_factory=list)
    model_type: int = UNIGRAM
    vocab_size: int = 8000
    byte_fallback: bool = False
    split_digits: bool = False
    treat_whitespace_as_suffix: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_surface: str = " \u2047 "
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    has_denormalizer: bool = False


def _text(buf, span, what):
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Truncated(f"{what} is not UTF-8") from None


def parse_model(buf: bytes, source="<bytes>") -> ModelSpec:
    """Parse a serialized SentencePiece ModelProto; a malformed one is a UserError naming `source`."""
    spec = ModelSpec()
    try:
        for num, wt, v in fields(buf):
            if num == 1 and wt == 2:
                p = Piece("")
                for n2, w2, v2 in fields(buf, *v):
                    if n2 == 1 and w2 == 2:
                        p.piece = _text(buf, v2, "a piece")
                    elif n2 == 2 and w2 == 5:
                        p.score = _f32(v2)
                    elif n2 == 3 and w2 == 0:
                        p.type = _int32(v2)
                spec.pieces.append(p)
            elif num == 2 and wt == 2:
                _trainer(buf, v, spec)
            elif num == 3 and wt == 2:
                _normalizer(buf, v, spec)
            elif num == 5 and wt == 2:
                spec.has_denormalizer = any(n == 2 and s[1] > s[0] for n, w, s in fields(buf, *v)
                                            if w == 2)
    except _Truncated as e:
        raise UserError(f"{source}: not a valid SentencePiece model file (truncated or foreign?): "
                        f"{e}") from None
    if not spec.pieces:
        raise UserError(f"{source}: not a SentencePiece model file (no pieces)")
    return spec


def _trainer(buf, span, spec):
    ints = {3: "model_type", 4: "vocab_size", 40: "unk_id", 41: "bos_id", 42: "eos_id",
            43: "pad_id"}
    bools = {25: "split_digits", 24: "treat_whitespace_as_suffix", 35: "byte_fallback"}
    strs = {44: "unk_surface", 45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
    for num, wt, v in fields(buf, *span):
        if wt == 0 and num in ints:
            setattr(spec, ints[num], _int32(v))
        elif wt == 0 and num in bools:
            setattr(spec, bools[num], bool(v))
        elif wt == 2 and num in strs:
            setattr(spec, strs[num], _text(buf, v, "a trainer_spec string"))


def _normalizer(buf, span, spec):
    for num, wt, v in fields(buf, *span):
        if num == 1 and wt == 2:
            spec.normalizer_name = _text(buf, v, "the normalizer name")
        elif num == 2 and wt == 2:
            spec.precompiled_charsmap = bytes(buf[v[0]:v[1]])
        elif num == 3 and wt == 0:
            spec.add_dummy_prefix = bool(v)
        elif num == 4 and wt == 0:
            spec.remove_extra_whitespaces = bool(v)
        elif num == 5 and wt == 0:
            spec.escape_whitespaces = bool(v)


# ---- writer --------------------------------------------------------------------------------
def _put_varint(out: bytearray, v: int):
    v &= (1 << 64) - 1  # negative int32 -> 10-byte two's complement, as protobuf writes it
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put(out: bytearray, num: int, value):
    """One field: int/bool -> varint, float -> fixed32, str/bytes -> length-delimited."""
    if isinstance(value, float):
        _put_varint(out, num << 3 | 5)
        out += struct.pack("<f", value)
    elif isinstance(value, (bool, int)):
        _put_varint(out, num << 3 | 0)
        _put_varint(out, int(value))
    else:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        _put_varint(out, num << 3 | 2)
        _put_varint(out, len(data))
        out += data


def serialize_model(spec: ModelSpec) -> bytes:
    """ModelSpec -> a serialized ModelProto that the `sentencepiece` library loads (tested)."""
    out = bytearray()
    for p in spec.pieces:
        msg = bytearray()
        _put(msg, 1, p.piece)
        _put(msg, 2, float(p.score))
        _put(msg, 3, int(p.type))
        _put(out, 1, msg)
    ids = {p.piece: i for i, p in enumerate(spec.pieces)}
    role_id = {name: ids.get(getattr(spec, f"{name}_piece"), -1)
               for name in ("unk", "bos", "eos", "pad")}
    trainer = bytearray()
    for num, v in ((3, spec.model_type), (4, len(spec.pieces)),
                   (24, spec.treat_whitespace_as_suffix), (25, spec.split_digits), (35, spec.byte_fallback), (40, role_id["unk"]),
                   (41, role_id["bos"]), (42, role_id["eos"]), (43, role_id["pad"]),
                   (44, spec.unk_surface), (45, spec.unk_piece), (46, spec.bos_piece),
                   (47, spec.eos_piece), (48, spec.pad_piece)):
        _put(trainer, num, v)
    _put(out, 2, trainer)
    norm = bytearray()
    for num, v in ((1, spec.normalizer_name), (2, spec.precompiled_charsmap),
                   (3, spec.add_dummy_prefix), (4, spec.remove_extra_whitespaces),
                   (5, spec.escape_whitespaces)):
        _put(norm, num, v)
    _put(out, 3, norm)
    return bytes(out)
