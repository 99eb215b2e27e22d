"""zeroformer.data: registry, cache behaviour, CLI, and the structure of fetched datasets.

Nothing here downloads: structure tests skip unless the dataset is already in the cache
(`zeroformer data fetch --all-test`).
"""

import json

import pytest

from zeroformer import data
from zeroformer.cli import main
from zeroformer.data import cache as fetchmod
from zeroformer.errors import UserError


def need(name):
    path = data.locate(name)
    if path is None:
        pytest.skip(f"{name} not fetched (run `zeroformer data fetch {name}`)")
    return path


# ----------------------------------------------------------------------------- registry and cache


def test_unknown_name_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path))
    with pytest.raises(UserError, match="unknown dataset"):
        data.fetch("no-such-dataset")
    with pytest.raises(UserError, match="unknown dataset"):
        data.locate("no-such-dataset")


def test_datasets_have_descriptions_with_a_license():
    assert set(data.TEST_DATASETS) <= set(data.DATASETS) | {"bible-es-en"}
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
