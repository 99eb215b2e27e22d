"""`zeroformer neighbors --model PATH [WORD ...] [--analogy A B C] [--top N] [--export FILE]`:
query word vectors (a `zeroformer train word2vec` run, or a word2vec text file).

For each WORD, its nearest words by cosine similarity; `--analogy A B C` answers "A is to B as C
is to ?" (e.g. `--analogy man king woman`) with the words nearest to B - A + C (unit vectors).
Prints ``word<TAB>cosine`` lines, best first (a `# WORD` line before each list when there are
several). `--export FILE` writes all the vectors in the word2vec text format (gensim's
`KeyedVectors.load_word2vec_format(FILE)` reads it).
"""

from __future__ import annotations

import sys

from ..errors import UserError


def register(sub):
    p = sub.add_parser("neighbors", help="nearest words and analogies from word vectors (word2vec)",
                       description=__doc__)
    p.add_argument("--model", required=True, metavar="PATH",
                   help="a `zeroformer train word2vec` run or checkpoint, or a word2vec text file")
    p.add_argument("words", nargs="*", metavar="WORD")
    p.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"),
                   help="A is to B as C is to ?  (the words nearest to B - A + C)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many words (default 10)")
    p.add_argument("--export", metavar="FILE", help="write the vectors in word2vec text format")
    p.set_defaults(func=run)


def run(args):
    from ..inference.word_vectors import export, load_word_vectors

    if args.top < 1:
        raise UserError(f"--top must be positive (got {args.top})")
    if not (args.words or args.analogy or args.export):
        raise UserError("neighbors: give a WORD, --analogy A B C, or --export FILE")
    wv = load_word_vectors(args.model)
    out = sys.stdout
    queries = [(w, lambda w=w: wv.neighbours(w, args.top)) for w in args.words]
    if args.analogy:
        a, b, c = args.analogy
        queries.append((f"{a} : {b} :: {c} : ?", lambda: wv.analogy(a, b, c, args.top)))
    for name, query in queries:
        if len(queries) > 1:
            out.write(f"# {name}\n")
        for word, score in query():
            out.write(f"{word}\t{score:.4f}\n")
    if args.export:
        path = export(wv, args.export)
        sys.stderr.write(f"wrote {len(wv.words):,} vectors of {wv.vectors.size(1)} numbers to {path}\n")
    return 0
