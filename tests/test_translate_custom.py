"""`zeroformer train translate` on the user's own parallel corpus (TSV, two files, JSON lines):
the reader keeps the right pairs and counts bad rows, a file that is not a corpus is one error
line, a few steps train and the result translates; `zeroformer eval bleu --data` scores any test
file with sacrebleu's numbers."""

import json
import random

import pytest

from zeroformer.cli import main
from zeroformer.data.parallel import read_parallel
from zeroformer.errors import UserError

sacrebleu = pytest.importorskip("sacrebleu")

WORDS = {"el": "the", "libro": "book", "casa": "house", "perro": "dog", "es": "is",
         "rojo": "red", "grande": "big", "viejo": "old", "un": "a", "gato": "cat"}
TINY = ["--n_layer=1", "--n_encoder_layer=1", "--d_model=32", "--n_head=2", "--d_ff=64",
        "--vocab_size=300", "--batch_size=8", "--block_size=24", "--max_seq_len=40",
        "--eval_every=0", "--save_every=0", "--log_every=1", "--progress=false",
        "--device=cpu", "--dtype=fp32",
        '--extra={"eval_bleu_sentences": 4, "final_beams": 2, "examples": 1}']


def sentences(n, seed=0):
    """n (Spanish, English) pairs of a word-for-word toy language."""
    rng = random.Random(seed)
    es = list(WORDS)
    out = []
    for _ in range(n):
        words = [rng.choice(es) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(words), " ".join(WORDS[w] for w in words)))
    return out


