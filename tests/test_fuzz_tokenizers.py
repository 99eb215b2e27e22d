"""Fuzzed tokenizer files (tests/hostile.py): HF tokenizer.json (BPE and WordPiece), our char/word
JSON, vocab.txt, GPT-2 encoder.json + merges (vocab.bpe), .tiktoken and SentencePiece .model. Each
loads (and then encodes and decodes a text) or is a UserError naming the file; the valid seeds
are written by the reference libraries (`tokenizers`, `sentencepiece`) where there is one."""

import base64
import io
import json

import pytest
from hypothesis import given, strategies as st
from hostile import (FUZZ, Tally, byte_mutations, check, json_file_variants)
from requires import require_package

from zeroformer.errors import UserError
from zeroformer.tokenizers import CharTokenizer, load_tokenizer

TEXT = "Hello world, naïve café 123 <|endoftext|> [CLS] ▁x\n\t日本"
CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world 123 456",
          "naïve café, résumé", "to be or not to be that is the question"] * 20


def use(tok):
    """What a loaded tokenizer must survive: encode and decode a text (UserError allowed)."""
    try:
        tok.decode(tok.encode(TEXT))
    except UserError:
        pass


def run_fuzz(path, strategy, name=None):
    """Write each example to `path`; load_tokenizer(`name` or path) must return or raise a
    UserError naming the file, under the memory cap."""
    tally = Tally()
    target = name or path

    @FUZZ
    @given(strategy)
    def fuzz(data):
        path.write_bytes(data)
        tally.add(check(lambda: use(load_tokenizer(target)), path))

    fuzz()
    assert tally.total >= FUZZ.max_examples and tally.counts["UserError"], tally.counts
    return tally


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Valid files: {name: bytes}."""
    tk = require_package("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    out = {}
    bpe = tk.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out["bpe.json"] = bpe.to_str().encode()
    wp = tk.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    out["wordpiece.json"] = wp.to_str().encode()
    folder = tmp_path_factory.mktemp("char")
    out["char.json"] = CharTokenizer.train(" ".join(CORPUS)).save(folder).read_bytes()
    model = json.loads(out["bpe.json"])["model"]
    out["encoder.json"] = json.dumps(model["vocab"]).encode()
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    out["vocab.bpe"] = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    out["vocab.txt"] = "\n".join(sorted(wp.get_vocab(), key=wp.get_vocab().get)).encode() + b"\n"
    ranks = [bytes([b]) for b in range(256)] + [b"th", b"the", b" the", b"he", b"ll", b"llo"]
    out["x.tiktoken"] = b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(ranks))
    spm = require_package("sentencepiece")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=buf,
                                   vocab_size=300, minloglevel=2, byte_fallback=True)
    out["tokenizer.model"] = buf.getvalue()
    return out


@pytest.mark.parametrize("seed", ["bpe.json", "wordpiece.json", "char.json"])
def test_fuzz_tokenizer_json(seeds, tmp_path, seed):
    valid = json.loads(seeds[seed])
    run_fuzz(tmp_path / "tokenizer.json", json_file_variants(valid))


@pytest.mark.parametrize("name", ["encoder.json", "vocab.bpe"])
def test_fuzz_gpt2_encoder_and_merges(seeds, tmp_path, name):
    """One of the pair hostile, the other valid (vocab.bpe is the merges file)."""
    for other in ("encoder.json", "vocab.bpe"):
        (tmp_path / other).write_bytes(seeds[other])
    strategy = json_file_variants(json.loads(seeds[name])) if name.endswith(".json") \
        else byte_mutations(seeds[name])
    run_fuzz(tmp_path / name, strategy, name=tmp_path / "vocab.bpe")


@st.composite
def line_variants(draw, valid: bytes):
    """Byte mutations, or whole lines duplicated / dropped / replaced by hostile ones."""
    if draw(st.booleans()):
        return draw(byte_mutations(valid))
    lines = valid.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["dup", "drop", "hostile"]))
        if kind == "dup":
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
        elif kind == "drop":
            del lines[i]
        else:
            lines[i] = draw(st.sampled_from([
                b"", b" ", b"\r", b"\xff\xfe", b"a b c", b"!!!! 12", b"AA== -1", b"AA== 99999999999",
                b"AA== 1e3", b"=== 3", b"[UNK]", b"##", b"x" * 10000, b"\x00"]))
        if not lines:
            break
    return b"\n".join(lines)


@pytest.mark.parametrize("name", ["vocab.txt", "x.tiktoken"])
def test_fuzz_line_files(seeds, tmp_path, name):
    run_fuzz(tmp_path / name, line_variants(seeds[name]))


def test_fuzz_sentencepiece_model(seeds, tmp_path):
    run_fuzz(tmp_path / "tokenizer.model", byte_mutations(seeds["tokenizer.model"]))
