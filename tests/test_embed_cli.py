"""`zeroformer embed` / `zeroformer similar`: row alignment, empty lines, .npy vs JSON lines, stdin,
ranking, bad input (exit 2); on MiniLM, equal to transformers + mean pooling."""

import io
import json

import numpy as np
import pytest
import torch

from requires import require_data, require_package
from zeroformer.cli import main
from zeroformer.config import ModelConfig
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models.bert import Bert
from zeroformer.tokenizers import CharTokenizer

LINES = ["the cat sat", "", "a much longer line about dogs and cats", "dogs", "   ", "the cat sat"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ", special_tokens=SPECIALS)
    cfg = ModelConfig(arch="encoder", vocab_size=tok.vocab_size, n_layer=2, d_model=32, n_head=4,
                      d_ff=64, max_seq_len=64, prenorm=False, final_norm=False, embed_norm=True,
                      type_vocab_size=2, norm_eps=1e-12, pad_token_id=0)
    torch.manual_seed(0)
    model = Bert(cfg).eval()
    save_checkpoint(model, d / "model", tokenizer=tok)
    (d / "docs.txt").write_text("\n".join(LINES) + "\n")
    return d, model, tok


def _one(model, tok, text):
    ids = torch.tensor([[tok.cls_token_id] + tok.encode(text) + [tok.sep_token_id]])
    with torch.no_grad():
        return model.sentence_embedding(ids)[0]


def test_embed_npy_rows_align_with_lines(tiny, capsys):
    d, model, tok = tiny
    assert main(["embed", "--model", str(d / "model"), str(d / "docs.txt"),
                 "--out", str(d / "e.npy"), "--batch-size", "2"]) == 0
    e = np.load(d / "e.npy")
    assert e.shape == (len(LINES), 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(LINES):        # batching sorts by length; rows must come back in order
        np.testing.assert_allclose(e[i], _one(model, tok, text).numpy(), atol=1e-5)
    # the documented choice: an empty line embeds to the vector of the empty text ([CLS] [SEP])
    np.testing.assert_allclose(e[1], _one(model, tok, "").numpy(), atol=1e-5)
    assert np.isfinite(e[1]).all()


def test_embed_jsonl_stdout_and_stdin(tiny, capsys, monkeypatch):
    d, _, _ = tiny
    main(["embed", "--model", str(d / "model"), str(d / "docs.txt"), "--out", str(d / "e.npy")])
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(LINES) + "\n"))
    assert main(["embed", "--model", str(d / "model")]) == 0
    rows = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == LINES
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), np.load(d / "e.npy"),
                               atol=1e-6)


def test_similar_ranks_identical_line_first(tiny, capsys):
    d, _, _ = tiny
    assert main(["similar", "--model", str(d / "model"), "--query", "dogs", str(d / "docs.txt"),
                 "--top", "3"]) == 0
    out = [r.split("\t") for r in capsys.readouterr().out.splitlines()]
    assert len(out) == 3
    assert out[0][1:] == ["4", "dogs"] and abs(float(out[0][0]) - 1.0) < 1e-3
    scores = [float(r[0]) for r in out]
    assert scores == sorted(scores, reverse=True)
    assert all(r[2].strip() for r in out)   # empty lines are never results


@pytest.mark.parametrize("argv, needle", [
    (["embed", "--model", "MODEL", "NOPE.txt"], "not found"),
    (["embed", "--model", "MISSING_MODEL", "DOCS"], "not found"),
    (["similar", "--model", "MODEL", "--query", "  ", "DOCS"], "--query is empty"),
    (["similar", "--model", "MODEL", "--query", "x", "DOCS", "--top", "0"], "--top"),
    (["similar", "--model", "MODEL", "--query", "x", "EMPTY"], "no non-empty lines"),
])
def test_bad_input_exits_2(tiny, capsys, argv, needle):
    d, _, _ = tiny
    (d / "empty.txt").write_text("\n \n")
    sub = {"MODEL": str(d / "model"), "DOCS": str(d / "docs.txt"), "EMPTY": str(d / "empty.txt"),
           "NOPE.txt": str(d / "nope.txt"), "MISSING_MODEL": str(d / "nope")}
    assert main([sub.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and needle in err and "Traceback" not in err


def test_embed_minilm_equals_transformers(tmp_path, capsys):
    path = require_data("minilm")
    transformers = require_package("transformers")
    texts = ["A man is playing a guitar.", "", "Someone plays the guitar.",
             "The stock market fell sharply today."]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    assert main(["embed", "--model", str(path), str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "e.npy")]) == 0
    tok = transformers.BertTokenizerFast.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = ref(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    assert np.abs(np.load(tmp_path / "e.npy") - want).max() < 1e-4
    assert main(["similar", "--model", str(path), "--query", "guitar music",
                 str(tmp_path / "in.txt"), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert {r.split("\t")[1] for r in out} == {"1", "3"}
