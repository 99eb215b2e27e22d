"""`zeroformer translate` and `zeroformer eval bleu`: empty lines, truncation, wrong model kind."""

import pytest
import torch

import zeroformer
from zeroformer.cli import main
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models import build_model
from zeroformer.tokenizers.bpe import BPETokenizer

sacrebleu = pytest.importorskip("sacrebleu")


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    text = ["el libro es rojo", "the book is red", "la casa es grande", "the house is big"] * 5
    tok = BPETokenizer.train(text, 300, special_tokens=("<pad>", "</s>"))
    cfg = zeroformer.preset("transformer-small", vocab_size=tok.vocab_size, n_layer=1,
                            n_encoder_layer=1, d_model=32, n_head=2, d_ff=64, max_seq_len=24,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("mt") / "ck"
    save_checkpoint(model, path, tokenizer=tok)
    return path


def run(capsys, argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_empty_lines_stay_empty_and_aligned(translator, capsys, monkeypatch):
    rc, out, err = run(capsys, ["translate", "--model", str(translator), "--beams", "2",
                                "--max-new-tokens", "4"], "el libro\n\n  \nla casa\n", monkeypatch)
    assert rc == 0
    lines = out.split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == "" and lines[2] == ""


def test_long_source_is_truncated_with_a_warning(translator, capsys):
    rc, out, err = run(capsys, ["translate", "--model", str(translator), "--beams", "1",
                                "--max-new-tokens", "3", "el libro " * 40, "la casa"])
    assert rc == 0 and len(out.splitlines()) == 2
    assert "warning: input 1" in err and "truncated" in err and "input 2" not in err


def test_not_a_translator_is_exit_2(tmp_path, capsys):
    cfg = zeroformer.preset("tiny")
    save_checkpoint(build_model(cfg), tmp_path / "lm")
    rc, out, err = run(capsys, ["translate", "--model", str(tmp_path / "lm"), "hola"])
    assert rc == 2 and err.startswith("zeroformer: error:") and "not a translator" in err
    assert "Traceback" not in err
    rc, _, err = run(capsys, ["eval", "bleu", "--model", str(tmp_path / "lm"),
                              "--src", str(tmp_path / "lm" / "config.json"),
                              "--ref", str(tmp_path / "lm" / "config.json")])
    assert rc == 2 and "not a translator" in err


def test_eval_bleu_hyp_ref_matches_sacrebleu(tmp_path, capsys):
    hyps = ["the cat sat on the mat", "a dog barked loudly today"]
    refs = ["the cat sat on a mat", "the dog barked loudly"]
    (tmp_path / "h").write_text("\n".join(hyps) + "\n")
    (tmp_path / "r").write_text("\n".join(refs) + "\n")
    rc, out, _ = run(capsys, ["eval", "bleu", "--hyp", str(tmp_path / "h"), "--ref",
                              str(tmp_path / "r"), "--json"])
    import json

    got = json.loads(out)
    assert rc == 0
    assert got["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    assert got["chrf"] == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)


def test_eval_bleu_with_model_and_files(translator, tmp_path, capsys, monkeypatch):
    srcs = ["el libro es rojo", "", "la casa"]
    (tmp_path / "s").write_text("\n".join(srcs) + "\n")
    (tmp_path / "r").write_text("the book is red\n\nthe house\n")
    rc, out, _ = run(capsys, ["eval", "bleu", "--model", str(translator), "--src",
                              str(tmp_path / "s"), "--ref", str(tmp_path / "r"), "--beams", "2",
                              "--out", str(tmp_path / "hyp")])
    assert rc == 0 and out.startswith("BLEU ")
    hyps = (tmp_path / "hyp").read_text().split("\n")
    assert len(hyps) == 4 and hyps[1] == hyps[3] == ""
    hyps = hyps[:3]
    # the saved translations are the model's: `zeroformer translate` with the same beams
    rc, tout, _ = run(capsys, ["translate", "--model", str(translator), "--beams", "2"],
                      stdin="\n".join(srcs) + "\n", monkeypatch=monkeypatch)
    assert rc == 0 and tout.split("\n")[:3] == hyps
    # references that contain each translation and more: the scores printed are sacrebleu's on
    # the saved translations (this untrained model writes one "word" a line, so BLEU, which
    # needs 2- to 4-grams, is 0; chrF, on characters, is strictly between 0 and 100)
    refs = [f"{h} and more words" for h in hyps]
    (tmp_path / "r2").write_text("\n".join(refs) + "\n")
    argv = ["eval", "bleu", "--model", str(translator), "--src", str(tmp_path / "s"), "--ref",
            str(tmp_path / "r2"), "--beams", "2"]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    assert 0 < chrf < 100
    rc, out, _ = run(capsys, argv)
    assert rc == 0 and out.startswith(f"BLEU {bleu:.2f}  chrF {chrf:.2f}  (3 sentences"), out
    import json

    rc, out, _ = run(capsys, argv + ["--json"])
    got = json.loads(out)
    assert (got["bleu"], got["chrf"]) == (round(bleu, 2), round(chrf, 2))


def test_bad_arguments_are_exit_2(translator, tmp_path, capsys):
    assert run(capsys, ["translate", "--model", str(translator), "--beams", "0", "x"])[0] == 2
    assert run(capsys, ["eval", "bleu", "--hyp", str(tmp_path / "missing"), "--ref", "x"])[0] == 2
    assert run(capsys, ["eval", "bleu"])[0] == 2
