"""`zeroformer` CLI: help lists subcommands; `train` overrides, errors are one line + exit 2."""

import subprocess
import sys

import pytest

from zeroformer.cli import COMMANDS, main
from zeroformer.cli.cmd_train import parse_overrides


def cli(*args):
    return subprocess.run([sys.executable, "-m", "zeroformer", *args], capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(stderr, needle=""):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zeroformer: error:"), stderr
    assert "Traceback" not in stderr
    assert needle in lines[0]


def test_help_lists_the_subcommands():
    r = cli("--help")
    assert r.returncode == 0
    assert "train" in r.stdout
    from zeroformer.cli import build_parser

    registered = build_parser()._subparsers._group_actions[0].choices
    for name in registered:
        assert name in r.stdout
    assert set(registered) <= set(COMMANDS)


def test_unknown_recipe_exits_2_with_one_line():
    r = cli("train", "no-such-recipe", "--out", "unused")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "no-such-recipe")


def test_unknown_key_exits_2_naming_it(tmp_path):
    r = cli("train", "toy", "--out", str(tmp_path / "x"), "--n_layerz=2")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "n_layerz")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("words, needle", [
    (["--n_layer=two"], "n_layer"), (["--lr=fast"], "lr"), (["--progress=maybe"], "progress"),
    (["--schedule=linear"], "schedule"), (["--n_layer", "2"], "--key=value"),
    (["--dtype=fp8"], "dtype")])
def test_bad_values_exit_2(tmp_path, capsys, words, needle):
    assert main(["train", "toy", "--out", str(tmp_path / "x"), *words]) == 2
    assert_one_line_error(capsys.readouterr().err, needle)


def test_missing_out_and_missing_recipe(capsys):
    assert main(["train", "toy"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--out")
    assert main(["train"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--list")


def test_list_shows_recipes(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "shakespeare-char" in out


def test_overrides_are_typed():
    model, train = parse_overrides(["--n_layer=3", "--dropout=0.25", "--bias=false",
                                    "--n-kv-head=none", "--extra={\"a\": 1}", "--lr=3e-4",
                                    "--progress=0", "--dtype=bf16", "--batch-size=4"])
    assert model == {"n_layer": 3, "dropout": 0.25, "bias": False, "n_kv_head": None}
    assert train == {"lr": 3e-4, "progress": False, "dtype": "bf16", "batch_size": 4,
                     "extra": {"a": 1}}  # recipe options: the run's trainer state, not the model


def test_train_overrides_reach_the_checkpoint_and_resume_rules(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "toy", "--out", out, "--progress=false", "--device=cpu"]
    assert main([*base, "--max-steps", "2", "--n_layer=1", "--batch_size=4", "--seed", "7"]) == 0
    import zeroformer

    model = zeroformer.load(out)
    assert model.config.n_layer == 1
    from zeroformer.io.checkpoint import latest_checkpoint, load_trainer_state

    state, _ = load_trainer_state(latest_checkpoint(out))
    assert state["train_config"]["batch_size"] == 4 and state["train_config"]["seed"] == 7
    capsys.readouterr()
    # a fresh run into a used folder, and a resume with another model: one-line errors
    assert main([*base, "--max-steps", "3", "--n_layer=1", "--batch_size=4", "--seed", "7"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--resume")
    assert main([*base, "--resume", "--max-steps", "3", "--n_layer=2", "--batch_size=4",
                 "--seed", "7"]) == 2
    assert_one_line_error(capsys.readouterr().err, "n_layer")
    # the same configuration with more steps continues
    assert main([*base, "--resume", "--max-steps", "3", "--n_layer=1", "--batch_size=4",
                 "--seed", "7"]) == 0
    assert latest_checkpoint(out).name == "step-00000003"


def test_nan_loss_exits_2_naming_the_step(tmp_path, capsys, monkeypatch):
    from zeroformer.recipes import lm

    real = lm.ToyTask.loss

    def poisoned(self, model, batch):
        loss, n = real(self, model, batch)
        return (loss * float("inf") if len(calls.append(1) or calls) >= 3 else loss), n

    calls = []
    monkeypatch.setattr(lm.ToyTask, "loss", poisoned)
    code = main(["train", "toy", "--out", str(tmp_path), "--max-steps=5", "--save-every=1",
                 "--progress=false", "--eval_every=0"])
    assert code == 2
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("zeroformer: error:")]
    assert line and "step 3" in line[0] and "step-00000002" in line[0], err


def test_resume_without_a_run_exits_2(tmp_path, capsys):
    assert main(["train", "toy", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "nothing to resume")


def test_a_recipe_module_that_fails_to_import_fails_loudly(monkeypatch):
    """A broken install is an error to see, not a recipe silently missing from --list."""
    from zeroformer import recipes

    monkeypatch.setattr(recipes, "MODULES", recipes.MODULES + ("no_such_recipe_module",))
    monkeypatch.setattr(recipes, "_REGISTRY", None)
    with pytest.raises(ModuleNotFoundError, match="no_such_recipe_module"):
        recipes.all_recipes()
