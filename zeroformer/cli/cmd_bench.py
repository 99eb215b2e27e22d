"""`zeroformer bench [NAME] [ARGS...]`: list or run the side-by-side benchmarks in `benchmarks/`.

Each benchmark runs ours and the reference library in one process, alternating, and prints both
figures and their ratio. They live in the source tree (`benchmarks/*.py`), not in the wheel.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from ..errors import UserError


def bench_dir() -> Path | None:
    for d in (Path.cwd() / "benchmarks", Path(__file__).resolve().parents[2] / "benchmarks"):
        if d.is_dir():
            return d
    return None


def register(sub):
    p = sub.add_parser("bench", help="run a side-by-side benchmark from benchmarks/")
    p.add_argument("name", nargs="?", help="benchmark name (omit to list them)")
    p.add_argument("args", nargs="...", help="arguments passed to the benchmark")
    p.set_defaults(func=run)


def run(args):
    d = bench_dir()
    if d is None:
        raise UserError("no benchmarks/ folder found (run from a zeroformer source checkout)")
    scripts = {f.stem.removeprefix("bench_"): f for f in sorted(d.glob("bench_*.py"))}
    if not args.name:
        for name, f in scripts.items():
            doc = (f.read_text().split('"""')[1].strip().splitlines() or [""])[0] \
                if '"""' in f.read_text() else ""
            print(f"{name:20s} {doc}")
        return 0
    if args.name not in scripts:
        raise UserError(f"unknown benchmark {args.name!r}; known: {', '.join(scripts)}")
    sys.argv = [str(scripts[args.name]), *args.args]
    runpy.run_path(str(scripts[args.name]), run_name="__main__")
    return 0
