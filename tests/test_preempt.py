"""Preemption: SIGTERM finishes the step, writes a checkpoint, exits 0 with the command that
continues the run, and the continued run ends bit-identical to one never stopped; a second
signal ends the process at once; torchrun ranks (--nproc 2) stop after the same step."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from zeroformer.cli import main
from zeroformer.io import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# constant schedule: the number of steps does not change the arithmetic of the ones it runs
ARGS = ["--save-every", "1000000", "--schedule=constant", "--log_every=10", "--progress=false",
        "--device=cpu"]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


def rank_process(parent, rank):
    """The pid of the torchrun rank `rank` started below `parent` (read from /proc)."""
    from zeroformer.cli.cmd_train import _descendants

    for pid in _descendants(parent):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"LOCAL_RANK=" + str(rank).encode() in environ:
            return pid
    raise AssertionError(f"no rank {rank} below {parent}")


def train_then_signal(out, *extra, target=None):
    """Start a long run, send SIGTERM once it has logged a step (to the command, or to the
    process `target(pid)` names); (returncode, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "zeroformer", "train", "toy", "--out", str(out),
                          "--max-steps", "100000", *ARGS, *extra], env=env(),
                         stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in p.stderr:
            seen.append(line)
            if line.startswith("step "):
                os.kill(target(p.pid) if target else p.pid, signal.SIGTERM)
                break
        rest = p.communicate(timeout=240)[1]
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, "".join(seen) + rest


def weights(out):
    return load_file(str(ckpt.latest_checkpoint(out) / "model.safetensors"))


def test_sigterm_checkpoints_exits_0_and_the_run_continues_exactly(tmp_path):
    out = tmp_path / "run"
    rc, err = train_then_signal(out)
    assert rc == 0, err[-3000:]
    hint = [ln for ln in err.splitlines() if ln.startswith("stopped by SIGTERM after step")]
    assert len(hint) == 1, err[-3000:]
    stopped = int(ckpt.load_trainer_state(ckpt.latest_checkpoint(out))[0]["step"])
    assert f"after step {stopped};" in hint[0]
    assert 10 <= stopped < 100000
    words = hint[0].split("continue with: ")[1].split()
    assert words[:3] == ["zeroformer", "train", "toy"] and "--resume" in words
    # continue a few steps (max_steps may change on --resume), then one run that never stopped
    end = str(stopped + 4)
    assert main(["train", "toy", "--out", str(out), "--max-steps", end, "--resume", *ARGS]) == 0
    ref = tmp_path / "ref"
    assert main(["train", "toy", "--out", str(ref), "--max-steps", end, *ARGS]) == 0
    a, b = weights(out), weights(ref)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SECOND = """
import os, signal, sys, time
from zeroformer.train.preempt import GracefulStop
with GracefulStop() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)   # the same request twice (torchrun forwards): ignored
    time.sleep(0.2)
    print("alive", stop.received, flush=True)
    time.sleep(float(sys.argv[1]))
    os.kill(os.getpid(), signal.SIGTERM)   # a second request: the process ends here
    time.sleep(5)
    print("not stopped", flush=True)
"""


def test_a_second_signal_ends_the_process_at_once():
    p = subprocess.run([sys.executable, "-c", SECOND, "1.2"], env=env(), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == -signal.SIGTERM, (p.returncode, p.stderr[-2000:])
    assert p.stdout.split() == ["alive", "SIGTERM"]
    assert p.stderr.count("finishing this step") == 1


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="--nproc finds the ranks through /proc")
@pytest.mark.parametrize("to", ["command", "rank 1 alone"])
def test_sigterm_stops_both_ranks_after_the_same_step(tmp_path, to):
    """To the `zeroformer train --nproc 2` command (it forwards to the ranks), or to rank 1 only
    (one machine of many preempted): rank 0 learns it through the per-step all_reduce."""
    out = tmp_path / "run"
    target = (lambda pid: rank_process(pid, 1)) if to == "rank 1 alone" else None
    rc, err = train_then_signal(out, "--nproc", "2", "--dropout=0.0", target=target)
    assert rc == 0, err[-3000:]
    said = "SIGTERM" if target is None else "a signal to another rank"
    hint = [ln for ln in err.splitlines() if ln.startswith(f"stopped by {said} after step")]
    assert len(hint) == 1, err[-3000:]
    assert " --nproc 2 " in hint[0]
    stopped = int(ckpt.load_trainer_state(ckpt.latest_checkpoint(out))[0]["step"])
    assert f"after step {stopped};" in hint[0] and stopped < 100000
