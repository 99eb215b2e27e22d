"""The wall-clock budget (zeroformer/train/budget.py) and checkpoint averaging
(io/checkpoint.py:average_checkpoints, TrainConfig.average_last): a budgeted run stops by the
clock and still evaluates; measuring the step time changes nothing in training; the plan is saved
so resume stays exact; averaged weights are the mean of the checkpoints' weights (numpy's mean of
the files, read with safetensors' own reader)."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from zeroformer import recipes
from zeroformer.cli import main
from zeroformer.errors import UserError
from zeroformer.io import checkpoint as ckpt
from zeroformer.train import TrainConfig, Trainer, budget
from zeroformer.train.budget import Plan, make_plan
from zeroformer.train.schedules import lr_at
from zeroformer.train.trainer import seed_everything


def toy(**over):
    recipe = recipes.get("toy")
    mcfg = recipe.model_config(dropout=0.2)  # dropout > 0: the torch RNG state matters
    tcfg = recipe.train_config(**{"progress": False, "device": "cpu", "log_every": 1,
                                  "eval_every": 0, "save_every": 0, **over})
    seed_everything(tcfg.seed)
    return recipe.build(mcfg, tcfg), tcfg


# -- the plan ------------------------------------------------------------------------------------
def test_plan_formulas():
    p = make_plan(100.0, 0.5, 1.0, max_steps=1000, warmup_steps=100)
    assert (p.steps, p.warmup) == (198, 20)    # floor(99 / 0.5); 100 x 198 / 1000 rounded
    p = make_plan(100.0, 0.01, 0.0, max_steps=1000, warmup_steps=100)
    assert (p.steps, p.warmup) == (10000, 100)  # more steps than planned: the warmup stays
    p = make_plan(1.0, 5.0, 0.0, max_steps=1000, warmup_steps=100, min_warmup=1)
    assert (p.steps, p.warmup) == (1, 1)
    assert Plan.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("schedule", ["noam", "cosine"])
def test_a_shrunk_warmup_keeps_the_peak_learning_rate(schedule):
    """noam's peak factor * (d * warmup)^-0.5 would triple with a 10x shorter warmup; the plan
    keeps the recipe's peak (and cosine's peak is lr whatever the warmup)."""
    cfg = TrainConfig(schedule=schedule, max_steps=2000, warmup_steps=300, noam_factor=0.5,
                      lr=2e-3, min_lr=1e-4)
    plan = make_plan(60.0, 0.2, 0.0, cfg.max_steps, cfg.warmup_steps, min_warmup=1)
    assert (plan.steps, plan.warmup) == (300, 45)
    run = budget.scheduled_config(cfg, plan)
    assert (run.max_steps, run.warmup_steps) == (300, 45)
    peak = 0.5 * 128 ** -0.5 * 300 ** -0.5 if schedule == "noam" else 2e-3
    assert lr_at(300, cfg, 128) == pytest.approx(peak)          # the recipe's peak ...
    assert lr_at(45, run, 128) == pytest.approx(peak)           # ... reached at the new warmup
    assert max(lr_at(t, run, 128) for t in range(1, 301)) == pytest.approx(peak)
    if schedule == "cosine":
        assert lr_at(300, run, 128) == pytest.approx(1e-4)      # min_lr at the planned end


def test_time_budget_stops_by_the_clock_and_still_evaluates(tmp_path, monkeypatch):
    """A step-time estimate far too small plans ~3,000,000 steps: only the clock can stop it."""
    monkeypatch.setattr(budget, "calibrate", lambda trainer: 1e-6)
    task, cfg = toy(time_budget=3.0, max_steps=60)
    ended = []
    task.on_end = lambda model: ended.append(True)
    result = Trainer(task, cfg, tmp_path / "run").fit()
    plan = result["budget"]
    assert plan["steps"] > 2_000_000 and 0 < result["step"] < plan["steps"]
    assert result["stopped"] is None and ended == [True]
    assert result["log"][-1]["step"] == result["step"] and "val_loss" in result["log"][-1]
    state = json.loads((result["checkpoint"] / "trainer_state.json").read_text())
    assert state["step"] == result["step"] and state["budget"]["used_s"] >= 3.0
    assert plan["warmup"] == 5   # the toy's 5 warmup steps (of 60): more steps keep it


def test_time_budget_cli_measures_and_evaluates(tmp_path, capsys):
    rc = main(["train", "toy", "--out", str(tmp_path / "run"), "--time-budget", "3s",
               "--progress=false", "--device=cpu", "--eval_every=0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "time budget 3 s: a step takes" in err and "steps planned" in err
    assert "time budget: stopped after step" in err and "done: step" in err
    assert "val_loss" in err.split("done:")[1]
    state = json.loads((ckpt.latest_checkpoint(tmp_path / "run") / "trainer_state.json").read_text())
    assert state["budget"]["seconds"] == 3.0 and state["train_config"]["time_budget"] == 3.0
    rc = main(["train", "toy", "--out", str(tmp_path / "r2"), "--time-budget", "3s",
               "--max-steps", "5"])
    assert rc == 2 and "not both" in capsys.readouterr().err
    rc = main(["train", "toy", "--out", str(tmp_path / "r3"), "--time-budget", "soon"])
    assert rc == 2 and "expected a duration" in capsys.readouterr().err


def test_calibration_does_not_change_training(tmp_path, monkeypatch):
    """The timed passes run for real (forward + backward on the first batches, dropout on) but
    a run planned to 6 steps / warmup 2 ends with the weights of a plain 6-step, warmup-2 run."""
    monkeypatch.setattr(budget, "make_plan", lambda *a, **k: Plan(3600.0, 6, 2, 0.01))
    task, cfg = toy(time_budget=3600.0, grad_accum=2)
    budgeted = Trainer(task, cfg)
    budgeted.fit()
    task, cfg = toy(max_steps=6, warmup_steps=2, grad_accum=2)
    plain = Trainer(task, cfg)
    plain.fit()
    assert budgeted.step == plain.step == 6
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, budgeted.model.state_dict()[k]), k


class Interrupted(Exception):
    pass


def test_budgeted_resume_is_exact(tmp_path, monkeypatch):
    """The plan (steps, warmup) is saved: a run crashed at step 5 and resumed (where timing
    again would give another plan) ends bit-identical to the uninterrupted one."""
    monkeypatch.setattr(budget, "calibrate", lambda trainer: 5.0)  # 3600 s / 5 s: 719 steps
    over = dict(time_budget=3600.0, max_steps=2000, warmup_steps=20, save_every=2)
    task, cfg = toy(**over)
    full = Trainer(task, cfg, tmp_path / "full")
    monkeypatch.setattr(budget, "make_plan", lambda *a, **k: Plan(3600.0, 9, 3, 5.0))
    full.fit()
    task, cfg = toy(**over)
    original = task.train_batch

    def crashing(index):
        if index >= 4:
            raise Interrupted
        return original(index)

    task.train_batch = crashing
    with pytest.raises(Interrupted):
        Trainer(task, cfg, tmp_path / "resumed").fit()
    monkeypatch.setattr(budget, "make_plan", lambda *a, **k: Plan(3600.0, 50, 10, 0.1))
    task, cfg = toy(**over)
    resumed = Trainer(task, cfg, tmp_path / "resumed")
    resumed.fit(resume=True)
    assert resumed.plan.steps == 9 and resumed.plan.warmup == 3 and resumed.step == 9
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [e.get("lr") for e in full.log] == [e.get("lr") for e in resumed.log]


# -- cooldown ------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["noam", "constant", "cosine"])
def test_cooldown_is_a_linear_tail_on_any_schedule(schedule):
    cfg = TrainConfig(schedule=schedule, max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    cool = TrainConfig(**{**cfg.to_dict(), "cooldown": 0.2})     # S = 100 - 20 = 80
    base = [lr_at(t, cfg, 128) for t in range(1, 101)]
    tail = [lr_at(t, cool, 128) for t in range(1, 101)]
    assert tail[:80] == base[:80]
    for t in range(81, 101):
        assert tail[t - 1] == pytest.approx(base[t - 1] * (101 - t) / 21)
    assert lr_at(95, cool, 128, start=90) == pytest.approx(base[94] * 6 / 11)  # a re-planned S
    for bad in (1.0, -0.1):
        with pytest.raises(UserError, match="cooldown"):
            TrainConfig(cooldown=bad)


class FakeTime:
    """budget.py's clock: each training batch drawn takes `per_batch` seconds."""

    def __init__(self, per_batch):
        self.now, self.per_batch = 1000.0, per_batch

    def perf_counter(self):
        return self.now


