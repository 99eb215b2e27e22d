"""Fault injection: a single-process run SIGKILLed at seeded random moments, several of them inside
a checkpoint write, resumes every time and ends with the weights of a run never interrupted.

Two kinds of kill, drawn from `random.Random(seed)`:
- "time": SIGKILL from outside once the run has logged step k, after a random delay (anywhere in
  the training loop, checkpoint writes included);
- a named point of the checkpoint write (zeroformer/io/checkpoint.py FAULT_POINTS, through its
  ZEROFORMER_TEST_KILL=POINT@STEP hook): mid-write (in the hidden temporary folder),
  before-rename, before-latest (new folder in place, latest.json still at the previous one),
  before-prune.
Each kill is planned at a later step than the one before; one whose step a late "time" kill has
already checkpointed (the pipe can lag behind the run) moves to the next reachable step, so every
kill lands. SIGTERM's resumable checkpoint is tests/test_preempt.py's.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_resume import assert_same_checkpoint
from zeroformer.cli import main
from zeroformer.io import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVE = 3  # checkpoint every SAVE steps


def _args(out, steps):
    return ["train", "toy", "--out", str(out), "--max-steps", str(steps), "--save-every",
            str(SAVE), "--log_every=1", "--eval_every=5", "--progress=false", "--device=cpu",
            "--dtype=fp32", "--keep_checkpoints=2"]


def plan(n_kills: int, seed: int) -> list[tuple[str, int]]:
    """`n_kills` (where, step) faults at strictly increasing steps: a third "time", the rest at
    the write points in a shuffled cycle (4 or more write kills reach every point)."""
    rng = random.Random(seed)
    points = rng.sample(ckpt.FAULT_POINTS, len(ckpt.FAULT_POINTS))
    n_time = max(1, n_kills // 3)
    kinds = ["time"] * n_time + [points[k % len(points)] for k in range(n_kills - n_time)]
    rng.shuffle(kinds)
    faults, step = [], SAVE
    for where in kinds:
        if where == "time":
            step += rng.randint(1, 3)
        else:  # inside a checkpoint write: the step must be a checkpoint's
            step = (step // SAVE + rng.randint(1, 2)) * SAVE
        faults.append((where, step))
    return faults


def run_killed(out, steps, where, step, rng):
    """One process of the run (resuming when there is a checkpoint), killed by the fault."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    env.pop("ZEROFORMER_TEST_KILL", None)
    if where != "time":
        env["ZEROFORMER_TEST_KILL"] = f"{where}@{step}"
    resume = ["--resume"] if (out / ckpt.LATEST_FILE).exists() else []
    p = subprocess.Popen([sys.executable, "-m", "zeroformer", *_args(out, steps), *resume],
                         env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        if where == "time":
            for line in p.stderr:
                seen.append(line)
                if line.startswith(f"step {step:6d} |"):
                    time.sleep(rng.uniform(0.0, 0.05))  # somewhere in the next step or its save
                    p.send_signal(signal.SIGKILL)
                    break
        seen.append(p.communicate(timeout=300)[1])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL, (where, step, "".join(seen)[-3000:])


def kill_and_resume(tmp_path, n_kills, seed):
    faults = plan(n_kills, seed)
    steps = faults[-1][1] + 3 * SAVE + 1  # room for late kills; ends off a checkpoint boundary
    rng = random.Random(seed + 1)
    out = tmp_path / "killed"
    for where, step in faults:
        folder = ckpt.resumable_checkpoint(out)  # what a kill leaves is resumable (or nothing)
        done = ckpt.load_trainer_state(folder)[0]["step"] if folder else 0
        if step <= done:  # a "time" kill that landed late: the run got past the planned step
            step = done + 1 if where == "time" else (done // SAVE + 1) * SAVE
        assert step < steps
        run_killed(out, steps, where, step, rng)
    assert main(_args(out, steps) + ["--resume"]) == 0  # the last resume runs to the end
    ref = tmp_path / "ref"  # the uninterrupted run, in-process with the same single thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(ref, steps)) == 0
    finally:
        torch.set_num_threads(threads)
    last = ckpt.step_dirname(steps)
    assert_same_checkpoint(ref / last, out / last)
    assert not list(out.glob(".step-*")), "a killed write's temporary folder was left behind"
    return faults


def test_plan_puts_kills_inside_checkpoint_writes():
    """The plans below: kills at random times and at 3 (4 kills) or all 4 (10) write points."""
    for n, seed, points in ((4, 1, 3), (10, 7, 4)):
        kinds = [where for where, _ in plan(n, seed)]
        assert "time" in kinds and len(set(kinds) & set(ckpt.FAULT_POINTS)) == points, kinds


def test_four_kills_then_resume_equals_uninterrupted(tmp_path):
    kill_and_resume(tmp_path, 4, seed=1)


@pytest.mark.slow
def test_ten_kills_then_resume_equals_uninterrupted(tmp_path):
    kill_and_resume(tmp_path, 10, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("point", ckpt.FAULT_POINTS)
def test_each_write_point_kill_is_resumable(tmp_path, point):
    """The hook fires where it says: the state each point leaves behind."""
    out = tmp_path / "run"
    run_killed(out, 12, point, 6, random.Random(0))
    latest = ckpt.latest_checkpoint(out)
    expected = 6 if point == "before-prune" else 3
    assert latest.name == ckpt.step_dirname(expected)
    ckpt.check_resumable(latest)
    assert (out / ckpt.step_dirname(6)).is_dir() == (point in ("before-latest", "before-prune"))
    assert bool(list(out.glob(".step-*"))) == (point in ("mid-write", "before-rename"))
