"""`zeroformer embed --model PATH [FILE|-] [--out X.npy|X.jsonl] [--jsonl]`: sentence embeddings.

Each input line is one text. Its embedding is the mean of BERT's last hidden states over the real
tokens of ``[CLS] text [SEP]``, L2-normalised (sentence-transformers' mean pooling):

    e = normalize( sum_t m_t h_L[t] / sum_t m_t )          (H,) with |e| = 1

Output row i is input line i. An empty (or whitespace-only) line is NOT dropped: it embeds to the
vector of the empty text, i.e. of ``[CLS] [SEP]`` alone - exactly what transformers +
mean pooling (and sentence-transformers' ``encode("")``) give - so rows stay aligned with lines.
Texts longer than the model's limit (sentence_bert_config.json's max_seq_length, else the position
table) are truncated, as sentence-transformers does.

Output: ``--out X.npy`` a float32 (N, H) array; ``--out X.jsonl`` or no ``--out`` (stdout): one JSON
object per line, ``{"text": ..., "embedding": [...]}``; ``--jsonl`` forces JSON lines.
The embedding itself is zeroformer/inference/embedding.py.
"""

from __future__ import annotations

import json
import sys

from .common import add_path_args, read_lines, report


def register(sub):
    p = sub.add_parser("embed", help="sentence embeddings from a BERT model (mean-pooled, L2-normalised)")
    p.add_argument("--model", required=True, help="BERT model folder (e.g. all-MiniLM-L6-v2)")
    p.add_argument("input", nargs="?", default="-", help="text file, one text per line (default: stdin)")
    p.add_argument("--out", help="output .npy or .jsonl file (default: JSON lines on stdout)")
    p.add_argument("--jsonl", action="store_true", help="write JSON lines (also with --out)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    add_path_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..inference.embedding import embed_texts
    from ..inference.load import load_encoder, max_length_of

    texts = read_lines(args.input)
    model, tok = load_encoder(args.model, dtype=args.dtype, int8=args.int8, int4=args.int4,
                              report=report(args))
    emb = embed_texts(model, tok, texts, args.batch_size, max_length_of(model, args.model, args.max_length))
    jsonl = args.jsonl or args.out is None or not args.out.endswith(".npy")
    if not jsonl:
        import numpy as np

        np.save(args.out, emb.numpy().astype("float32"))
        sys.stderr.write(f"{len(texts)} embeddings of size {emb.shape[1]} -> {args.out}\n")
        return 0
    f = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for t, e in zip(texts, emb.tolist()):
            f.write(json.dumps({"text": t, "embedding": [round(x, 7) for x in e]}) + "\n")
    finally:
        if args.out:
            f.close()
    return 0
