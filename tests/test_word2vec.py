"""word2vec: the sampling formulas, the loss gradient by hand, the recipe through `zeroformer
train`, `zeroformer neighbors` (neighbours, analogy, export), and the export read by gensim."""

import contextlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from requires import require_package
from zeroformer.cli import main
from zeroformer.config import ModelConfig
from zeroformer.models.word2vec import Word2Vec
from zeroformer.train.config import TrainConfig
from zeroformer.train.optim import build_optimizer
from zeroformer.train.schedules import lr_at
from zeroformer.train.word2vec import Word2VecTask, keep_probabilities

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=300):
    """`zeroformer ARGS` as a user runs it (a subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "zeroformer", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def zf(*args):
    """The same command in this process (faster): (returncode, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def tiny(vocab=10, d=4):
    torch.manual_seed(0)
    return Word2Vec(ModelConfig(arch="word2vec", vocab_size=vocab, d_model=d, n_head=1))


# -- formulas -----------------------------------------------------------------------------------
def test_subsampling_is_word2vec_formula():
    counts = torch.tensor([0, 5000, 300, 40, 1], dtype=torch.long)
    sample, total = 1e-3, 5341
    t = sample * total
    for c, p in zip(counts.tolist(), keep_probabilities(counts, sample).tolist()):
        if c:   # word2vec.c: ran = (sqrt(cn / (sample * train_words)) + 1) * (sample * train_words) / cn
            assert p == pytest.approx(min(1.0, (math.sqrt(c / t) + 1) * t / c))
    assert keep_probabilities(counts, 0.0).eq(1).all()


def test_windows_negatives_and_batches_are_pure_functions_of_the_step():
    counts = torch.arange(1, 51) * 4                      # word 4 + i seen 4 (i + 1) times
    ids = torch.repeat_interleave(torch.arange(4, 54), counts)
    ids = ids[torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(0))]
    task = Word2VecTask(tiny(54), ids, batch_size=512, window=3, negative=5, sample=0.0, seed=3)
    again = Word2VecTask(tiny(54), ids, batch_size=512, window=3, negative=5, sample=0.0, seed=3)
    k = 3 * task.steps_per_epoch + 1                      # a batch of the fourth epoch
    for i in (0, k):
        a, b = task.train_batch(i), again.train_batch(i)
        assert all(torch.equal(a[x], b[x]) for x in a)
    # negatives follow count^0.75 (count^1 would be 0.098 away in L1)
    neg = torch.cat([task.train_batch(i)["targets"][:, 1:].flatten() for i in range(60)])
    expect = counts.double() ** 0.75
    expect = (expect / expect.sum()).numpy()
    seen = torch.bincount(neg, minlength=54).double().numpy() / neg.numel()
    assert seen[:4].sum() == 0                            # special tokens (count 0) never drawn
    assert np.abs(seen[4:] - expect).sum() < 0.03         # L1 distance, 153,600 draws


def test_dynamic_window_weights_near_words_more():
    n, w = 20000, 4
    ids = torch.arange(n)                                  # every position its own word
    task = Word2VecTask(tiny(n), ids, batch_size=n, window=w, negative=1, sample=0.0, seed=0)
    centres, contexts = task.examples(0)
    dist = (contexts - centres).abs()
    assert int(dist.min()) >= 1 and int(dist.max()) <= w
    for o in range(1, w + 1):   # b ~ U{1..w}: P(b >= o) = (w - o + 1) / w, both sides
        expect = 2 * (n - o) * (w - o + 1) / w
        assert abs(int((dist == o).sum()) - expect) < 5 * math.sqrt(expect)


def test_loss_gradient_is_the_hand_derived_one():
    """d/dv_c of -log s(u_o.v_c) - sum_k log s(-u_k.v_c) = -(1 - s(u_o.v)) u_o + sum_k s(u_k.v) u_k."""
    model = tiny()
    with torch.no_grad():
        model.context.weight.normal_()
    task = Word2VecTask.__new__(Word2VecTask)
    c, o, negs = 4, 6, [7, 8, 9]
    batch = {"inputs": torch.tensor([c]), "targets": torch.tensor([[o, *negs]])}
    loss, n = Word2VecTask.loss(task, model, batch)
    loss.backward()
    v = model.embed.weight[c].detach().double().numpy()
    u = model.context.weight.detach().double().numpy()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expect = -(1 - sig(u[o] @ v)) * u[o] + sum(sig(u[k] @ v) * u[k] for k in negs)
    np.testing.assert_allclose(model.embed.weight.grad[c].numpy(), expect, rtol=1e-5, atol=1e-7)
    assert loss.item() == pytest.approx(-math.log(sig(u[o] @ v)) - sum(math.log(sig(-u[k] @ v))
                                                                      for k in negs), rel=1e-5)
    assert n == 1


