"""Tokenizers: char, word, byte-level BPE, WordPiece, SentencePiece; readers for the files real models ship.

`load_tokenizer(path)` picks the reader from what `path` is:

| path                                   | reader                                   |
|----------------------------------------|------------------------------------------|
| folder                                 | the first of: tokenizer.json, encoder.json+vocab.bpe, vocab.txt, tokenizer.model, *.tiktoken, *.gguf |
| ``tokenizer.json`` (HF layout)         | BPE (byte-level) or WordPiece from its "model" |
| our JSON (``{"type": "char"/"word"}``) | CharTokenizer / WordTokenizer            |
| ``*.tiktoken``                         | byte-level BPE from base64 token + rank lines (GPT-2 regex) |
| ``encoder.json`` / ``vocab.bpe``       | GPT-2 byte-level BPE                     |
| ``vocab.txt``                          | WordPiece (uncased unless told otherwise) |
| ``*.gguf``                             | BPE from ``tokenizer.ggml.*`` metadata (+ chat template) |
| ``*.model`` / ``*.spm`` (SentencePiece) | SentencePieceTokenizer (BPE or unigram), sentencepiece.py |
| folder with source.spm + target.spm + vocab.json | MarianTokenizer (opus-mt), marian.py |

Anything missing, truncated or of another kind raises `UserError` naming the file. The readers
check what they can say clearly (a missing vocabulary, a bad line); a file whose values are
of the wrong type or range deeper down (a number where a list belongs, a regex that does not
compile) surfaces as the Python error it causes, which `load_tokenizer` reports as a
`UserError` naming the file: the file is not a valid tokenizer file of its format.
"""

from __future__ import annotations

import json
from pathlib import Path

import regex

from ..errors import UserError
from .base import TOKENIZER_FILE, Tokenizer
from .char import CharTokenizer

__all__ = ["Tokenizer", "CharTokenizer", "load_tokenizer", "TOKENIZER_FILE"]


def _read_json(p: Path):
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except RecursionError:
        raise UserError(f"{p}: not a valid tokenizer JSON file (nested too deeply)") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a tokenizer file (not UTF-8 JSON)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not a valid tokenizer JSON file (truncated or foreign?): {e}") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from None


def _from_json(p: Path):
    d = _read_json(p)
    if not isinstance(d, dict):
        raise UserError(f"{p}: not a tokenizer file (expected a JSON object)")
    kind = d.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(d)
    if kind == "word":
        from .word import WordTokenizer

        return WordTokenizer.from_dict(d)
    if isinstance(d.get("model"), dict):
        mtype = d["model"].get("type")
        if mtype == "BPE" or (mtype is None and "merges" in d["model"]):
            from .bpe import BPETokenizer

            return BPETokenizer.from_hf_dict(d, source=p)
        if mtype == "WordPiece":
            from .wordpiece import WordPieceTokenizer

            return WordPieceTokenizer.from_hf_dict(d, source=p)
        raise UserError(f"{p}: tokenizer model type {mtype!r} is not supported (BPE, WordPiece)")
    if p.name == "encoder.json" or (d and all(isinstance(v, int) for v in list(d.values())[:50])):
        vb = p.with_name("vocab.bpe")
        if not vb.exists():
            cands = list(p.parent.glob("*merges*.txt"))
            vb = cands[0] if cands else vb
        from .bpe import BPETokenizer

        return BPETokenizer.from_encoder_json(p, vb)
    raise UserError(f"{p}: not a tokenizer file this reader knows (no 'type' or 'model' key)")


def load_tokenizer(path) -> Tokenizer:
    """Load a tokenizer from a file or a folder (see the module docstring for the formats)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"tokenizer not found: {p}")
    if p.is_dir():
        if not (p / TOKENIZER_FILE).is_file() and (p / "source.spm").is_file() \
                and (p / "vocab.json").is_file():
            from .marian import MarianTokenizer

            return MarianTokenizer.from_folder(p)
        for name in (TOKENIZER_FILE, "encoder.json", "vocab.json", "vocab.txt", "tokenizer.model"):
            if (p / name).is_file():
                return load_tokenizer(p / name)
        found = sorted(p.glob("*.tiktoken")) + sorted(p.glob("*.gguf"))
        if found:
            return load_tokenizer(found[0])
        raise UserError(f"{p}: no tokenizer file in this folder (looked for {TOKENIZER_FILE}, "
                        "*.tiktoken, encoder.json+vocab.bpe, vocab.txt, tokenizer.model, *.gguf)")
    try:
        return _read_file(p)
    except UserError:
        raise
    except FILE_ERRORS as e:
        raise UserError(f"{p}: not a valid tokenizer file ({type(e).__name__}: {e})") from None


# what a reader raises on a file of the wrong structure (see the module docstring)
FILE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
               RecursionError, regex.error)


def _read_file(p: Path) -> Tokenizer:
    """The tokenizer in file `p`, by its suffix (load_tokenizer's file case)."""
    suffix = p.suffix.lower()
    if suffix == ".gguf":
        from .gguf_vocab import load_gguf_tokenizer

        return load_gguf_tokenizer(p)
    if suffix == ".tiktoken":
        from .bpe import BPETokenizer

        return BPETokenizer.from_tiktoken(p)
    if suffix == ".bpe" or (suffix == ".txt" and "merges" in p.name):
        from .bpe import BPETokenizer

        enc = p.with_name("encoder.json")
        if not enc.exists():
            enc = p.with_name("vocab.json")
        return BPETokenizer.from_encoder_json(enc, p)
    if suffix == ".txt":
        from .wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.from_vocab_txt(p)
    if suffix == ".json":
        return _from_json(p)
    if suffix in (".model", ".spm"):
        from .sentencepiece import SentencePieceTokenizer

        return SentencePieceTokenizer.from_file(p)
    if suffix in (".bin", ".pkl", ".pickle", ".pt"):
        raise UserError(f"{p}: unsupported tokenizer file type {suffix!r} (supported: "
                        "tokenizer.json, vocab.txt, *.tiktoken, encoder.json+vocab.bpe, .gguf, .model)")
    return _from_json(p)