def run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# -- the reader ----------------------------------------------------------------------------------
def test_tsv_columns_by_index_and_by_name_and_bad_rows(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("id\tes\ten\n"
                 "1\tel libro\tthe book\n"
                 "2\tla casa\n"                      # missing column
                 "\n"                                # blank: skipped, not counted
                 "3\tun gato\t   \n"                 # empty target
                 "4\t\ta dog\n"                      # empty source
                 "5\tel perro\tthe dog\r\n", encoding="utf-8")
    by_name = read_parallel(p, src_col="es", tgt_col="en")
    assert by_name.pairs == [("el libro", "the book"), ("el perro", "the dog")]
    assert by_name.header
    assert dict(by_name.bad) == {"missing column": 1, "empty target": 1, "empty source": 1}
    assert by_name.examples == {"missing column": [3], "empty target": [5], "empty source": [6]}
    summary = by_name.summary()
    assert "2 pairs" in summary and "3 bad rows left out" in summary and "line 3" in summary
    by_index = read_parallel(p, src_col="1", tgt_col=2)   # "1": an index given as text
    assert by_index.pairs == [("es", "en"), *by_name.pairs]   # no recognised header: a pair
    with pytest.raises(UserError, match="no column named 'fr'"):
        read_parallel(p, src_col="es", tgt_col="fr")


def test_tsv_header_src_tgt_is_skipped_and_latin1_line_is_a_bad_row(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_bytes("SRC\tTGT\nhola\thello\n".encode() + b"adi\xf3s\tbye\n" + "sí\tyes\n".encode())
    c = read_parallel(p)
    assert c.header and c.pairs == [("hola", "hello"), ("sí", "yes")]
    assert dict(c.bad) == {"not UTF-8": 1} and c.examples == {"not UTF-8": [3]}


def test_jsonl_bad_rows_are_counted(tmp_path):
    p = tmp_path / "c.jsonl"
    rows = [json.dumps({"src": "el gato", "tgt": "the cat"}), "{not json",
            json.dumps({"src": "el libro"}), json.dumps(["el", "the"]),
            json.dumps({"src": "la casa", "tgt": 3}), json.dumps({"src": "un perro", "tgt": ""}),
            json.dumps({"src": "es rojo", "tgt": "is red", "id": 7})]
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    c = read_parallel(p)
    assert c.pairs == [("el gato", "the cat"), ("es rojo", "is red")]
    assert dict(c.bad) == {"not JSON": 1, 'no string "src" and "tgt"': 3, "empty target": 1}


def test_two_files_aligned_and_unequal(tmp_path):
    (tmp_path / "a.es").write_text("el gato\n\nla casa\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("the cat\nthe dog\nthe house\n", encoding="utf-8")
    c = read_parallel(tmp_path / "a.es", tmp_path / "a.en")
    assert c.pairs == [("el gato", "the cat"), ("la casa", "the house")]
    assert dict(c.bad) == {"empty source": 1} and c.examples == {"empty source": [2]}
    (tmp_path / "b.en").write_text("the cat\nthe house\n", encoding="utf-8")
    with pytest.raises(UserError, match="3 lines but .* has 2"):
        read_parallel(tmp_path / "a.es", tmp_path / "b.en")


@pytest.mark.parametrize("content,match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary file"),
    (b"one column only\nand another\n", "not a parallel corpus"),
    (b"", "not a parallel corpus"),
])
def test_not_a_corpus_is_one_error_line(tmp_path, capsys, content, match):
    p = tmp_path / "x.tsv"
    p.write_bytes(content)
    rc, _, err = run(capsys, ["train", "translate", "--data", str(p), "--out",
                              str(tmp_path / "run"), *TINY])
    assert rc == 2 and err.startswith("zeroformer: error:") and match in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# -- training on each layout, then translating and scoring ---------------------------------------
@pytest.fixture(scope="module")
def tsv_run(tmp_path_factory):
    """A TSV corpus (named columns, with bad rows) trained for 3 steps, and its test file."""
    d = tmp_path_factory.mktemp("tsv")
    train = ["id\tes\ten"] + [f"{i}\t{s}\t{t}" for i, (s, t) in enumerate(sentences(60))]
    train[5] = "bad line without tabs"
    train[9] = "9\t\tempty source"
    (d / "train.tsv").write_text("\n".join(train) + "\n", encoding="utf-8")
    for name, seed in (("valid", 1), ("test", 2)):
        rows = ["id\tes\ten"] + [f"{i}\t{s}\t{t}" for i, (s, t) in enumerate(sentences(6, seed))]
        (d / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["train", "translate", "--data", str(d / "train.tsv"), "--eval-data",
            str(d / "valid.tsv"), "--test-data", str(d / "test.tsv"), "--src-col", "es",
            "--tgt-col", "en", "--out", str(d / "run"), "--max-steps", "3", *TINY]
    return d, argv


def test_tsv_corpus_trains_reports_bad_rows_and_translates(tsv_run, capsys):
    d, argv = tsv_run
    rc, out, err = run(capsys, argv)
    assert rc == 0, err
    assert f"{d / 'train.tsv'}: 58 pairs (header line skipped); 2 bad rows left out " \
           "(1 empty source: line 10; 1 missing column: line 6)" in err
    assert "--- test set (6 pairs, beam 2): BLEU" in out
    state = json.loads((d / "run" / "step-00000003" / "trainer_state.json").read_text())
    assert state["train_config"]["extra"]["src_col"] == "es"
    rc, out, err = run(capsys, ["translate", "--model", str(d / "run"), "--beams", "2",
                                "el libro es rojo", "", "un gato"])
    assert rc == 0 and len(out.split("\n")) == 4 and out.split("\n")[1] == ""
    # eval bleu on the test file: sacrebleu's scores of what `translate` writes for its sources
    srcs = [s for s, _ in sentences(6, 2)]
    refs = [t for _, t in sentences(6, 2)]
    rc, out, _ = run(capsys, ["translate", "--model", str(d / "run"), "--beams", "2", *srcs])
    hyps = out.split("\n")[:-1]
    rc, out, err = run(capsys, ["eval", "bleu", "--model", str(d / "run"), "--data",
                                str(d / "test.tsv"), "--src-col", "es", "--tgt-col", "en",
                                "--beams", "2", "--json"])
    got = json.loads(out)
    assert rc == 0 and got["sentences"] == 6
    assert got["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    assert got["chrf"] == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)
    assert got["comet"] is None and "skipped" in got["comet_note"]
    rc, out, err = run(capsys, ["eval", "bleu", "--model", str(d / "run"), "--data",
                                str(d / "test.tsv"), "--src-col", "es", "--tgt-col", "en",
                                "--beams", "2"])
    assert rc == 0 and out.startswith("BLEU ") and "COMET: skipped" in err


def test_two_files_train_with_a_held_out_slice(tmp_path, capsys):
    pairs = sentences(50)
    (tmp_path / "train.es").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "train.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    rc, out, err = run(capsys, ["train", "translate", "--data", str(tmp_path / "train.es"),
                                "--data-target", str(tmp_path / "train.en"), "--out",
                                str(tmp_path / "run"), "--max-steps", "2", *TINY])
    assert rc == 0, err
    assert "no --eval-data: the last 1 training pairs are held out for validation (49 left" in err
    assert "--- validation set (1 pairs, beam 2)" in out
    rc, out, _ = run(capsys, ["translate", "--model", str(tmp_path / "run"), "el perro"])
    assert rc == 0 and len(out.splitlines()) == 1
    # unequal line counts: one error line, nothing trained
    (tmp_path / "short.en").write_text("the cat\n", encoding="utf-8")
    rc, _, err = run(capsys, ["train", "translate", "--data", str(tmp_path / "train.es"),
                              "--data-target", str(tmp_path / "short.en"), "--out",
                              str(tmp_path / "run2"), "--max-steps", "2", *TINY])
    assert rc == 2 and "50 lines but" in err and "has 1" in err


def test_jsonl_trains_and_counts_bad_rows(tmp_path, capsys):
    rows = [json.dumps({"src": s, "tgt": t}) for s, t in sentences(40)]
    rows[3] = '{"src": "el gato"'
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rc, out, err = run(capsys, ["train", "translate", "--data", str(tmp_path / "train.jsonl"),
                                "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY])
    assert rc == 0, err
    assert "39 pairs; 1 bad rows left out (1 not JSON: line 4)" in err
    rc, out, _ = run(capsys, ["translate", "--model", str(tmp_path / "run"), "el perro"])
    assert rc == 0 and len(out.splitlines()) == 1
    # --tokenizer: the vocabulary is taken, not trained
    tok = tmp_path / "run" / "step-00000002" / "tokenizer.json"
    rc, out, err = run(capsys, ["train", "translate", "--data", str(tmp_path / "train.jsonl"),
                                "--tokenizer", str(tok), "--out", str(tmp_path / "run2"),
                                "--max-steps", "1", *TINY])
    assert rc == 0 and "BPE vocabulary" not in err, err
    assert (tmp_path / "run2" / "step-00000001" / "tokenizer.json").read_bytes() == tok.read_bytes()


def test_recipe_flag_mistakes_are_exit_2(tmp_path, capsys):
    (tmp_path / "t.tsv").write_text("a\tb\nc\td\n", encoding="utf-8")
    out = str(tmp_path / "run")
    cases = [
        (["train", "toy", "--out", out, "--test-data", "x"], "does not take --test-data"),
        (["train", "translate-es-en", "--out", out, "--data", str(tmp_path / "t.tsv")],
         "brings its own data"),
        (["train", "translate", "--out", out, *TINY], "needs --data"),
        (["train", "translate", "--out", out, "--data", str(tmp_path / "t.tsv"),
          "--extra={\"beams\": 3}"], "unknown option(s) beams"),
        (["train", "translate", "--out", out, "--data", str(tmp_path / "t.tsv"),
          "--src-col", "-1"], "column index must be >= 0"),
    ]
    for argv, match in cases:
        rc, _, err = run(capsys, argv)
        assert rc == 2 and match in err, (argv, err)
