"""BERT recipes: MLM/NSP batches, classify fine-tuning through `zeroformer train classify`,
`zeroformer eval accuracy`, and strict labelled files (exit 2 naming the line)."""

import json

import pytest
import torch

from zeroformer.cli import main
from zeroformer.config import ModelConfig
from zeroformer.data.labelled import read_labelled
from zeroformer.errors import UserError
from zeroformer.inference.classification import accuracy_f1
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models.bert import Bert
from zeroformer.recipes.bert import SPECIALS, MLMTask
from zeroformer.tokenizers import CharTokenizer
from zeroformer.train.mlm import IGNORE_INDEX


def _tiny(heads, vocab):
    return ModelConfig(arch="encoder", vocab_size=vocab, n_layer=2, d_model=32, n_head=4, d_ff=64,
                       max_seq_len=48, prenorm=False, final_norm=False, embed_norm=True,
                       type_vocab_size=2, norm_eps=1e-12, pad_token_id=0, dropout=0.0,
                       attn_dropout=0.0, heads=heads)


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .", special_tokens=SPECIALS)


def test_mlm_task_batches(tok):
    torch.manual_seed(0)
    model = Bert(_tiny(["mlm", "nsp"], tok.vocab_size))
    docs = [[tok.encode("the cat sat"), tok.encode("on the mat"), tok.encode("and slept")],
            [tok.encode("dogs bark"), tok.encode("at night")]]
    task = MLMTask(model, tok, docs, docs, batch_size=16, block_size=32, seed=3, eval_steps=2)
    a, b = task.train_batch(5), task.train_batch(5)
    assert all(torch.equal(a[k], b[k]) for k in a)          # a pure function of the index
    assert not torch.equal(task.train_batch(6)["labels"], a["labels"])
    cls, sep, mask = (tok.special_tokens[t] for t in ("[CLS]", "[SEP]", "[MASK]"))
    assert (a["input_ids"][:, 0] == cls).all()
    sel = a["labels"] != IGNORE_INDEX
    assert sel.any() and not (a["labels"][sel] == cls).any() and not (a["labels"][sel] == sep).any()
    assert set(a["nsp_labels"].tolist()) <= {0, 1}
    loss, n = task.loss(model, a)
    assert n == int(sel.sum()) and torch.isfinite(loss)
    model.eval()
    ev = task.on_eval(model)
    # the reference: accuracy from the full forward pass's logits (B, T, V) at the labelled
    # positions and the NSP head on the [CLS] vector, counted over every eval batch
    hit = n = nsp_hit = nsp_n = 0
    with torch.no_grad():
        for b in task.eval_batches():
            logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            sel = b["labels"] != IGNORE_INDEX
            hit += int((logits.argmax(-1)[sel] == b["labels"][sel]).sum())
            n += int(sel.sum())
            h = model.encode(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            nsp_hit += int((model.nsp_logits(h).argmax(-1) == b["nsp_labels"]).sum())
            nsp_n += b["nsp_labels"].numel()
    assert 0 < hit < n and 0 < nsp_hit < nsp_n  # neither rate is a trivial 0 or 1 here
    assert ev == {"mlm_acc": hit / n, "nsp_acc": nsp_hit / nsp_n}


def test_accuracy_f1():
    r = accuracy_f1(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3)
    assert r["accuracy"] == 0.75
    assert abs(r["macro_f1"] - (2 / 3 + 2 / 3 + 1) / 3) < 1e-9


def _write(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("cls")
    torch.manual_seed(0)
    save_checkpoint(Bert(_tiny(["mlm"], tok.vocab_size)), d / "pre", tokenizer=tok)
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(120):     # label = which letter the text is made of
        letter = "ab"[i % 2]
        rows.append((letter * int(torch.randint(2, 12, (1,), generator=g)), f"is_{letter}"))
    _write(d / "train.tsv", [("text", "label")] + rows[:100])
    _write(d / "test.tsv", rows[100:])
    assert main(["train", "classify", "--out", str(d / "run"), "--max-steps", "40",
                 "--data", str(d / "train.tsv"), "--eval-data", str(d / "test.tsv"),
                 "--model", str(d / "pre"), "--lr=3e-3", "--batch_size=8", "--block_size=16",
                 "--warmup_steps=5", "--eval_every=0", "--progress=false"]) == 0
    return d


def test_classify_trains_and_eval_accuracy(trained, capsys):
    d = trained
    capsys.readouterr()
    assert main(["eval", "accuracy", "--model", str(d / "run"), "--data", str(d / "test.tsv"),
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 20 and r["accuracy"] >= 0.9, r


@pytest.mark.parametrize("lines, needle", [
    (["aaa\tis_a", "bbb\tis_c"], ":2: unknown label 'is_c'"),
    (["aaa\tis_a", "bbb"], ":2: expected 2 or 3 tab-separated columns"),
    (["aaa\tx\tis_a", "bbb\tis_b"], ":2: 2 columns, but earlier lines have 3"),
    (["\tis_a"], ":1: empty text"),
])
def test_bad_label_file_exits_2_naming_the_line(trained, capsys, lines, needle):
    f = trained / "bad.tsv"
    f.write_text("\n".join(lines) + "\n")
    assert main(["eval", "accuracy", "--model", str(trained / "run"), "--data", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and f"bad.tsv{needle}" in err, err


def test_jsonl_reader(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "a", "text_b": "b", "label": 1}\n\n{"text": "c", "label": "0"}\n')
    assert read_labelled(f) == [("a", "b", "1"), ("c", None, "0")]
    f.write_text('{"text": "a", "label": 1}\n{"txt": "c", "label": 0}\n')
    with pytest.raises(UserError, match=r"x.jsonl:2: expected an object"):
        read_labelled(f)
    f.write_text('{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(UserError, match=r"x.jsonl:2: not valid JSON"):
        read_labelled(f)


def test_classify_without_data_is_a_user_error(tmp_path, capsys):
    assert main(["train", "classify", "--out", str(tmp_path / "r"), "--progress=false"]) == 2
    assert "classify needs --data FILE" in capsys.readouterr().err
