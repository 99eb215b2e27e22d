"""Training throughput: 1 process x 2 threads vs 2 processes x 1 thread (DDP, gloo), side by side.

The same command, `zeroformer train shakespeare-char` (4 layers, d_model 128, context 128,
batch 16 global rows), run twice: once as one process with OMP_NUM_THREADS=2, once with
`--nproc 2` (torchrun, each rank 8 rows, OMP_NUM_THREADS=1). Throughput is tokens per second of
optimizer steps after the first `--warmup` steps (from the `time_s` of rank 0's log entries:
process start-up, data loading and the final checkpoint are not counted). Both runs compute the
same training (docs/distributed.md), so this is the price or gain of splitting the cores between
processes instead of threads; a third row, 1 process x 1 thread, shows what one core does alone,
and a fourth the same 2 processes with `--fsdp` (FSDP2: every block's weights all-gathered
around its forward and backward, gradients reduce-scattered: more messages than DDP's one
all-reduce, for 1/N of the weight, gradient and AdamW memory).
On a machine other work shares, 2 OpenMP threads spin-wait on each other (tests/conftest.py):
say what else ran when you quote a figure. Needs `zeroformer data fetch shakespeare`.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 40] [--warmup 10] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(out: Path, nproc: int, threads: int, args, fsdp: bool = False) -> float:
    """Train; tokens/s between the end of step `warmup` and the last step (rank 0's clock)."""
    cmd = [sys.executable, "-m", "zeroformer", "train", "shakespeare-char", "--out", str(out),
           "--max-steps", str(args.steps), "--save-every", "0", "--log_every=1", "--eval_every=0",
           "--eval_steps=1", "--progress=false", "--device=cpu", f"--batch_size={args.batch}",
           "--dropout=0.0"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)] + ["--fsdp"] * fsdp
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_ddp: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    latest = json.loads((out / "latest.json").read_text())
    state = json.loads((out / latest["path"] / "trainer_state.json").read_text())
    times = {e["step"]: e["time_s"] for e in state["log"] if "time_s" in e}
    steps = args.steps - args.warmup
    return steps * args.batch * 128 / (times[args.steps] - times[args.warmup])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10, help="steps not timed")
    ap.add_argument("--batch", type=int, default=16, help="global rows per step (even)")
    args = ap.parse_args(argv)
    if not 0 < args.warmup < args.steps:
        ap.error("need 0 < --warmup < --steps")
    with tempfile.TemporaryDirectory() as d:
        one = run(Path(d) / "one", 1, 2, args)
        two = run(Path(d) / "two", 2, 1, args)
        single = run(Path(d) / "single", 1, 1, args)
        sharded = run(Path(d) / "fsdp", 2, 1, args, fsdp=True)
    print(f"shakespeare-char training, batch {args.batch} x 128 tokens, steps "
          f"{args.warmup + 1}-{args.steps} timed, cpu")
    print(f"{'setting':<30}{'tokens/s':>10}{'ratio':>8}")
    print(f"{'1 process  x 2 threads':<30}{one:>10,.0f}{1.0:>8.2f}")
    print(f"{'2 processes x 1 thread (DDP)':<30}{two:>10,.0f}{two / one:>8.2f}")
    print(f"{'(1 process  x 1 thread)':<30}{single:>10,.0f}{single / one:>8.2f}")
    print(f"{'2 processes x 1 thread (FSDP)':<30}{sharded:>10,.0f}{sharded / one:>8.2f}")


if __name__ == "__main__":
    main()
