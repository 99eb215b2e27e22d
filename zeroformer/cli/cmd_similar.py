"""`zeroformer similar --model PATH --query TEXT FILE [--top N]`: semantic search on a CPU.

Embeds the query and every non-empty line of FILE with `embed` (mean-pooled, L2-normalised BERT
embeddings), then ranks the lines by cosine similarity, which for unit vectors is the dot product:

    score_i = e_query . e_i    in [-1, 1]

Prints the best N as ``score<TAB>line number<TAB>text``, best first (ties: earlier line first).
Empty lines are skipped (they are not documents); an empty query is a user error.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from .common import read_lines


def register(sub):
    p = sub.add_parser("similar", help="rank the lines of a file by similarity to a query")
    p.add_argument("--model", required=True, help="BERT model folder (e.g. all-MiniLM-L6-v2)")
    p.add_argument("--query", required=True, help="the text to search for")
    p.add_argument("file", help="text file, one document per line ('-' = stdin)")
    p.add_argument("--top", type=int, default=10, help="how many lines to print (default 10)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=run)


def run(args):
    from ..inference.embedding import embed_texts, rank
    from ..inference.load import load_encoder, max_length_of

    if not args.query.strip():
        raise UserError("--query is empty")
    if args.top < 1:
        raise UserError(f"--top must be positive (got {args.top})")
    lines = read_lines(args.file)
    docs = [(i, t) for i, t in enumerate(lines, 1) if t.strip()]
    if not docs:
        raise UserError(f"{args.file}: no non-empty lines to search")
    model, tok = load_encoder(args.model)
    n = max_length_of(model, args.model)
    q = embed_texts(model, tok, [args.query], 1, n)[0]
    d = embed_texts(model, tok, [t for _, t in docs], args.batch_size, n)
    for score, k in rank(q, d, args.top):
        line_no, text = docs[k]
        sys.stdout.write(f"{score:.4f}\t{line_no}\t{text}\n")
    return 0
