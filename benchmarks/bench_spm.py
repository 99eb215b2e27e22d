"""SentencePiece encode speed, ours vs the `sentencepiece` library, in one process, alternating.

1. BPE: the Mistral/LLaMA tokenizer.model (``zeroformer data fetch llama-spm``);
2. unigram: a model the library trains on the first --train-chars of the corpus (--vocab-size).

Both encode the first --chars characters of the Shakespeare corpus (``zeroformer data fetch
shakespeare``) line by line (the way a data pipeline calls it), best of --repeat runs per side; our
BPE word cache is cleared before every run. The ids are checked identical. Prints chars/s of each
and the ratio (ours / library; < 1 means we are slower). Single-threaded on both sides.

    .venv/bin/python benchmarks/bench_spm.py [--chars 1000000] [--repeat 3] [--vocab-size 8000]
"""

from __future__ import annotations

import argparse
import io
import time


def best_of(fn, repeat, before=None):
    best, out = float("inf"), None
    for _ in range(repeat):
        if before:
            before()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--train-chars", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vocab-size", type=int, default=8000)
    args = ap.parse_args()

    import sentencepiece as spm

    from zeroformer.data import locate
    from zeroformer.tokenizers.sentencepiece import SentencePieceTokenizer

    corpus = (locate("shakespeare") / "input.txt").read_text(encoding="utf-8")
    lines = corpus[:args.chars].splitlines()
    n = sum(len(x) for x in lines)
    model = io.BytesIO()
    t = time.perf_counter()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[:args.train_chars].splitlines()), model_writer=model,
        vocab_size=args.vocab_size, model_type="unigram", num_threads=1, minloglevel=2)
    print(f"library unigram training on {args.train_chars:,} chars: {time.perf_counter() - t:.1f} s")
    cases = [("BPE (Mistral tokenizer.model)", (locate("llama-spm") / "tokenizer.model").read_bytes()),
             (f"unigram ({args.vocab_size} pieces, trained here)", model.getvalue())]
    for name, buf in cases:
        ours = SentencePieceTokenizer.from_bytes(buf)
        ref = spm.SentencePieceProcessor(model_proto=buf, num_threads=1)

        def clear(ours=ours):
            if ours._words is not None:
                ours._words.clear()

        t_ref, ids_ref = best_of(lambda ref=ref: [ref.encode(x) for x in lines], args.repeat)
        t_ours, ids_ours = best_of(lambda ours=ours: [ours.encode_ordinary(x) for x in lines],
                                   args.repeat, clear)
        same = ids_ours == ids_ref
        print(f"{name}: {n:,} chars in {len(lines):,} lines; ids identical: {same}")
        print(f"  sentencepiece {n / t_ref:12,.0f} chars/s   ours {n / t_ours:12,.0f} chars/s   "
              f"ratio ours/library {t_ref / t_ours:.3f}")


if __name__ == "__main__":
    main()