def test_initialisation_is_word2vec_c():
    model = tiny(500, 50)
    v = model.embed.weight.detach()
    assert v.abs().max() <= 0.5 / 50 and v.abs().max() > 0.45 / 50   # uniform in [-0.5/d, 0.5/d]
    assert model.context.weight.abs().sum() == 0                      # u starts at 0


def test_cbow_input_is_the_mean_of_the_window():
    model = tiny()
    with torch.no_grad():
        model.context.weight.normal_()
    inputs, mask = torch.tensor([[4, 5, 6, 0]]), torch.tensor([[1, 1, 1, 0]])
    s = model(inputs, torch.tensor([[7, 8]]), mask)
    h = model.embed.weight[[4, 5, 6]].mean(0)
    torch.testing.assert_close(s[0], model.context.weight[[7, 8]] @ h)
    # word2vec.c / gensim (cbow_mean=1): each window vector receives the error at h in full
    s[0, 0].backward()
    g = model.embed.weight.grad
    for j in (4, 5, 6):
        torch.testing.assert_close(g[j], model.context.weight[7].detach())
    assert g[0].abs().sum() == 0                          # the padding slot gets nothing


def test_linear_decay_and_sgd():
    cfg = TrainConfig(schedule="linear_decay", lr=1.0, min_lr=0.1, warmup_steps=0, max_steps=10,
                      optimizer="sgd")
    assert [round(lr_at(t, cfg, 8), 6) for t in (1, 5, 10, 11)] == [0.91, 0.55, 0.1, 0.1]
    model = tiny()
    opt = build_optimizer(model, cfg)
    before = model.embed.weight.detach().clone()
    model.embed.weight.grad = torch.ones_like(before)
    opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = 0.5
    opt.step()
    torch.testing.assert_close(model.embed.weight.detach(), before - 0.5)   # theta - lr g


def test_sparse_gradients_train_exactly_as_dense():
    """The recipe's fast path (sparse embedding gradients under SGD) equals the dense reference."""
    from zeroformer.train import Trainer

    ids = torch.randint(4, 60, (3000,), generator=torch.Generator().manual_seed(0))
    weights = []
    for sparse in (False, True):
        model = tiny(60, 8)
        model.embed.sparse = model.context.sparse = sparse
        task = Word2VecTask(model, ids, batch_size=64, window=2, negative=3, sample=1e-2, seed=1)
        cfg = TrainConfig(optimizer="sgd", schedule="linear_decay", lr=2.0, min_lr=0.01,
                          warmup_steps=0, max_steps=30, weight_decay=0.0, grad_clip=0.0,
                          block_size=1, eval_every=0, save_every=0, progress=False,
                          device="cpu", dtype="fp32", seed=1)
        Trainer(task, cfg).fit()
        weights.append([model.embed.weight.detach().clone(), model.context.weight.detach().clone()])
    assert weights[0][1].abs().sum() > 0                  # it trained
    for dense, sparse in zip(*weights):
        torch.testing.assert_close(sparse, dense, rtol=1e-6, atol=1e-7)


def test_resume_is_exact(tmp_path):
    from zeroformer.train import Trainer

    ids = torch.randint(4, 60, (3000,), generator=torch.Generator().manual_seed(0))

    def fit(out, resume=False):
        model = tiny(60, 8)
        model.embed.sparse = model.context.sparse = True
        task = Word2VecTask(model, ids, batch_size=64, window=2, negative=3, seed=1)
        cfg = TrainConfig(optimizer="sgd", schedule="linear_decay", lr=2.0, min_lr=0.01,
                          warmup_steps=0, max_steps=120, weight_decay=0.0, grad_clip=0.0,
                          block_size=1, eval_every=0, save_every=10, keep_checkpoints=20,
                          progress=False, device="cpu", dtype="fp32", seed=1)
        Trainer(task, cfg, out=out).fit(resume=resume)
        return model.embed.weight.detach()

    straight = fit(tmp_path)                      # 120 steps > one epoch: the epoch cache turns over
    for step in range(60, 121, 10):               # as if the run had been killed after step 50
        shutil.rmtree(tmp_path / f"step-{step:08d}")
    (tmp_path / "latest.json").write_text(json.dumps({"step": 50, "path": "step-00000050"}))
    assert torch.equal(fit(tmp_path, resume=True), straight)


# -- end to end: a corpus with planted structure ---------------------------------------------------
GROUPS = [["cat", "dog", "horse", "cow", "sheep", "goat"],
          ["red", "blue", "green", "yellow", "black", "white"],
          ["one", "two", "three", "four", "five", "six"]]


