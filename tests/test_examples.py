"""examples/: each script runs as a user would run it (a subprocess), and the numbers it prints
are checked against this file's own arithmetic (numpy, hand-derived gradients) or a published
figure, never against values captured from the scripts.

The scripts print checkable values as `name = <python literal>` lines (examples/show.py).
"""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run(script, *args, env=None, timeout=120):
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], env=e,
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def values(out: str) -> dict:
    got = {}
    for line in out.splitlines():
        name, sep, rest = line.partition(" = ")
        if sep and not line.startswith(" "):
            try:
                got[name] = ast.literal_eval(rest)
            except (ValueError, SyntaxError):
                pass
    return got


def close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=rtol, atol=atol)


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# -- 01: the 4-3-2 network ---------------------------------------------------------------------
W1 = np.array([[0.10, -0.29, -0.07, 0.46], [-0.12, 0.33, 0.02, -0.25], [0.05, 0.11, -0.20, 0.30]])
W2 = np.array([[0.35, -0.50, 0.25], [-0.40, 0.60, 0.10]])
X = np.array([[32, 107, 56, 11.2], [40, 120, 45, 8.0], [60, 140, 70, 14.5], [25, 90, 40, 6.3],
              [250, 200, 30, 60.0], [220, 40, 90, 35.2], [240, 120, 200, 22.0],
              [200, 180, 40, 48.0]])
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_leaf_or_flower():
    v = values(run("01_leaf_or_flower.py"))
    # the tutorial's figure: 32*0.10 + 107*(-0.29) + 56*(-0.07) + 11.2*0.46 = -26.6
    assert round(v["hidden"][0], 1) == -26.6
    h = W1 @ X[0]
    close(v["hidden"], h)
    close(v["output"], W2 @ h)
    # gradient descent with gradients derived by hand for L = -mean log softmax(z)[y]
    w1, b1, w2, b2 = W1.copy(), np.zeros(3), W2.copy(), np.zeros(2)
    onehot = np.eye(2)[Y]
    for step in (1, 2, 3):
        H = X @ w1.T + b1
        Z = H @ w2.T + b2
        P = softmax(Z)
        loss = -np.mean(np.log(P[np.arange(len(Y)), Y]))
        dZ = (P - onehot) / len(Y)          # dL/dz
        g = {"W2": dZ.T @ H, "b2": dZ.sum(0)}
        dH = dZ @ w2                        # dL/dh
        g.update({"W1": dH.T @ X, "b1": dH.sum(0)})
        close(v[f"loss{step}"], loss)
        for name in ("W1", "b1", "W2", "b2"):
            close(v[f"grad{step} {name}"], g[name], rtol=1e-4, atol=1e-6)
        w1, b1, w2, b2 = (w1 - 1e-4 * g["W1"], b1 - 1e-4 * g["b1"], w2 - 1e-4 * g["W2"],
                          b2 - 1e-4 * g["b2"])
    assert v["predictions"] == v["labels"] == Y.tolist()   # trained until it classifies


# -- 02: softmax, temperature, norms, dropout --------------------------------------------------
def test_softmax_norm_dropout():
    v = values(run("02_softmax_norm_dropout.py"))
    z = np.array([3.0, 1.0, 0.2])
    close(v["softmax"], [0.836, 0.114, 0.050], rtol=0, atol=1e-3)   # the tutorial's figure
    close(v["softmax"], softmax(z))
    for t in (0.5, 2.0):
        close(v[f"softmax T={t}"], softmax(z / t))
    x = np.array([2.0, 4.0, 6.0, 8.0])
    close(v["layernorm"], (x - x.mean()) / np.sqrt(x.var() + 1e-5))
    close(v["rmsnorm"], x / np.sqrt((x ** 2).mean() + 1e-5))
    for p in (0.1, 0.5):
        assert len(v[f"dropout p={p} kept value"]) == 1     # every kept value scaled alike
        close(v[f"dropout p={p} kept value"][0], 1 / (1 - p), rtol=1e-4)
        assert abs(v[f"dropout p={p} dropped"] - p) < 0.01  # 100,000 draws: 6 standard errors
        assert abs(v[f"dropout p={p} mean"] - 1.0) < 0.02
        assert v[f"dropout p={p} eval"] is True


