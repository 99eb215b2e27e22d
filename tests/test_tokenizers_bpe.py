"""Byte-level BPE: GPT-2 / cl100k / o200k parity with tiktoken (fixed, seeded-random and
hypothesis texts), round trips, training, HF export, bad files."""

import hashlib
import json
import os
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from test_tokenizers_texts import TEXTS, random_texts
from zeroformer.data import locate
from zeroformer.errors import UserError
from zeroformer.tokenizers import load_tokenizer
from zeroformer.tokenizers.bpe import GPT2_PATTERN, BPETokenizer, spell

URL = "https://openaipublic.blob.core.windows.net/encodings/"
RANDOM = random_texts(300, seed=18)


@pytest.fixture(scope="session")
def tiktoken_official(tmp_path_factory):
    """tiktoken's own encodings (its regex, special tokens and sha256 checks), offline: our fetched
    file is put where tiktoken's cache looks for the download (the sha1 of its URL)."""
    tiktoken = pytest.importorskip("tiktoken")
    cache = tmp_path_factory.mktemp("tiktoken-cache")

    def get(name, path):
        shutil.copy(path, cache / hashlib.sha1(f"{URL}{name}.tiktoken".encode()).hexdigest())
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if old is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old
    return get


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
def gpt2_ref(gpt2_dir, tiktoken_official):
    return tiktoken_official("r50k_base", gpt2_dir / "gpt2.tiktoken")  # = GPT-2's vocabulary


@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_matches_tiktoken(gpt2, gpt2_ref, text):
    assert gpt2.encode_ordinary(text) == gpt2_ref.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode_ordinary(text)) == text


def test_gpt2_random_texts_match_tiktoken(gpt2, gpt2_ref):
    for text in RANDOM:
        ids = gpt2.encode_ordinary(text)
        assert ids == gpt2_ref.encode_ordinary(text), repr(text)
        assert gpt2.decode(ids) == text


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


@pytest.fixture(scope="session", params=["cl100k_base", "o200k_base"])
def openai_pair(request, tiktoken_official):
    """(ours, tiktoken's) for cl100k_base and o200k_base, both read from the same fetched file."""
    d = locate("cl100k")
    if d is None:
        pytest.skip("cl100k not fetched (zeroformer data fetch cl100k)")
    path = d / f"{request.param}.tiktoken"
    return load_tokenizer(path), tiktoken_official(request.param, path)


def test_cl100k_o200k_match_tiktoken(openai_pair):
    tok, ref = openai_pair
    assert tok.vocab_size == ref.n_vocab
    assert tok.special_tokens == {t: ref.encode_single_token(t) for t in ref.special_tokens_set}
    for text in TEXTS + RANDOM:
        assert tok.encode_ordinary(text) == ref.encode_ordinary(text), repr(text)
        assert tok.encode(text) == ref.encode(text, allowed_special="all"), repr(text)
    assert tok.decode(tok.encode(RANDOM[1])) == RANDOM[1]


@given(st.text(max_size=60))
@settings(max_examples=100, deadline=None)
def test_cl100k_o200k_any_unicode(openai_pair, s):
    tok, ref = openai_pair
    assert tok.encode_ordinary(s) == ref.encode_ordinary(s)


@given(st.text(max_size=80))
@settings(max_examples=150, deadline=None)
def test_gpt2_any_unicode(gpt2, gpt2_ref, s):
    ids = gpt2.encode_ordinary(s)
    assert ids == gpt2_ref.encode_ordinary(s)
    assert gpt2.decode(ids) == s


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


PREFIX_TEXTS = ["hello world", "goodbye moon 123", "hello again, moon", "a1b22 c333"] * 4


@pytest.mark.parametrize("add_prefix_space", [False, True])
@pytest.mark.parametrize("patterns", [[GPT2_PATTERN], [r"\p{N}", GPT2_PATTERN], [r"\p{L}+"]],
                         ids=["gpt2", "digits+gpt2", "skipping"])
def test_training_pretokenizes_like_encoding(patterns, add_prefix_space):
    """Training counts the pieces encoding cuts (one pre-tokenizer): trained until every piece is
    one token, each training text encodes to one token per piece, also with add_prefix_space and
    with a pattern that skips text (kept as pieces)."""
    tok = BPETokenizer.train(PREFIX_TEXTS, 2000, special_tokens=[], patterns=patterns,
                             add_prefix_space=add_prefix_space)
    assert tok.add_prefix_space is add_prefix_space and tok.vocab_size < 2000
    for text in PREFIX_TEXTS:
        pieces = tok.pretokenize(text)
        assert pieces[0].startswith(" ") is add_prefix_space
        assert tok.encode(text) == [tok.vocab.get(spell(p)) for p in pieces], (text, pieces)


@pytest.mark.parametrize("patterns", [[GPT2_PATTERN], [r"\p{N}", GPT2_PATTERN], [r"\p{L}+"]],
                         ids=["gpt2", "digits+gpt2", "skipping"])
def test_add_prefix_space_matches_hf(patterns, tmp_path):
    """Our pre-tokenizer with add_prefix_space = HF's Split(s) + ByteLevel(add_prefix_space) reading
    the exported file: a space before each piece the splits leave."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = BPETokenizer.train(PREFIX_TEXTS, 300, special_tokens=["<|endoftext|>"], patterns=patterns,
                             add_prefix_space=True)
    hf = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path)))
    for text in PREFIX_TEXTS + TEXTS + RANDOM[:50] + [" x", "12<|endoftext|>ab"]:
        assert tok.encode(text) == hf.encode(text).ids, repr(text)
    assert tok.encode_ordinary("") == hf.encode("").ids == []


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
