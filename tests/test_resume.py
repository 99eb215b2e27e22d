"""Exact resume: a run interrupted (in-process, by SIGKILL, or by SIGKILL inside a checkpoint
write) and resumed ends bit-identical, in fp32 and under bf16 autocast; a damaged checkpoint falls
back to the newest whole one, and a damaged latest.json is one `zeroformer: error:` line."""

import json
import os
import shutil
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


def run_interrupted(out, stop_step=4, **over):
    """Train, 'crash' when step `stop_step` asks for its first batch, then resume to the end."""
    task, cfg = make(**over)
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
    task2, cfg2 = make(**over)
    with torch.no_grad():  # and its freshly built weights must not matter
        for p in task2.model.parameters():
            p.add_(0.5)
    trainer = Trainer(task2, cfg2, out)
    trainer.fit(resume=True)
    return trainer


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_resumed_run_equals_uninterrupted(tmp_path, dtype):
    task, cfg = make(dtype=dtype)
    full = Trainer(task, cfg, tmp_path / "full")
    full.fit()
    resumed = run_interrupted(tmp_path / "resumed", dtype=dtype)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for pid in oa:
        for name in oa[pid]:
            assert torch.equal(oa[pid][name], ob[pid][name]), (pid, name)
    # the log of the resumed run equals the uninterrupted one, step for step (times aside)
    assert len(full.log) == len(resumed.log)
    assert _untimed(full.log) == _untimed(resumed.log)


def _untimed(log):
    return [{k: v for k, v in e.items() if k != "time_s"} for e in log]


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


def assert_same_checkpoint(a, b):
    """Model, optimizer and RNG tensors bit-identical; the training logs equal but for times."""
    for name in ("model.safetensors", "optimizer.safetensors", "trainer_state.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
    la, lb = (json.loads((x / "trainer_state.json").read_text())["log"] for x in (a, b))
    assert len(la) == len(lb) and _untimed(la) == _untimed(lb)


# A real SIGKILL at the one moment the design must survive: the new step folder has been renamed
# into place, latest.json still names the previous checkpoint.
_KILL_BEFORE_LATEST = """
import os, signal, sys
from zeroformer.io import checkpoint as c
write = c.write_json_atomic
def write_or_die(path, obj):
    if path.name == c.LATEST_FILE and obj["step"] == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, obj)
c.write_json_atomic = write_or_die
from zeroformer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _toy9(out, *extra):
    return ["train", "toy", "--out", str(out), "--max-steps", "9", "--save-every", "3",
            "--progress=false", "--device=cpu", *extra]


@pytest.fixture(scope="module")
def full9(tmp_path_factory):
    """The uninterrupted 9-step run (checkpoints 3, 6, 9 all kept)."""
    out = tmp_path_factory.mktemp("full9") / "run"
    assert main(_toy9(out, "--keep_checkpoints=3")) == 0
    return out


def test_kill_after_folder_rename_before_latest_json(tmp_path, full9):
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT_STEP": "6"}
    r = subprocess.run([sys.executable, "-c", _KILL_BEFORE_LATEST, *_toy9(killed)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    # the state such a kill leaves: step-6 complete, latest.json still at step 3
    assert json.loads((killed / "latest.json").read_text())["step"] == 3
    ckpt.check_resumable(killed / "step-00000006")
    assert main(_toy9(killed, "--resume")) == 0  # continues from step 3, rewrites step 6
    assert ckpt.latest_checkpoint(killed).name == "step-00000009"
    assert not list(killed.glob(".step-*"))
    assert_same_checkpoint(full9 / "step-00000009", killed / "step-00000009")


def _killed_after_step6(full9, out):
    """The on-disk state of the 9-step run killed during step 7 or 8: step-3 and step-6,
    latest.json naming step 6 (built from the uninterrupted run's own checkpoints)."""
    out.mkdir()
    for step in (3, 6):
        shutil.copytree(full9 / ckpt.step_dirname(step), out / ckpt.step_dirname(step))
    ckpt.write_json_atomic(out / "latest.json", {"step": 6, "path": "step-00000006"})
    return out


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _bad_header(path):
    with open(path, "r+b") as f:  # the JSON header after the 8-byte length: no longer JSON
        f.seek(8)
        f.write(b"#" * 16)


def _no_optimizer_metadata(path):
    from safetensors.torch import save_file
    save_file(load_file(str(path)), str(path))  # whole tensors, the param groups are gone


def _nan_weight(path):
    from safetensors.torch import save_file
    tensors = load_file(str(path))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")   # a whole file, one value gone bad
    save_file(tensors, str(path))


@pytest.mark.parametrize("name, damage", [
    ("model.safetensors", _truncate),
    ("model.safetensors", _nan_weight),
    ("model.safetensors", _bad_header),
    ("optimizer.safetensors", _truncate),
    ("optimizer.safetensors", _no_optimizer_metadata),
    ("trainer_state.safetensors", _truncate),
    ("trainer_state.json", lambda p: p.write_text('{"step": 6, "lo')),
], ids=["model-truncated", "model-nan", "model-header", "optimizer-truncated", "optimizer-metadata",
        "rng-truncated", "state-json"])
def test_damaged_checkpoint_falls_back_to_the_newest_whole_one(tmp_path, full9, capsys, name,
                                                               damage):
    """A damaged file in the checkpoint latest.json names (our writes never leave one: a disk
    fault or a cut copy) -> resume from the previous whole checkpoint, with one warning; the run
    still ends bit-identical, it only repeats steps 4-6."""
    out = _killed_after_step6(full9, tmp_path / "run")
    damage(out / "step-00000006" / name)
    capsys.readouterr()
    assert main(_toy9(out, "--resume")) == 0
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: warning:") and name in err, err
    assert "resuming from step-00000003" in err and "Traceback" not in err
    assert_same_checkpoint(full9 / "step-00000009", out / "step-00000009")


def test_no_whole_checkpoint_is_one_error_line(tmp_path, full9, capsys):
    out = _killed_after_step6(full9, tmp_path / "run")
    _truncate(out / "step-00000006" / "model.safetensors")
    _truncate(out / "step-00000003" / "optimizer.safetensors")
    capsys.readouterr()
    assert main(_toy9(out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error: cannot resume:") and err.count("\n") == 1, err
    assert "step-00000006/model.safetensors" in err and "no older complete checkpoint" in err


def test_damaged_latest_json_is_one_error_line(tmp_path, full9, capsys):
    """latest.json is written atomically (temp file, fsync, rename): a damaged one was damaged
    from outside, and which checkpoint the run had committed is then unknown: we do not guess."""
    out = _killed_after_step6(full9, tmp_path / "run")
    (out / "latest.json").write_text('{"step": 6, "path": "step-000')
    capsys.readouterr()
    assert main(_toy9(out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and err.count("\n") == 1, err
    assert "latest.json: unreadable" in err and "Traceback" not in err
