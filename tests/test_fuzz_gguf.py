"""Fuzzed GGUF files (tests/hostile.py): a tiny llama-architecture model with a byte-level BPE
tokenizer, written by the `gguf` package's own writer, then mutated as bytes (cut, flipped, its
counts, lengths and offsets overwritten with huge values) or rewritten with hostile metadata
(a key deleted, a value of another type, huge or negative, NaN). zeroformer.load and
load_tokenizer each return or raise a UserError naming the file, within the memory cap.
(Without the bounded reads of zeroformer/tokenizers/gguf_vocab.py, an array claiming 2^63
elements runs the gguf package's reader loop past the deadline.)"""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hostile import FUZZ, HUGE, Tally, byte_mutations, check
from requires import require_package

import zeroformer
from zeroformer.config import preset
from zeroformer.io.files import untied_state
from zeroformer.io.gguf_import import TABLE
from zeroformer.models import build_model
from zeroformer.tokenizers import load_tokenizer
from zeroformer.tokenizers.bpe import BYTE_TO_CHAR

TOKENS = [BYTE_TO_CHAR[b] for b in range(256)] + ["he", "Ġt", "<|endoftext|>"]


def metadata() -> dict:
    """key -> (value, GGUF value type name, array element type name or None)."""
    md = {"general.architecture": ("llama", "STRING", None),
          "llama.block_count": (1, "UINT32", None), "llama.context_length": (16, "UINT32", None),
          "llama.embedding_length": (16, "UINT32", None),
          "llama.feed_forward_length": (32, "UINT32", None),
          "llama.attention.head_count": (2, "UINT32", None),
          "llama.attention.head_count_kv": (1, "UINT32", None),
          "llama.attention.layer_norm_rms_epsilon": (1e-5, "FLOAT32", None),
          "llama.rope.freq_base": (10000.0, "FLOAT32", None),
          "llama.vocab_size": (len(TOKENS), "UINT32", None),
          "tokenizer.ggml.model": ("gpt2", "STRING", None),
          "tokenizer.ggml.pre": ("smollm", "STRING", None),
          "tokenizer.ggml.tokens": (TOKENS, "ARRAY", "STRING"),
          "tokenizer.ggml.token_type": ([1] * (len(TOKENS) - 1) + [3], "ARRAY", "INT32"),
          "tokenizer.ggml.merges": (["h e", "Ġ t"], "ARRAY", "STRING"),
          "tokenizer.ggml.bos_token_id": (len(TOKENS) - 1, "UINT32", None),
          "tokenizer.ggml.eos_token_id": (len(TOKENS) - 1, "UINT32", None),
          "tokenizer.chat_template": ("{{ messages }}", "STRING", None)}
    return md


def tensors() -> dict:
    cfg = preset("smollm2-135m", vocab_size=len(TOKENS), n_layer=1, d_model=16, n_head=2,
                 n_kv_head=1, d_ff=32, max_seq_len=16, tie_embeddings=True, rope_base=10000.0)
    model = build_model(cfg)
    return {k: v.detach().numpy().astype(np.float32)
            for k, v in TABLE.to_theirs(untied_state(model), cfg).items()}


def write(path, md: dict, weights: dict) -> None:
    gguf = require_package("gguf")
    T = gguf.GGUFValueType
    w = gguf.GGUFWriter(str(path), md.get("general.architecture", ("llama",))[0]
                        if isinstance(md.get("general.architecture", ("llama",))[0], str)
                        else "llama")
    w.kv_data[0].pop("general.architecture", None)  # written below, as fuzzed (or not at all)
    for key, (value, vtype, sub) in md.items():
        w.add_key_value(key, value, T[vtype], T[sub] if sub else None)
    for name, x in weights.items():
        w.add_tensor(name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


HOSTILE_KV = st.sampled_from([
    (0, "UINT32", None), (2 ** 32 - 1, "UINT32", None), (2 ** 63, "UINT64", None),
    (-1, "INT32", None), (-(2 ** 63), "INT64", None), (math.nan, "FLOAT32", None),
    (math.inf, "FLOAT64", None), (3.5, "FLOAT32", None), (True, "BOOL", None),
    ("", "STRING", None), ("llama", "STRING", None), ("gpt2", "STRING", None),
    ("x" * 300, "STRING", None), ([7, -1], "ARRAY", "INT32"),
    ([2 ** 31 - 1], "ARRAY", "UINT32"), (["a", ""], "ARRAY", "STRING"), (["h"], "ARRAY", "STRING"),
    ([1.5], "ARRAY", "FLOAT32"),
])


def count_fields(path) -> list[tuple[int, int]]:
    """(offset, width) of every integer the file's layout declares: counts, string and array
    lengths, value types, tensor dimensions, types and offsets (found with the gguf reader)."""
    gguf = require_package("gguf")
    reader = gguf.GGUFReader(str(path))
    base = reader.data.__array_interface__["data"][0]
    out = set()
    fields = list(reader.fields.values()) + [t.field for t in reader.tensors]
    for f in fields:
        for part in f.parts:
            if part.dtype.kind in "iu" and part.dtype.itemsize >= 4:
                at = part.__array_interface__["data"][0] - base
                out.update((at + k * part.dtype.itemsize, part.dtype.itemsize)
                           for k in range(min(len(part), 4)))
    return sorted(out)


@st.composite
def gguf_variants(draw, md: dict, valid: bytes, fields: list):
    """("bytes", data) or ("metadata", md) of a hostile GGUF file."""
    kind = draw(st.sampled_from(["bytes", "field", "metadata"]))
    if kind == "bytes":
        return "bytes", draw(byte_mutations(valid))
    if kind == "field":  # a declared count / length / offset made huge, zero or off by one
        at, width = draw(st.sampled_from(fields))
        old = int.from_bytes(valid[at:at + width], "little")
        new = draw(st.sampled_from(HUGE + [0, old + 1, max(old - 1, 0), old * 2]))
        return "bytes", valid[:at] + (new % (1 << 8 * width)).to_bytes(width, "little") + \
            valid[at + width:]
    md = dict(md)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(md)))
        if draw(st.integers(0, 3)) == 0:
            del md[key]
        else:
            md[key] = draw(HOSTILE_KV)
    return "metadata", md


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    weights = tensors()
    write(path, metadata(), weights)
    model = zeroformer.load(path)  # the seed itself is valid
    assert model.tokenizer.decode(model.tokenizer.encode("the")) == "the"
    return path.read_bytes(), weights, count_fields(path)


def test_fuzz_gguf(seed, tmp_path):
    valid, weights, fields = seed
    path = tmp_path / "x.gguf"
    tally = Tally()

    @FUZZ
    @given(gguf_variants(metadata(), valid, fields))
    def fuzz(example):
        kind, value = example
        if kind == "bytes":
            path.write_bytes(value)
        else:
            write(path, value, weights)
        tally.add(check(lambda: zeroformer.load(path), path))  # weights + tokenizer
        if kind == "metadata":  # the tokenizer alone, through load_tokenizer
            check(lambda: load_tokenizer(path), path)

    fuzz()
    assert tally.total >= FUZZ.max_examples and tally.counts["UserError"], tally.counts
