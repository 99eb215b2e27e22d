"""The tokenizer stored in a ``.gguf`` file's metadata (llama.cpp's format), read with `gguf`.

Keys used (byte-level BPE, ``tokenizer.ggml.model == "gpt2"``; SentencePiece ``"llama"`` below):

| key                                   | meaning                                             |
|---------------------------------------|-----------------------------------------------------|
| tokenizer.ggml.tokens                 | id -> token, spelled with GPT-2's byte<->unicode map |
| tokenizer.ggml.merges                 | ``"a b"`` merges in rank order                      |
| tokenizer.ggml.token_type             | 1 normal, 3 control (special), 4 user-defined (whole) |
| tokenizer.ggml.pre                    | which pre-tokenizer regexes the vocabulary was learned with |
| tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, add_eos_token | roles |
| tokenizer.chat_template               | the Jinja chat template (`tok.chat_template`)       |

``pre`` -> regexes, as llama.cpp applies them (facts from its llama-vocab.cpp): "gpt2" uses the
GPT-2 pattern; "smollm" splits every digit first (``\\p{N}``) then GPT-2; the LLaMA-3 family and
Qwen2 use their own single pattern (LLaMA-3 also takes a piece that is a whole token as is). Other
pre-tokenizers are refused with a UserError.

``tokenizer.ggml.model == "llama"`` is a SentencePiece BPE vocabulary (LLaMA-1/2, Mistral):
``tokens`` + ``scores`` + ``token_type`` (the same numbering as SentencePiece's piece types: 1 normal,
2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) become the pieces of a
SentencePieceTokenizer, with the identity normalizer, byte fallback when byte pieces exist and the
dummy prefix unless ``tokenizer.ggml.add_space_prefix`` is false (llama.cpp's reading).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .bpe import GPT2_PATTERN, BPETokenizer
from .bpe_io import CL100K_PATTERN

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_PATTERNS = {
    "gpt2": [GPT2_PATTERN], "gpt-2": [GPT2_PATTERN], "mpt": [GPT2_PATTERN], "olmo": [GPT2_PATTERN],
    "smollm": [r"\p{N}", GPT2_PATTERN],
    "qwen2": [QWEN2_PATTERN], "deepseek-r1-qwen": [QWEN2_PATTERN],
    **{k: [CL100K_PATTERN] for k in ("llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx",
                                     "smaug-bpe")},
}
IGNORE_MERGES = {"llama3", "llama-v3", "llama-bpe", "falcon3"}  # a piece that is a token stays whole
CONTROL, USER_DEFINED = 3, 4


def open_gguf(path) -> tuple:
    """(reader, metadata) of a GGUF file: the one place a .gguf is opened (the model importer in
    io/gguf_import.py uses it too). Metadata: every key/value, arrays as lists, strings decoded.

    The `gguf` package's reader trusts the file's counts: a read past the end of the file comes
    back short instead of failing, so an array that claims 2^60 elements loops (almost) forever
    and a tensor's data can be cut short. `_checked_reader` makes every such read an error."""
    try:
        reader = _checked_reader()(str(path), "r")
        return reader, {k: f.contents() for k, f in reader.fields.items()}
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError, TypeError,
            OverflowError, RecursionError) as e:  # numpy / struct errors of a damaged file
        raise UserError(f"{path}: not a readable GGUF file (truncated or foreign?): "
                        f"{type(e).__name__}: {e}") from None


def _checked_reader():
    """gguf.GGUFReader whose every read (`_get(offset, dtype, count)`) must lie in the file."""
    try:
        import numpy as np
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - gguf is a test/extra dependency
        raise UserError("reading .gguf files needs the `gguf` package: pip install gguf") from None

    class CheckedReader(GGUFReader):
        def _get(self, offset, dtype, count=1, *args, **kwargs):
            end = int(offset) + np.dtype(dtype).itemsize * int(count)
            if int(offset) < 0 or int(count) < 0 or end > len(self.data):
                raise ValueError(f"{int(count)} x {np.dtype(dtype).name} at byte {int(offset)} "
                                 f"run past the end of the file ({len(self.data)} bytes)")
            return super()._get(offset, dtype, count, *args, **kwargs)

    return CheckedReader


