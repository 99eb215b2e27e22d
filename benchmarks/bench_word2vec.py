"""word2vec: `zeroformer train word2vec` vs gensim's Word2Vec, same corpus and settings, side by side.

Both train skip-gram with negative sampling on the same words (Shakespeare, lower-cased \\w+
runs: zeroformer/recipes/word2vec.py:words_of) with the same settings: 100 dimensions, window 5,
5 negatives, sample 1e-3, min_count 5, 5 epochs, alpha 0.025 -> 0.0001, one thread each. gensim
gets the words as "sentences" of 10,000 words (its longest), ours one stream. Prints each side's
training time (vocabulary building included) and the overlap@10 of the nearest-neighbour lists
of 50 common words (frequency ranks --first .. --first + 49): |ours top-10 ∩ gensim top-10| / 10,
averaged. Times are wall clock and process CPU time (all threads; the fairer figure on a busy
machine). For scale it also prints the overlap between two gensim runs that differ only in their
seed (what "the same algorithm" gives at best on this corpus).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_word2vec.py [--epochs 5] [--first 50] [--cbow]

Measured (2026-11-30, the 2-core machine under load 4-10, the command above, skip-gram):
936,548 words, 8,714 in the vocabulary, 4.12 M examples per epoch, 20,105 steps of 1,024.
ours 158.6 s wall / 83.8 s CPU, gensim 4.4.0 23.7 s wall / 13.9 s CPU: 6.7x wall, 6.0x CPU.
overlap@10 ours vs gensim 0.502 (0.494 in an earlier run: gensim's init hashes words with
Python's per-process hash seed), gensim vs gensim with another seed 0.518: our neighbours agree
with gensim's as much as gensim's own agree across seeds.
"""

from __future__ import annotations

import argparse
import time


def overlap(a: dict, b: dict) -> float:
    return sum(len(set(a[w]) & set(b[w])) for w in a) / (10 * len(a))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--first", type=int, default=50, help="frequency rank of the first probe word")
    ap.add_argument("--cbow", action="store_true", help="CBOW instead of skip-gram")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch
    from gensim.models import Word2Vec as GensimWord2Vec

    from zeroformer import data
    from zeroformer.inference.word_vectors import WordVectors
    from zeroformer.recipes import get
    from zeroformer.recipes.word2vec import vocabulary, words_of
    from zeroformer.train import Trainer

    torch.set_num_threads(1)
    text = (data.fetch("shakespeare") / "input.txt").read_text(encoding="utf-8")
    words = words_of(text)
    vocab = vocabulary(words, 5)
    probes = vocab[args.first: args.first + 50]
    print(f"corpus: {len(words):,} words, {len(vocab):,} with count >= 5; probe words: "
          f"{', '.join(probes[:8])}, ...")

    # -- ours: the recipe through the one trainer -------------------------------------------------
    recipe = get("word2vec")
    extra = {"epochs": args.epochs, "cbow": args.cbow, "probe": ""}
    tcfg = recipe.train_config(progress=False, dtype="fp32", device="cpu", seed=args.seed,
                               log_every=0, extra=extra)
    t0, c0 = time.perf_counter(), time.process_time()
    task = recipe.build(recipe.model_config(), tcfg)
    Trainer(task, tcfg).fit()
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    tok = task.tokenizer
    ids = torch.tensor([tok.stoi[w] for w in tok.words])
    ours = WordVectors(list(tok.words), task.model.embed.weight.detach()[ids])
    print(f"ours:   {tcfg.max_steps} steps of {tcfg.batch_size} examples in {t_ours:.1f} s "
          f"({c_ours:.1f} s CPU)")

    # -- gensim ---------------------------------------------------------------------------------
    sentences = [words[i: i + 10_000] for i in range(0, len(words), 10_000)]

    def gensim_run(seed):
        t, c = time.perf_counter(), time.process_time()
        m = GensimWord2Vec(sentences=sentences, vector_size=100, window=5, negative=5,
                           sample=1e-3, min_count=5, epochs=args.epochs, sg=0 if args.cbow else 1,
                           alpha=0.025, min_alpha=0.0001, workers=1, seed=seed)
        return m.wv, time.perf_counter() - t, time.process_time() - c

    gw, t_gensim, c_gensim = gensim_run(args.seed)
    gw2, _, _ = gensim_run(args.seed + 1)
    print(f"gensim: {args.epochs} epochs in {t_gensim:.1f} s ({c_gensim:.1f} s CPU; gensim "
          f"{__import__('gensim').__version__}, workers=1); same vocabulary: "
          f"{set(gw.index_to_key) == set(vocab)}")
    print(f"time ratio ours / gensim: {t_ours / t_gensim:.1f}x wall, {c_ours / c_gensim:.1f}x CPU "
          "(gensim: optimised C, one pair at a time; ours: batches of torch ops)")

    top = {w: [x for x, _ in ours.neighbours(w, 10)] for w in probes}
    g1 = {w: [x for x, _ in gw.most_similar(w, topn=10)] for w in probes}
    g2 = {w: [x for x, _ in gw2.most_similar(w, topn=10)] for w in probes}
    print(f"overlap@10, ours vs gensim:          {overlap(top, g1):.3f}")
    print(f"overlap@10, gensim vs gensim (seed): {overlap(g2, g1):.3f}")
    for w in probes[:5]:
        print(f"  {w:10s} ours: {' '.join(top[w][:6])}\n  {'':10s} gensim: {' '.join(g1[w][:6])}")


if __name__ == "__main__":
    main()
