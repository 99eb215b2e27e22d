"""WordPiece: parity with transformers' BertTokenizerFast on the real MiniLM (bert-base-uncased)
vocabulary (encode and decode), pairs and token type ids, HF export, training by the likelihood score."""

import random
import unicodedata
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from test_tokenizers_texts import TEXTS, random_texts
from zeroformer.data import locate
from zeroformer.errors import UserError
from zeroformer.tokenizers import load_tokenizer
from zeroformer.tokenizers.wordpiece import WordPieceTokenizer

EXTRA = ["Σίσυφος ΣΑΣ", "İstanbul", "a" * 150, "x" * 99 + "y", "\u00adsoft\ufffdhyphen", "don't",
         "$100 ^_^ `~|", "unaffable hugging puppeteers", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ", "\u3000ideographic\u3000space"]
PAIRS = [("Hello there", "General Kenobi!"), ("", "only b"), ("日本語", "naïve café")]


@pytest.fixture(scope="session")
def minilm_dir():
    d = locate("minilm")
    if d is None:
        pytest.skip("minilm not fetched (zeroformer data fetch minilm)")
    return d


@pytest.fixture(scope="session")
def ours(minilm_dir):
    return load_tokenizer(minilm_dir / "vocab.txt")


@pytest.fixture(scope="session")
def bert(minilm_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
    tok.backend_tokenizer.no_truncation()
    return tok


@pytest.mark.parametrize("text", TEXTS + EXTRA)
def test_matches_bert_fast(ours, bert, text):
    assert ours.encode(text, add_special_tokens=True) == bert(text)["input_ids"]
    assert ours.encode(text) == bert(text, add_special_tokens=False)["input_ids"]


# HF's Rust character tables are an older Unicode version than Python's unicodedata: characters
# assigned since (e.g. U+13430, format controls added in Unicode 12) may differ - documented in
# wordpiece.py. The random texts use characters already assigned in Unicode 3.2.
OLD_CHARS = st.characters(exclude_categories=("Cs",)).filter(
    lambda c: unicodedata.ucd_3_2_0.category(c) != "Cn")


@given(st.text(OLD_CHARS, max_size=60))
@settings(max_examples=200, deadline=None)
def test_matches_bert_fast_random(ours, bert, text):
    assert ours.encode(text) == bert(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("a,b", PAIRS)
def test_pairs_and_token_type_ids(ours, bert, a, b):
    ref = bert(a, b)
    assert ours.encode_pair(a, b) == (ref["input_ids"], ref["token_type_ids"])
    assert ours.encode(a, pair=b, add_special_tokens=True) == ref["input_ids"]


def test_batch_matches(ours, bert):
    texts = ["short", "a somewhat longer sentence, with punctuation!", "日本"]
    ref = bert(texts, padding=True, return_tensors="pt")
    got = ours.encode_batch(texts, add_special_tokens=True)
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[k].tolist() == ref[k].tolist(), k
    got = ours.encode_batch(texts, add_special_tokens=True, pairs=["x", "y y", "z"])
    ref = bert(texts, ["x", "y y", "z"], padding=True)
    assert got["token_type_ids"].tolist() == ref["token_type_ids"]
    assert got["input_ids"].tolist() == ref["input_ids"]


def test_tokenizer_json_and_folder_agree(ours, minilm_dir):
    for where in (minilm_dir, minilm_dir / "tokenizer.json"):
        tok = load_tokenizer(where)
        assert isinstance(tok, WordPieceTokenizer) and tok.vocab_size == 30522
        for text in TEXTS:
            assert tok.encode(text, add_special_tokens=True) == ours.encode(text, add_special_tokens=True)


DECODE_TEXTS = ["Hello, world!", "Is it? Yes! No. a,b", "don't I'm it's we've they're I'll",
                "' quoted ' and \"double\"", "unaffable puppeteers, hugging", "[SEP] inside [MASK]."]


def _decode_cases(bert):
    """Id lists: real encodings (with [CLS]/[SEP], pairs, [UNK]) and random id sequences."""
    texts = TEXTS + EXTRA + DECODE_TEXTS + random_texts(150, seed=11)
    cases = [bert(t)["input_ids"] for t in texts] + [bert(a, b)["input_ids"] for a, b in PAIRS]
    r = random.Random(11)
    return cases + [[r.randrange(len(bert)) for _ in range(r.randint(1, 12))] for _ in range(200)]


def test_decode_matches_bert_fast(minilm_dir, ours, bert):
    """HF's WordPiece decoder (prefix "##", cleanup as MiniLM's tokenizer.json declares), read from
    vocab.txt and from tokenizer.json. transformers >= 5 adds no second clean-up by default."""
    from_json = load_tokenizer(minilm_dir / "tokenizer.json")
    backend = bert.backend_tokenizer
    for ids in _decode_cases(bert):
        for skip in (False, True):
            ref = backend.decode(ids, skip_special_tokens=skip)
            assert bert.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False) == ref
            assert ours.decode(ids, skip_special_tokens=skip) == ref, ids
            assert from_json.decode(ids, skip_special_tokens=skip) == ref, ids


def test_decode_cleanup_rules_match_hf_decoder():
    """Every clean-up rule of HF's WordPiece decoder, on a vocabulary holding the tokens each rule
    rewrites (BERT's own has no "'s" or "n't" tokens), with and without cleanup."""
    decoders = pytest.importorskip("tokenizers.decoders")
    words = ["[UNK]", "a", "do", "not", "do not", "'", "'s", "'ve", "'re", "'m", "n't", "x n't", ".",
             "?", "!", ",", "##s", "##.", "##,", "## '", " ,", "##"]
    r = random.Random(5)
    for cleanup in (True, False):
        tok = WordPieceTokenizer({w: i for i, w in enumerate(words)}, cleanup=cleanup)
        ref = decoders.WordPiece(prefix="##", cleanup=cleanup)
        for _ in range(400):
            ids = [r.randrange(len(words)) for _ in range(r.randint(1, 8))]
            assert tok.decode(ids) == ref.decode([words[i] for i in ids]), [words[i] for i in ids]


@pytest.mark.parametrize("lowercase", [True, False])
def test_export_to_hf(ours, tmp_path, lowercase):
    tokenizers = pytest.importorskip("tokenizers")
    tok = WordPieceTokenizer(ours.vocab, lowercase=lowercase)
    hf = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path)))
    for text in TEXTS + EXTRA:
        assert tok.encode(text, add_special_tokens=True) == hf.encode(text).ids, text
    enc = hf.encode(*PAIRS[0])
    assert tok.encode_pair(*PAIRS[0]) == (enc.ids, enc.type_ids)


