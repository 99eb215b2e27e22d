"""SentencePiece, ours vs the `sentencepiece` library, in one process: encode speed and training.

encode (--part encode):
1. BPE: the Mistral/LLaMA tokenizer.model (``zeroformer data fetch llama-spm``);
2. unigram: a model the library trains on the first --train-chars of the corpus (--vocab-size).
Both encode the first --chars characters of the Shakespeare corpus (``zeroformer data fetch
shakespeare``) line by line (the way a data pipeline calls it), best of --repeat runs per side; our
BPE word cache is cleared before every run. The ids are checked identical. Prints chars/s of each
and the ratio (ours / library; < 1 means we are slower). Single-threaded on both sides.

train (--part train): our unigram trainer (spm_train.train_unigram) and the library's
``SentencePieceTrainer.train`` (num_threads=1) on the same text (the Shakespeare corpus but its
last --held-out characters), same vocabulary size, identity normalization, character_coverage
0.9995; prints the training time of each and tokens per character of each model on the held-out
tail (encoded by the library; our model's ids are checked equal to the library's on it).

    .venv/bin/python benchmarks/bench_spm.py [--part encode,train] [--chars 1000000] [--repeat 3]
        [--vocab-size 8000] [--held-out 300000] [--algo unigram]

Measured 2026-11-30 on the 2-core build machine, OMP_NUM_THREADS=1, under load (load average 7-8:
other jobs running; absolute times are noisy, ratios less so):
- ``--part train``: unigram, vocab 8000, 4,757,280 chars: ours 14.9 s, sentencepiece 16.3 s;
  held-out tokens/char 0.2901 vs 0.2899 (ratio 1.0007). ``--algo spm-bpe``: ours 10.4 s,
  sentencepiece 2.1 s; tokens/char 0.2814 vs 0.2817 (0.9988).
- ``--part encode``: unigram 8000 (library-trained, nmt_nfkc): 216,737 vs 2,307,624 chars/s,
  ratio 0.094 (before the trie and the normalizer's plain-path check: 97,611 chars/s, 0.033, in
  the same conditions); BPE (Mistral): ratio 0.24 (0.29 in the run before; code unchanged).
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
    ap.add_argument("--part", default="encode,train")
    ap.add_argument("--held-out", type=int, default=300_000)
    ap.add_argument("--algo", choices=("unigram", "spm-bpe"), default="unigram")
    args = ap.parse_args()

    from zeroformer.data import locate

    corpus = (locate("shakespeare") / "input.txt").read_text(encoding="utf-8")
    if "encode" in args.part:
        bench_encode(args, corpus)
    if "train" in args.part:
        bench_train(args, corpus)


def bench_train(args, corpus):
    import sentencepiece as spm

    from zeroformer.tokenizers import spm_proto, spm_train

    train, held = corpus[:-args.held_out], corpus[-args.held_out:].splitlines()
    n_held = sum(map(len, held))
    print(f"training {args.algo}, vocab {args.vocab_size}, on {len(train):,} chars; held-out "
          f"{n_held:,} chars in {len(held):,} lines")
    fn = spm_train.train_unigram if args.algo == "unigram" else spm_train.train_spm_bpe
    t = time.perf_counter()
    ours = spm_proto.serialize_model(fn([train], args.vocab_size))
    t_ours = time.perf_counter() - t
    model = io.BytesIO()
    t = time.perf_counter()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train.splitlines()), model_writer=model, vocab_size=args.vocab_size,
        model_type="unigram" if args.algo == "unigram" else "bpe", num_threads=1,
        normalization_rule_name="identity", character_coverage=0.9995, minloglevel=2)
    t_lib = time.perf_counter() - t
    rows = []
    for name, buf, secs in (("ours", ours, t_ours), ("sentencepiece", model.getvalue(), t_lib)):
        proc = spm.SentencePieceProcessor(model_proto=buf, num_threads=1)
        ids = [proc.encode(x) for x in held]
        rows.append((name, secs, sum(map(len, ids)) / n_held, ids))
    from zeroformer.tokenizers.sentencepiece import SentencePieceTokenizer

    mine = SentencePieceTokenizer.from_bytes(ours)
    same = all(mine.encode_ordinary(x) == i for x, i in zip(held, rows[0][3]))
    for name, secs, tpc, _ in rows:
        print(f"  {name:14s} training {secs:7.1f} s   held-out tokens/char {tpc:.4f}")
    print(f"  ratio ours/library: time {rows[0][1] / rows[1][1]:.2f}x, tokens/char "
          f"{rows[0][2] / rows[1][2]:.4f}; our ids = library's on our model: {same}")


def bench_encode(args, corpus):
    import sentencepiece as spm

    from zeroformer.data import locate
    from zeroformer.tokenizers.sentencepiece import SentencePieceTokenizer

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
