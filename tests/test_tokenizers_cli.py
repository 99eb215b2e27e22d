"""`zeroformer tokenizer train` and `zeroformer tokenize`, run through the CLI entry point."""

import pytest

from zeroformer.cli import main
from zeroformer.data import locate
from zeroformer.tokenizers import load_tokenizer

CORPUS = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


@pytest.fixture
def corpus(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text(CORPUS, encoding="utf-8")
    return f


@pytest.mark.parametrize("algo,size", [("bpe", 300), ("wordpiece", 60), ("char", None), ("word", 20)])
def test_train_then_tokenize(tmp_path, corpus, capsys, algo, size):
    out = tmp_path / algo
    argv = ["tokenizer", "train", "--algo", algo, "--out", str(out), "-q", str(corpus)]
    assert main(argv + (["--vocab-size", str(size)] if size else [])) == 0
    tok = load_tokenizer(out)
    if size and algo != "wordpiece":
        assert tok.vocab_size == size
    capsys.readouterr()
    assert main(["tokenize", "--tokenizer", str(out), "to be or not"]) == 0
    printed = capsys.readouterr().out.split()
    assert [int(x) for x in printed] == tok.encode("to be or not")
    text = "question: to be"
    assert main(["tokenize", "-t", str(out), "--pieces", "--special", text, "be"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [_pieces_line(tok, text), _pieces_line(tok, "be")]


def _pieces_line(tok, text):
    """What `tokenize --pieces --special` promises: the vocabulary strings of the ids, with the
    special tokens added, space-separated; a piece holding a space (or empty) is quoted (repr)."""
    pieces = [tok.id_to_token(i) for i in tok.encode(text, add_special_tokens=True)]
    return " ".join(repr(p) if " " in p or not p else p for p in pieces)


def test_tokenize_real_gpt2(capsys):
    d = locate("gpt2-tokenizer")
    if d is None:
        pytest.skip("gpt2-tokenizer not fetched")
    tiktoken = pytest.importorskip("tiktoken")  # noqa: F841 - reference is checked in test_tokenizers_bpe
    assert main(["tokenize", "-t", str(d / "gpt2.tiktoken"), "Hello world", "--pieces"]) == 0
    assert capsys.readouterr().out.split() == ["Hello", "Ġworld"]


def test_user_errors(tmp_path, corpus, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    assert main(["tokenizer", "train", "--algo", "bpe", "--vocab-size", "300", "--out",
                 str(tmp_path / "o"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "latin1.txt" in err and "UTF-8" in err and err.count("\n") == 1
    assert main(["tokenizer", "train", "--algo", "bpe", "--out", "x", str(corpus)]) == 2
    assert "--vocab-size" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--algo", "char", "--out", "x", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err
    assert main(["tokenize", "-t", str(tmp_path / "missing.json"), "x"]) == 2
    assert "missing.json" in capsys.readouterr().err
    foreign = tmp_path / "model.bin"
    foreign.write_bytes(b"\x00\x01\x02")
    assert main(["tokenize", "-t", str(foreign), "x"]) == 2
    assert "model.bin" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--algo", "bpe", "--vocab-size", "100", "--out", "x", str(corpus)]) == 2