def clocked_toy(fake, **over):
    task, cfg = toy(**over)
    draw = task.train_batch

    def timed(index):
        fake.now += fake.per_batch
        return draw(index)

    task.train_batch = timed
    return task, cfg


@pytest.mark.parametrize("per_step,start,end", [(2.0, 40, 50), (0.5, 80, 200)])
def test_budget_cooldown_replans_the_end(tmp_path, monkeypatch, capsys, per_step, start, end):
    """Calibration says 1 s a step (100 steps in 100 s, cooldown from step 80). Steps of 2 s:
    at 80 s (step 40) the end is planned again, 40 + 20 s / 2 s = 50. Steps of 0.5 s: step 80
    comes first (40 s), 80 + 60 s / 0.5 s = 200. The lr decays from there to the end, where the
    clock stops the run; a resume after the re-plan is exact."""
    fake = FakeTime(per_step)
    monkeypatch.setattr(budget, "time", fake)
    monkeypatch.setattr(budget, "calibrate", lambda trainer: 1.0)
    over = dict(time_budget=100.0, max_steps=60, warmup_steps=5, cooldown=0.2, save_every=2,
                schedule="constant", lr=1e-3, progress=False)
    task, cfg = clocked_toy(fake, **over)
    full = Trainer(task, cfg, tmp_path / "full")
    result = full.fit()
    assert (full.plan.cooldown_start, full.plan.steps, result["step"]) == (start, end, end)
    assert f"cooldown from step {start}, the end re-planned at step {end}" in \
        capsys.readouterr().err
    lrs = {e["step"]: e["lr"] for e in full.log if "lr" in e}
    n = end + 1 - start
    assert lrs[start] == pytest.approx(1e-3) and lrs[start + 1] == pytest.approx(1e-3 * (n - 1) / n)
    assert lrs[end] == pytest.approx(1e-3 / n)
    state = json.loads((result["checkpoint"] / "trainer_state.json").read_text())
    assert state["budget"]["cooldown_start"] == start and state["budget"]["steps"] == end

    fake.now = 1000.0
    task, cfg = clocked_toy(fake, **over)
    original = task.train_batch

    def crashing(index):
        if index >= start + 5:
            raise Interrupted
        return original(index)

    task.train_batch = crashing
    with pytest.raises(Interrupted):
        Trainer(task, cfg, tmp_path / "resumed").fit()
    task, cfg = clocked_toy(fake, **over)
    resumed = Trainer(task, cfg, tmp_path / "resumed")
    resumed.fit(resume=True)
    assert (resumed.plan.cooldown_start, resumed.plan.steps, resumed.step) == (start, end, end)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_a_damaged_cooldown_in_the_plan_is_refused():
    good = Plan(100.0, 50, 5, 1.0, 10.0, 40).to_dict()
    assert Plan.from_dict(good).cooldown_start == 40
    for bad in (60, -1, "x", 1e400):
        with pytest.raises(UserError, match="damaged time-budget plan"):
            Plan.from_dict({**good, "cooldown_start": bad})


