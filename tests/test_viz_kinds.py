"""`zeroformer viz attention` for every kind of model: what reaches matplotlib is the model's
attention of the chosen stack (self / encoder / decoder / cross), layer and head, computed here by
running the model; `--run` draws one head at each checkpoint of a run, oldest first. (That the
captured attention is transformers' own: tests/test_viz.py and tests/test_explain_data.py.)"""

import pytest
import torch

from test_explain import build
from test_viz import drawn  # noqa: F401 - the fixture recording what matplotlib draws
from zeroformer.cli import main
from zeroformer.inference.trace import capture_attention
from zeroformer.io.checkpoint import save_run_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("viz")
    return {kind: (d / kind, *build(kind, d / kind)) for kind in ("decoder", "encoder",
                                                                  "translator")}


def drawn_arrays(drawn):  # noqa: F811
    return [torch.tensor(a) for a, _ in drawn["imshow"]]


def attention(model, tok, kind, text, target=None):
    if kind == "translator":
        src = torch.tensor([tok.encode(text) + [tok.eos_token_id]])
        tgt = torch.tensor([[tok.pad_token_id] + tok.encode(target)])
        return capture_attention(model, lambda: model(src, tgt))[0]
    ids = tok.encode(text, add_special_tokens=kind == "encoder")
    return capture_attention(model, lambda: model(torch.tensor([ids])))[0]


@pytest.mark.parametrize("kind,stack", [("decoder", None), ("encoder", None),
                                        ("translator", None), ("translator", "encoder"),
                                        ("translator", "decoder")])
def test_every_stack_is_the_models_attention(models, kind, stack, tmp_path, drawn):  # noqa: F811
    path, model, tok = models[kind]
    text, target = ("el libro es rojo", "the book is red") if kind == "translator" else (
        "the cat sat on the mat", None)
    argv = ["viz", "attention", "--model", str(path), "--text", text, "--layer", "0",
            "--out", str(tmp_path / "a.png")]
    argv += ["--target", target] if target else []
    argv += ["--attention", stack] if stack else []
    assert main(argv) == 0
    want = attention(model, tok, kind, text, target)
    name = stack or ("cross" if kind == "translator" else "self")
    got = drawn_arrays(drawn)
    assert len(got) == model.config.n_head
    for h, g in enumerate(got):
        torch.testing.assert_close(g, want[name][0][h].double())
        torch.testing.assert_close(g.sum(-1), torch.ones(g.size(0), dtype=torch.float64))
    if name == "cross":  # target rows x source columns
        assert got[0].shape == (1 + len(tok.encode(target)), len(tok.encode(text)) + 1)
    # one head
    drawn["imshow"].clear()
    assert main(argv + ["--head", "1", "--layer", "-1"]) == 0
    (g,) = drawn_arrays(drawn)
    torch.testing.assert_close(g, want[name][-1][1].double())
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_mistakes_are_one_line(models, tmp_path, capsys):
    path = str(models["decoder"][0])
    base = ["viz", "attention", "--model", path, "--text", "to be", "--out",
            str(tmp_path / "a.png")]
    for extra, says in ((["--attention", "cross"], "no 'cross' attention"),
                        (["--layer", "2"], "--layer 2"), (["--head", "4"], "--head 4")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("zeroformer: error:") and err.count("\n") == 1 and says in err
    assert main(["viz", "attention", "--run", str(tmp_path), "--text", "a"]) == 2
    assert "no step-* checkpoints" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["decoder", "translator"])
def test_run_shows_one_head_across_checkpoints(kind, tmp_path, drawn):  # noqa: F811
    run = tmp_path / "run"
    states = []
    for step, seed in ((10, 0), (20, 1), (30, 2)):
        model, tok = build(kind, tmp_path / f"m{step}")
        with torch.no_grad():  # each checkpoint its own weights
            g = torch.Generator().manual_seed(seed)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        save_run_checkpoint(run, step, model, keep=5, tokenizer=tok)
        states.append(model)
    text = "el libro es rojo" if kind == "translator" else "to be or not"
    assert main(["viz", "attention", "--run", str(run), "--text", text, "--layer", "1",
                 "--head", "1", "--out", str(tmp_path / "r.png")]) == 0
    got = drawn_arrays(drawn)
    assert len(got) == 3
    if kind == "translator":  # every step reads the newest checkpoint's greedy translation
        from zeroformer.inference.trace import prepare

        sides, _ = prepare(states[-1], tok, text)
        src, tgt = torch.tensor([sides["source"]]), torch.tensor([sides["target"]])
        runs = [lambda m=m: m(src, tgt) for m in states]
        name = "cross"
    else:
        x = torch.tensor([tok.encode(text)])
        runs, name = [lambda m=m: m(x) for m in states], "self"
    for g, model, run_model in zip(got, states, runs):  # oldest first
        want = capture_attention(model, run_model)[0][name][1][1]
        torch.testing.assert_close(g, want.double())
    assert not torch.allclose(got[0], got[-1], atol=1e-3)
