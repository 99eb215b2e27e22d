"""Exact resume: a run interrupted (in-process, or by SIGKILL) and resumed ends bit-identical."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from zeroformer import recipes
from zeroformer.cli import main
from zeroformer.io import checkpoint as ckpt
from zeroformer.train import Trainer
from zeroformer.train.trainer import seed_everything


def make(max_steps=6, **over):
    recipe = recipes.get("toy")
    mcfg = recipe.model_config(dropout=0.2)  # dropout > 0: the torch RNG state matters
    tcfg = recipe.train_config(max_steps=max_steps, grad_accum=2, save_every=3, eval_every=2,
                               log_every=1, progress=False, device="cpu", **over)
    seed_everything(tcfg.seed)
    return recipe.build(mcfg, tcfg), tcfg


class Interrupted(Exception):
    pass


def run_interrupted(out, stop_step=4):
    """Train, 'crash' when step `stop_step` asks for its first batch, then resume to the end."""
    task, cfg = make()
    original = task.train_batch

    def crashing(index):
        if index >= (stop_step - 1) * cfg.grad_accum:
            raise Interrupted
        return original(index)

    task.train_batch = crashing
    with pytest.raises(Interrupted):
        Trainer(task, cfg, out).fit()
    assert ckpt.latest_checkpoint(out).name == "step-00000003"
    torch.manual_seed(999)  # a fresh process would be in another RNG state: resume must restore
    task2, cfg2 = make()
    with torch.no_grad():  # and its freshly built weights must not matter
        for p in task2.model.parameters():
            p.add_(0.5)
    trainer = Trainer(task2, cfg2, out)
    trainer.fit(resume=True)
    return trainer


def test_resumed_run_equals_uninterrupted(tmp_path):
    task, cfg = make()
    full = Trainer(task, cfg, tmp_path / "full")
    full.fit()
    resumed = run_interrupted(tmp_path / "resumed")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for pid in oa:
        for name in oa[pid]:
            assert torch.equal(oa[pid][name], ob[pid][name]), (pid, name)
    # the log of the resumed run equals the uninterrupted one, step for step
    assert full.log == [{**e, "time_s": f["time_s"]} if "time_s" in e else e
                        for e, f in zip(resumed.log, full.log)]


def test_rng_state_is_what_makes_it_exact(tmp_path, monkeypatch):
    """Sanity check of the test above: without restoring the torch RNG, dropout differs."""
    task, cfg = make()
    full = Trainer(task, cfg, tmp_path / "full")
    full.fit()
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    resumed = run_interrupted(tmp_path / "resumed")
    assert any(not torch.equal(v, resumed.model.state_dict()[k])
               for k, v in full.model.state_dict().items())


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "zeroformer", "train", "toy", "--out", str(out),
            "--max-steps", "30", "--save-every", "3", "--progress=false", "--device=cpu", *extra]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (killed / "latest.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = ckpt.latest_checkpoint(killed).name
    assert step_at_kill != "step-00000030", "the run finished before it was killed"

    r = subprocess.run(_train_cmd(killed, "--resume"), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    full = tmp_path / "full"  # the uninterrupted run, in-process (same single-thread kernels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_train_cmd(full)[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(str(full / "step-00000030" / name))
        b = load_file(str(killed / "step-00000030" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k, step_at_kill)