# -- 03: attention -----------------------------------------------------------------------------
def test_attention():
    v = values(run("03_attention.py"))
    x = np.array([[1.0, 0, 1, 0], [0, 2, 0, 1], [1, 1, 1, 1]])
    wq = np.array([[1, 0, .5, 0], [0, 1, 0, .5], [.5, 0, 1, 0], [0, .5, 0, 1]])
    wk = np.array([[0, 1, 0, 0], [1, 0, 0, .5], [0, 0, 1, 0], [.5, 0, 0, 1]])
    wv = np.array([[1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 1, 2], [1, 0, 0, 1]])
    wo = np.array([[1, 0, 0, .5], [0, 1, .5, 0], [0, 0, 1, 0], [.5, 0, 0, 1]])
    q, k, val = x @ wq, x @ wk, x @ wv
    close(v["Q"], q)
    close(v["K"], k)
    close(v["V"], val)
    s = q @ k.T / 2.0
    close(v["scores"], s)
    future = np.triu(np.ones((3, 3), bool), 1)
    w = softmax(np.where(future, -np.inf, s))
    close(v["weights"], w)
    assert np.allclose(np.triu(np.asarray(v["weights"]), 1), 0)
    close(v["output"], w @ val)
    heads = []
    for i in range(2):
        c = slice(2 * i, 2 * i + 2)
        wh = softmax(np.where(future, -np.inf, q[:, c] @ k[:, c].T / math.sqrt(2)))
        close(v[f"head{i} weights"], wh)
        heads.append(wh @ val[:, c])
    close(v["concat"], np.concatenate(heads, 1))
    close(v["multihead"], np.concatenate(heads, 1) @ wo)
    close(v["zeroformer multihead"], np.concatenate(heads, 1) @ wo)


# -- 04: humpty dumpty ---------------------------------------------------------------------------
def test_humpty_dumpty():
    text = "humpty dumpty sat on a wall"
    v = values(run("04_humpty_dumpty.py"))
    vocab = sorted(set(text))
    assert v["vocabulary"] == vocab
    assert v["ids"] == [vocab.index(c) for c in text]
    assert v["windows"] == len(text) - 8
    p = np.asarray(v["p after 'humpty d'"])
    assert abs(p.sum() - 1) < 1e-4 and vocab[int(p.argmax())] == "u"
    assert v["generated"] == text


# -- 05: the reversal translator -----------------------------------------------------------------
def test_reverse_translation():
    v = values(run("05_reverse_translation.py"))
    assert v["accuracy"] >= 0.8
    a = np.asarray(v["alignment"])                       # (target 7 + </s>, source 7 + </s>)
    assert a.shape == (8, 8)
    np.testing.assert_allclose(a.sum(1), 1, atol=1e-4)
    n = 7
    anti = sum(int(a[r].argmax()) == n - 1 - r for r in range(n))
    assert anti >= 5, a.argmax(1)                         # mostly anti-diagonal


# -- run_numpy.py: the same tokens as `zeroformer generate` -------------------------------------
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 4

STYLES = {
    "gpt2": dict(position="learned", norm="layernorm", activation="gelu_tanh", gated_ffn=False,
                 bias=True, tie_embeddings=True, n_head=4, n_kv_head=4),
    "llama": dict(position="rope", norm="rmsnorm", activation="silu", gated_ffn=True, bias=False,
                  tie_embeddings=False, n_head=4, n_kv_head=2, rope_base=500.0),
}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_run_numpy_equals_zeroformer_generate(style, tmp_path):
    import torch

    import zeroformer
    from zeroformer.config import ModelConfig
    from zeroformer.models import build_model
    from zeroformer.tokenizers.char import CharTokenizer
    from zeroformer.train import LMTask, TrainConfig, Trainer

    tok = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    cfg = ModelConfig(arch="decoder", vocab_size=tok.vocab_size, n_layer=2, d_model=32, d_ff=64,
                      max_seq_len=64, **STYLES[style])
    ids = torch.tensor(tok.encode(TEXT))
    task = LMTask(build_model(cfg), ids, None, batch_size=8, block_size=32, tokenizer=tok)
    run_dir = tmp_path / style
    Trainer(task, TrainConfig(max_steps=40, lr=1e-2, warmup_steps=5, block_size=32,
                              eval_every=0, save_every=0, progress=False, device="cpu",
                              dtype="fp32"), out=run_dir).fit()
    prompt, n = "it was the ", 30
    poison = tmp_path / "poison"                         # `import torch` fails in run_numpy.py
    (poison / "torch").mkdir(parents=True)
    (poison / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
    out = run("run_numpy.py", run_dir, prompt, "--max-new-tokens", n,
              env={"PYTHONPATH": f"{poison}{os.pathsep}{ROOT}"})
    v = values(out)
    assert v["torch imported"] is False
    cli = subprocess.run([sys.executable, "-m", "zeroformer", "generate", "--model", str(run_dir),
                          "--prompt", prompt, "--max-new-tokens", str(n)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.removesuffix("\n") == prompt + v["text"]   # the CLI ends with a newline
    model = zeroformer.load(run_dir)
    ref = model.generate(torch.tensor([tok.encode(prompt)]), max_new_tokens=n)[0].tolist()
    assert v["ids"] == ref[len(tok.encode(prompt)):]
    assert len(set(v["ids"])) > 1                         # not a degenerate constant output
    cfg_file = json.loads((run_dir / json.loads((run_dir / "latest.json").read_text())["path"]
                           / "config.json").read_text())
    assert cfg_file["position"] == STYLES[style]["position"]