# -- averaging -----------------------------------------------------------------------------------
def test_average_last_is_the_mean_of_the_checkpoints(tmp_path):
    task, cfg = toy(max_steps=5, save_every=1, keep_checkpoints=1, average_last=3)
    trainer = Trainer(task, cfg, tmp_path / "run")
    result = trainer.fit()
    kept = sorted(p.name for p in (tmp_path / "run").glob("step-*"))
    assert kept == ["step-00000003", "step-00000004", "step-00000005"]   # >= average_last kept
    files = [load_file(str(tmp_path / "run" / k / "model.safetensors")) for k in kept]
    averaged = load_file(str(tmp_path / "run" / "averaged" / "model.safetensors"))
    assert averaged.keys() == files[0].keys()
    for name, got in averaged.items():
        want = np.mean(np.stack([f[name] for f in files]).astype(np.float64), axis=0)
        assert got.dtype == files[0][name].dtype
        assert np.array_equal(got, want.astype(got.dtype)), name
    assert any(not np.array_equal(averaged[n], files[-1][n]) for n in averaged)
    # the model the run ends with (evaluated, handed to on_end) is the averaged one
    for name, v in trainer.model.state_dict().items():
        if name in averaged:
            assert np.array_equal(v.numpy(), averaged[name]), name
    entry = result["log"][-1]
    assert entry["averaged"] == [3, 4, 5] and "val_loss" in entry


def test_average_of_different_models_is_an_error(tmp_path):
    task, cfg = toy(max_steps=1)
    Trainer(task, cfg, tmp_path / "a").fit()
    recipe = recipes.get("toy")
    tcfg = recipe.train_config(max_steps=1, progress=False, device="cpu")
    Trainer(recipe.build(recipe.model_config(n_layer=1), tcfg), tcfg, tmp_path / "b").fit()
    with pytest.raises(UserError, match="different tensors"):
        ckpt.average_checkpoints([ckpt.latest_checkpoint(tmp_path / "a"),
                                  ckpt.latest_checkpoint(tmp_path / "b")])
