"""Tokenizer speed, ours vs the reference libraries, in one process, alternating.

1. GPT-2 encode throughput on the Shakespeare corpus (5 MB): ours (zeroformer BPE read from
   gpt2.tiktoken; its per-piece cache cleared before every run) vs tiktoken's `encode_ordinary`
   (built offline from the same file). Also checks the ids are identical.
2. Training an 8k byte-level BPE vocabulary on the same corpus: ours vs HF `tokenizers`
   BpeTrainer (ByteLevel pre-tokenizer, same vocab size, same special token). One untimed run of
   each first (warm-up), then --train-repeat timed runs alternating ours/HF (who goes first
   alternates too); the median of each.

    .venv/bin/python benchmarks/bench_tokenizers.py [--repeat 3] [--train-repeat 3] [--threads 1]
                                                    [--skip-train] [--chars N]

Threads are pinned before `tokenizers` is imported: RAYON_NUM_THREADS=--threads (HF's trainer and
encoder are rayon-parallel; TOKENIZERS_PARALLELISM=false when --threads is 1). Ours and tiktoken's
single-text encode are single-threaded. Each line prints the threads each side actually kept
busy, as `cpu/wall`: the process' CPU time / wall time over its runs (about 1.0 for one thread on
an idle machine; less when other jobs take the cores, more when it runs several threads).

Needs `zeroformer data fetch shakespeare gpt2-tokenizer`. Prints both numbers and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time


def clock(fn):
    """-> (wall seconds, cpu seconds of the whole process, fn's result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t, _, out = clock(fn)
        times.append(t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="encode runs per side (best of)")
    ap.add_argument("--train-repeat", type=int, default=3, help="timed training runs per side (median)")
    ap.add_argument("--threads", type=int, default=1, help="rayon threads for HF tokenizers")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--chars", type=int, default=None, help="use only the corpus' first N characters")
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)   # before `tokenizers` is imported
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"

    import tiktoken

    from zeroformer.data import fetch
    from zeroformer.tokenizers import load_tokenizer
    from zeroformer.tokenizers.bpe import GPT2_PATTERN, BPETokenizer

    text = (fetch("shakespeare") / "input.txt").read_text(encoding="utf-8")[:args.chars]
    mb = len(text.encode("utf-8")) / 1e6
    path = fetch("gpt2-tokenizer") / "gpt2.tiktoken"
    ours = load_tokenizer(path)
    ranks = {base64.b64decode(a): int(b) for a, b in (ln.split() for ln in path.read_bytes().splitlines() if ln)}
    ref = tiktoken.Encoding(name="gpt2-bench", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})

    def run_ours():
        ours._cache.clear()  # cold cache every run: no credit for having seen the text before
        return ours.encode_ordinary(text)

    enc = {"ours": run_ours, "tiktoken": lambda: ref.encode_ordinary(text)}
    wall, cpu, ids = {k: [] for k in enc}, {k: [] for k in enc}, {}
    for r in range(args.repeat):  # alternate (and who goes first) so both see the same load
        for k in (("ours", "tiktoken") if r % 2 == 0 else ("tiktoken", "ours")):
            w, c, ids[k] = clock(enc[k])
            wall[k].append(w)
            cpu[k].append(c)
    ids_ref = ids["tiktoken"]
    assert ids["ours"] == ids_ref, "ids differ from tiktoken"
    warm, _ = best_of(lambda: ours.encode_ordinary(text), args.repeat)
    a, b = min(wall["ours"]), min(wall["tiktoken"])
    busy = {k: sum(cpu[k]) / sum(wall[k]) for k in enc}
    print(f"corpus: Shakespeare {mb:.2f} MB, {len(ids_ref):,} GPT-2 tokens (ids identical); "
          f"best of {args.repeat} alternating runs")
    print(f"encode  ours (cold cache) {mb / a:6.2f} MB/s ({a:.3f}s, {busy['ours']:.2f} cpu/wall)   "
          f"tiktoken {mb / b:6.2f} MB/s ({b:.3f}s, {busy['tiktoken']:.2f} cpu/wall)   "
          f"ours/tiktoken throughput = {b / a:.2f}")
    print(f"encode  ours (warm cache) {mb / warm:6.2f} MB/s ({warm:.3f}s)   ours/tiktoken = {b / warm:.2f}")

    if args.skip_train:
        return
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    def run_hf():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tr = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=["<|endoftext|>"],
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator([text], tr)
        return tok

    def run_ours_train():
        return BPETokenizer.train(text, args.vocab_size)

    trained, hf = run_ours_train(), run_hf()                       # warm-up
    sides = {"ours": run_ours_train, "HF": run_hf}
    wall, cpu = {k: [] for k in sides}, {k: [] for k in sides}
    for r in range(args.train_repeat):                             # alternate, and who goes first
        for k in (("ours", "HF") if r % 2 == 0 else ("HF", "ours")):
            w, c, _ = clock(sides[k])
            wall[k].append(w)
            cpu[k].append(c)
    t_ours, t_hf = statistics.median(wall["ours"]), statistics.median(wall["HF"])
    used = {k: sum(cpu[k]) / sum(wall[k]) for k in sides}
    print(f"train {args.vocab_size} BPE, median of {args.train_repeat} alternating runs after a "
          f"warm-up: ours {t_ours:.2f}s ({trained.vocab_size} tokens, {used['ours']:.2f} "
          f"cpu/wall)   HF tokenizers {t_hf:.2f}s ({hf.get_vocab_size()} tokens, RAYON_NUM_THREADS="
          f"{args.threads}, {used['HF']:.2f} cpu/wall)   ours/HF time = {t_ours / t_hf:.2f}")


if __name__ == "__main__":
    main()
