"""Char tokenizer and the shared base: round trips, specials, batching, save/load."""

import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zeroformer.errors import UserError
from zeroformer.tokenizers import CharTokenizer, load_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def test_train_vocab_is_sorted_set_of_chars():
    tok = CharTokenizer.train(TEXT)
    assert tok.vocab_size == len(set(TEXT))
    assert tok.chars == sorted(set(TEXT))
    assert tok.encode(TEXT) == [sorted(set(TEXT)).index(c) for c in TEXT]
    assert tok.decode(tok.encode(TEXT)) == TEXT


@given(st.text(alphabet=sorted(set(TEXT)), max_size=200))
@settings(max_examples=50, deadline=None)
def test_round_trip(s):
    tok = CharTokenizer.train(TEXT)
    assert tok.decode(tok.encode(s)) == s


def test_unknown_character():
    tok = CharTokenizer.train("abc")
    with pytest.raises(UserError, match="'z'"):
        tok.encode("abz")
    tok = CharTokenizer.train("abc", special_tokens=["<pad>", "<unk>"])
    assert tok.encode("abz") == [2, 3, tok.unk_token_id]
    assert tok.unk_token_id == 1 and tok.pad_token_id == 0


def test_special_tokens_in_text_and_wrap():
    tok = CharTokenizer.train("hello", special_tokens=["<pad>", "<bos>", "<eos>"])
    ids = tok.encode("he<eos>")
    assert ids[-1] == tok.eos_token_id and len(ids) == 3
    assert tok.encode_ordinary("h") == tok.encode("h")
    assert tok.decode(ids) == "he<eos>"
    assert tok.decode(ids, skip_special_tokens=True) == "he"


def test_batch_padding_truncation_and_mask():
    tok = CharTokenizer.train("abcdef", special_tokens=["<pad>"])
    b = tok.encode_batch(["abc", "a", "abcdef"], truncation=True, max_length=4)
    assert b["input_ids"].shape == (3, 4) and b["input_ids"].dtype == torch.long
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert b["input_ids"][1].tolist() == [tok.encode("a")[0]] + [tok.pad_token_id] * 3
    left = tok(["abc", "a"], padding_side="left")
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert left["input_ids"][1, -1].item() == tok.encode("a")[0]
    fixed = tok(["ab"], padding="max_length", max_length=5)
    assert fixed["input_ids"].shape == (1, 5)


def test_save_load_json_file_and_folder(tmp_path):
    tok = CharTokenizer.train(TEXT, special_tokens=["<unk>"])
    f = tok.save(tmp_path)
    assert f.name == "tokenizer.json"
    assert json.loads(f.read_text())["type"] == "char"
    for where in (tmp_path, f):
        tok2 = load_tokenizer(where)
        assert isinstance(tok2, CharTokenizer)
        assert tok2.encode(TEXT + "Z") == tok.encode(TEXT + "Z")
        assert tok2.unk_token_id == tok.unk_token_id


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="nope"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"type": "char", "chars": ["a"')
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer(bad)
    bad.write_text('{"hello": "world"}')
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no tokenizer file"):
        load_tokenizer(tmp_path / "empty")


def test_word_tokenizer(tmp_path):
    from zeroformer.tokenizers.word import WordTokenizer

    tok = WordTokenizer.train(TEXT * 3, vocab_size=12)
    assert tok.vocab_size == 12 and tok.unk_token_id == 1
    ids = tok.encode("speak, speak. Zebra")
    assert ids[-1] == tok.unk_token_id and ids[0] == ids[2]
    assert tok.encode("speak", add_special_tokens=True) == [tok.bos_token_id, ids[0], tok.eos_token_id]
    assert tok.decode(tok.encode("speak, speak.")) == "speak, speak."
    again = load_tokenizer(tok.save(tmp_path / "w.json"))
    assert again.encode("speak, Zebra") == tok.encode("speak, Zebra")
