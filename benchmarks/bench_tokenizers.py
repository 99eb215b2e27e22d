"""Tokenizer speed, ours vs the reference libraries, in one process, alternating.

1. GPT-2 encode throughput on the Shakespeare corpus (5 MB): ours (zeroformer BPE read from
   gpt2.tiktoken; its per-piece cache cleared before every run) vs tiktoken's `encode_ordinary`
   (built offline from the same file). Also checks the ids are identical.
2. Training an 8k byte-level BPE vocabulary on the same corpus: ours vs HF `tokenizers`
   BpeTrainer (ByteLevel pre-tokenizer, same vocab size, same special token).

    .venv/bin/python benchmarks/bench_tokenizers.py [--repeat 3] [--skip-train]

Needs `zeroformer data fetch shakespeare gpt2-tokenizer`. Prints both numbers and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import time


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--vocab-size", type=int, default=8000)
    args = ap.parse_args()

    import tiktoken

    from zeroformer.data import fetch
    from zeroformer.tokenizers import load_tokenizer
    from zeroformer.tokenizers.bpe import GPT2_PATTERN, BPETokenizer

    text = (fetch("shakespeare") / "input.txt").read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    path = fetch("gpt2-tokenizer") / "gpt2.tiktoken"
    ours = load_tokenizer(path)
    ranks = {base64.b64decode(a): int(b) for a, b in (ln.split() for ln in path.read_bytes().splitlines() if ln)}
    ref = tiktoken.Encoding(name="gpt2-bench", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})

    def run_ours():
        ours._cache.clear()  # cold cache every run: no credit for having seen the text before
        return ours.encode_ordinary(text)

    t_ours, t_ref = [], []
    for _ in range(args.repeat):  # alternate so both see the same machine load
        a, ids_ours = best_of(run_ours, 1)
        b, ids_ref = best_of(lambda: ref.encode_ordinary(text), 1)
        t_ours.append(a)
        t_ref.append(b)
    assert ids_ours == ids_ref, "ids differ from tiktoken"
    warm, _ = best_of(lambda: ours.encode_ordinary(text), args.repeat)
    a, b = min(t_ours), min(t_ref)
    print(f"corpus: Shakespeare {mb:.2f} MB, {len(ids_ref):,} GPT-2 tokens (ids identical)")
    print(f"encode  ours (cold cache) {mb / a:6.2f} MB/s ({a:.3f}s)   tiktoken {mb / b:6.2f} MB/s "
          f"({b:.3f}s)   ours/tiktoken throughput = {b / a:.2f}")
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

    t_ours = time.perf_counter()
    trained = BPETokenizer.train(text, args.vocab_size)
    t_ours = time.perf_counter() - t_ours
    t_hf = time.perf_counter()
    hf = run_hf()
    t_hf = time.perf_counter() - t_hf
    print(f"train {args.vocab_size} BPE  ours {t_ours:.2f}s ({trained.vocab_size} tokens)   "
          f"HF tokenizers {t_hf:.2f}s ({hf.get_vocab_size()} tokens)   ours/HF time = {t_ours / t_hf:.2f}")


if __name__ == "__main__":
    main()