def load_gguf_tokenizer(path, metadata=None) -> BPETokenizer:
    """Build the BPE tokenizer a GGUF file describes (pass `metadata` if already read)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"GGUF file not found: {p}")
    md = metadata if metadata is not None else open_gguf(p)[1]
    model = md.get("tokenizer.ggml.model")
    if model is None or "tokenizer.ggml.tokens" not in md:
        raise UserError(f"{p}: this GGUF file carries no tokenizer (no tokenizer.ggml.* metadata)")
    if model == "llama":
        return _sentencepiece_from_gguf(p, md)
    if model != "gpt2":
        raise UserError(f"{p}: GGUF tokenizer model {model!r} is not supported (byte-level BPE "
                        "'gpt2' and SentencePiece 'llama' only)")
    pre = md.get("tokenizer.ggml.pre", "gpt2")
    if pre not in PRE_PATTERNS:
        raise UserError(f"{p}: GGUF pre-tokenizer {pre!r} is not supported "
                        f"(known: {', '.join(sorted(PRE_PATTERNS))})")
    tokens = md["tokenizer.ggml.tokens"]
    types = md.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in md.get("tokenizer.ggml.merges") or []]
    if not merges:
        raise UserError(f"{p}: GGUF BPE vocabulary without tokenizer.ggml.merges")
    vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
    specials = {t: i for i, (t, k) in enumerate(zip(tokens, types)) if k in (CONTROL, USER_DEFINED)}
    roles = {}
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"),
                      ("unk", "unknown_token_id"), ("pad", "padding_token_id")):
        i = md.get(f"tokenizer.ggml.{key}")
        if i is not None and 0 <= int(i) < len(tokens):
            roles[role] = tokens[int(i)]
            specials.setdefault(tokens[int(i)], int(i))
    return BPETokenizer(vocab, merges, PRE_PATTERNS[pre], specials, roles,
                        ignore_merges=pre in IGNORE_MERGES,
                        add_bos=bool(md.get("tokenizer.ggml.add_bos_token", False)),
                        add_eos=bool(md.get("tokenizer.ggml.add_eos_token", False)),
                        chat_template=md.get("tokenizer.chat_template"))


def _sentencepiece_from_gguf(p, md):
    """A SentencePiece BPE tokenizer from ``tokenizer.ggml.{tokens,scores,token_type}``."""
    from . import spm_proto as P
    from .sentencepiece import SentencePieceTokenizer

    tokens = md["tokenizer.ggml.tokens"]
    scores = md.get("tokenizer.ggml.scores")
    types = md.get("tokenizer.ggml.token_type") or [P.NORMAL] * len(tokens)
    if scores is None or len(scores) != len(tokens) or len(types) != len(tokens):
        raise UserError(f"{p}: GGUF SentencePiece vocabulary needs tokenizer.ggml.scores and "
                        "token_type as long as its tokens")
    pieces = [P.Piece(t, float(s), int(k)) for t, s, k in zip(tokens, scores, types)]
    spec = P.ModelSpec(pieces=pieces, model_type=P.BPE, byte_fallback=P.BYTE in set(types),
                       normalizer_name="identity", remove_extra_whitespaces=False,
                       add_dummy_prefix=bool(md.get("tokenizer.ggml.add_space_prefix", True)))
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id")):
        i = md.get(f"tokenizer.ggml.{key}")
        if i is not None and 0 <= int(i) < len(tokens):
            setattr(spec, f"{role}_piece", tokens[int(i)])
    tok = SentencePieceTokenizer(spec, None, source=p)
    tok.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", True))
    tok.add_eos = bool(md.get("tokenizer.ggml.add_eos_token", False))
    tok.chat_template = md.get("tokenizer.chat_template")
    return tok
