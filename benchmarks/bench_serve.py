"""Load test of `zeroformer serve` (loopback only, a fixed number of requests, stops by itself).

Starts the server on a free port of 127.0.0.1 with SmolLM2 (the GGUF in ~/.cache/zeroformer/
smollm2, its default path: int4) and, for each concurrency c in 1, 4, 8, 16, sends `--requests`
streamed completions (different prompts, greedy, `--max-tokens` new tokens, ignore_eos) from c
client threads. Printed per c:
  ttft p50/p99     seconds from sending a request to its first streamed token
  total p50/p99    seconds from sending a request to its last chunk
  tok/s            every completion token / the wall time of the whole level (aggregate)
  x1               tok/s relative to c = 1 (the issue's aim: >= 2 at c = 8)
  dropped          requests that did not end with 200 and [DONE] (must be 0)
Side by side: llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`) on the same
GGUF and the same load, skipped with the reason when llama_cpp is not installed.

Measured 2026-11-30, 2-core Zen 4, quiet machine, --threads 1, 16
requests of 32 tokens per level, SmolLM2-135M Q4_1 (int4 path), loopback:
    c   ttft p50/p99   total p50/p99   tok/s   x1     dropped
    1   0.04 / 0.06    0.86 / 0.92      37.8   1.00   0
    4   0.17 / 0.22    1.43 / 1.44      90.9   2.41   0
    8   0.35 / 0.38    2.17 / 2.23     111.8   2.96   0
   16   0.67 / 0.72    3.79 / 3.84     122.9   3.25   0
(an earlier run with another job on the machine: 40.7 / 98.9 / 89.6 / 103.6 tok/s.)
(llama.cpp's server: not installed here, skipped.) Scaling is bounded as in bench_batched.py (the
int4 matmuls grow about linearly with rows); a new request's prefill runs alone in the step, so
time to first token grows with the number of requests admitted before it.

    .venv/bin/python benchmarks/bench_serve.py [--model PATH] [--requests 16] [--max-tokens 32]
                                               [--concurrency 1,4,8,16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,",
           "The three laws of thermodynamics are", "def fibonacci(n):",
           "A good breakfast includes", "The quick brown fox", "In 1969, astronauts",
           "Water boils at"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, url, env, log):
    import httpx

    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited {proc.returncode}: {' '.join(cmd)}")
        for path in ("/health", "/v1/models"):
            try:
                if httpx.get(url + path, timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start in 300 s")


def one(client, url, model, prompt, max_tokens):
    """-> (ttft s, total s, completion tokens) or None when dropped."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens, done = None, 0, False
    try:
        with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return None
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if ttft is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                    ttft = time.perf_counter() - t0
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except Exception:
        return None
    if not done:
        return None
    return (ttft if ttft is not None else time.perf_counter() - t0), time.perf_counter() - t0, \
        tokens or max_tokens


def level(url, model, c, n, max_tokens):
    import httpx

    results, lock, todo = [], threading.Lock(), list(range(n))

    def worker():
        with httpx.Client(timeout=600) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                r = one(client, url, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                with lock:
                    results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r is not None]
    return ok, n - len(ok), wall


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))] if values else 0.0


def run_server(name, cmd, url, model, args, env, log):
    print(f"\n{name}: {' '.join(cmd[2:])}")
    proc = start(cmd, url, env, log)
    try:
        print(f"{'c':>3} {'ttft p50':>9} {'p99':>6} {'total p50':>10} {'p99':>6} {'tok/s':>7} "
              f"{'x1':>5} {'dropped':>7}")
        base = None
        for c in args.concurrency:
            level(url, model, 1, 1, 4)                                       # warm up
            ok, dropped, wall = level(url, model, c, args.requests, args.max_tokens)
            tps = sum(r[2] for r in ok) / wall
            base = base or tps
            print(f"{c:>3} {pct([r[0] for r in ok], .5):>9.2f} {pct([r[0] for r in ok], .99):>6.2f}"
                  f" {pct([r[1] for r in ok], .5):>10.2f} {pct([r[1] for r in ok], .99):>6.2f}"
                  f" {tps:>7.1f} {tps / base:>5.2f} {dropped:>7}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a GGUF (default: the fetched SmolLM2)")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-llama-cpp", action="store_true")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.model is None:
        from zeroformer import data

        path = data.locate("smollm2")
        if path is None:
            raise SystemExit("SmolLM2 not fetched: zeroformer data fetch smollm2")
        args.model = str(path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads))
    log = open(os.devnull, "wb")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_server("zeroformer serve", [sys.executable, "-m", "zeroformer", "serve", "--model",
                                    args.model, "--name", "m", "--port", str(port),
                                    "--max-batch", str(max(args.concurrency)), "--max-len", "512"],
               url, "m", args, env, log)
    if args.skip_llama_cpp:
        return
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as e:
        print(f"\nllama.cpp server: skipped ({e}; pip install 'llama-cpp-python[server]')")
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_server("llama.cpp server", [sys.executable, "-m", "llama_cpp.server", "--model",
                                    args.model, "--host", "127.0.0.1", "--port", str(port),
                                    "--n_threads", str(args.threads), "--n_ctx", "2048"],
               url, args.model, args, env, log)


if __name__ == "__main__":
    main()