def corpus(path, sentences=1500, seed=0):
    """Sentences of 8 words, each from a single group: a word's neighbours are its group."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(g) for _ in range(8)) + "." for g in
             (rng.choice(GROUPS) for _ in range(sentences))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2v")
    out = tmp / "run"
    r = cli("train", "word2vec", "--out", out, "--data", corpus(tmp / "c.txt"), "--progress=false",
            "--batch_size=256", "--lr=6.4", "--min_lr=0.0256", "--d_model=16",
            '--extra={"epochs": 3, "window": 2, "sample": 0, "probe": "cat"}')
    assert r.returncode == 0, r.stderr
    assert "neighbors 'cat:" in r.stderr                  # the final evaluation's probe
    return out


def group_of(w):
    return next(i for i, g in enumerate(GROUPS) if w in g)


@pytest.mark.parametrize("cbow", [False, True])
def test_trained_vectors_find_the_planted_groups(run, tmp_path, cbow):
    if cbow:
        out = tmp_path / "cbow"
        r = zf("train", "word2vec", "--out", out, "--data", corpus(tmp_path / "c.txt"),
                "--progress=false", "--batch_size=256", "--lr=6.4", "--min_lr=0.0256",
                "--d_model=16", '--extra={"epochs": 3, "window": 2, "sample": 0, "cbow": true}')
        assert r.returncode == 0, r.stderr
    else:
        out = run
    probes = [g[0] for g in GROUPS] + [g[3] for g in GROUPS]
    r = zf("neighbors", "--model", out, *[w.upper() for w in probes], "--top", "5")  # lower-cased
    assert r.returncode == 0, r.stderr
    lists = [part.strip().splitlines()[1:] for part in r.stdout.split("# ")[1:]]
    hits = 0
    for w, lines in zip(probes, lists, strict=True):
        found = [line.split("\t")[0] for line in lines]
        assert len(found) == 5 and w not in found
        hits += sum(group_of(x) == group_of(w) for x in found)
    assert hits >= 0.9 * 30


def test_analogy_and_export_round_trip(run, tmp_path):
    vec = tmp_path / "v.txt"
    r = zf("neighbors", "--model", run, "--analogy", "cat", "dog", "red", "--top", "4",
            "--export", vec)
    assert r.returncode == 0, r.stderr
    got = [(line.split("\t")[0], float(line.split("\t")[1])) for line in r.stdout.splitlines()]
    lines = vec.read_text().splitlines()
    n, d = map(int, lines[0].split())
    table = {p[0]: np.array(p[1:], float) for p in (line.split(" ") for line in lines[1:])}
    assert len(table) == n and d == 16 and all(len(v) == d for v in table.values())
    unit = {w: v / np.linalg.norm(v) for w, v in table.items()}
    q = unit["dog"] - unit["cat"] + unit["red"]             # our own arithmetic, from the file
    cos = {w: float(unit[w] @ q / np.linalg.norm(q)) for w in unit if w not in ("cat", "dog", "red")}
    best = sorted(cos, key=cos.get, reverse=True)[:4]
    assert [w for w, _ in got] == best
    assert [s for _, s in got] == pytest.approx([cos[w] for w in best], abs=2e-4)
    # the text file is itself a model for `neighbors`
    again = zf("neighbors", "--model", vec, "--analogy", "cat", "dog", "red", "--top", "4")
    assert [line.split("\t")[0] for line in again.stdout.splitlines()] == best


def test_gensim_reads_the_export(run, tmp_path):
    gensim_models = require_package("gensim.models")
    vec = tmp_path / "v.txt"
    assert zf("neighbors", "--model", run, "--export", vec).returncode == 0
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(vec), binary=False)
    r = zf("neighbors", "--model", run, "horse", "--top", "5")
    ours = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert ours == [w for w, _ in kv.most_similar("horse", topn=5)]


@pytest.mark.parametrize("args, needle", [
    (["--model", "{run}", "zebra"], "zebra"),
    (["--model", "{run}"], "WORD"),
    (["--model", "{bad}", "cat"], "bad.txt:2"),
    (["--model", "{run}", "cat", "--top", "0"], "--top"),
])
def test_user_mistakes_exit_2(run, tmp_path, args, needle):
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3\ncat 0.1 0.2\ndog 1 2 3\n")
    r = zf("neighbors", *[a.format(run=run, bad=bad) for a in args])
    assert r.returncode == 2
    assert r.stderr.startswith("zeroformer: error:") and len(r.stderr.splitlines()) == 1, r.stderr
    assert needle in r.stderr


@pytest.mark.parametrize("extra, needle", [('{"windw": 3}', "windw"), ('{"window": 0}', "window"),
                                           ('{"sample": "lots"}', "sample"),
                                           ('{"cbow": "yes"}', "cbow")])
def test_recipe_refuses_bad_options(tmp_path, extra, needle):
    r = zf("train", "word2vec", "--out", tmp_path / "x", "--data", corpus(tmp_path / "c.txt"),
           f"--extra={extra}")
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.splitlines()) == 1


def test_convert_to_hf_refuses_word_vectors(run, tmp_path):
    r = zf("convert", run, tmp_path / "hf", "--to", "hf")
    assert r.returncode == 2 and "word2vec" in r.stderr