def test_training_uses_likelihood_score(tmp_path):
    corpus = "hug hugs pug pun bun hugs hug hug pugs bun bun " * 5 + "zz zz xy"
    tok = WordPieceTokenizer.train(corpus, vocab_size=25)
    basic = WordPieceTokenizer({"[UNK]": 0})
    words = Counter(basic.pre_tokenize(basic.normalize(corpus)))
    sym, pairs = Counter(), Counter()
    for w, f in words.items():
        s = [c if i == 0 else "##" + c for i, c in enumerate(w)]
        for x in s:
            sym[x] += f
        for p in zip(s, s[1:]):
            pairs[p] += f
    best = max(pairs, key=lambda p: pairs[p] / (sym[p[0]] * sym[p[1]]))
    first_new = tok.id_to_token(len(sym) + 5)  # 5 specials, then the alphabet, then merges
    assert first_new == best[0] + best[1][2:]
    assert tok.vocab_size == 25
    assert tok.encode("hugs") != tok.encode("h u g s")
    again = load_tokenizer(tok.save(tmp_path))
    assert again.encode("pugs bun", add_special_tokens=True) == tok.encode("pugs bun", add_special_tokens=True)


def test_bad_vocab(tmp_path):
    v = tmp_path / "vocab.txt"
    v.write_text("hello\nworld\n")
    with pytest.raises(UserError, match="vocab.txt"):
        load_tokenizer(v)
    v.write_bytes(b"\xff\xfe[UNK]\n")
    with pytest.raises(UserError, match="vocab.txt"):
        load_tokenizer(v)
