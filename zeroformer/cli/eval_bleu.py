"""`zeroformer eval bleu`: corpus BLEU and chrF (sacrebleu, detokenized text, 13a tokenization).

    zeroformer eval bleu --model DIR --data test.tsv [--src-col 0 --tgt-col 1]
        translate any parallel test file (TSV, JSON lines {"src", "tgt"}, or two aligned files
        with --data test.es --data-target test.en: zeroformer/data/parallel.py) and score it;
    zeroformer eval bleu --model DIR [--split test|valid]
        the same on the bible-es-en test (or valid) books;
    zeroformer eval bleu --model DIR --src FILE --ref FILE
        translate FILE (one sentence a line) and score it against FILE;
    zeroformer eval bleu --hyp FILE --ref FILE
        score existing translations (one a line, aligned with the references).
Decoding: --beams 4, --length-penalty / --length-norm, --max-len-a / --max-len-b
(zeroformer/inference/translation.py). COMET needs the `unbabel-comet` package and a COMET
model download: it is not computed, and the output says so.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from ..errors import UserError
from .common import add_translation_args, read_lines, translation_options


def register(sub):
    p = sub.add_parser("bleu", help="BLEU and chrF of a translator (sacrebleu)")
    p.add_argument("--model", metavar="DIR", help="translator to evaluate")
    p.add_argument("--data", metavar="FILE", help="parallel test file: TSV, .jsonl, or the "
                   "source side of two files (with --data-target)")
    p.add_argument("--data-target", metavar="FILE", help="target side of a two-file --data")
    p.add_argument("--src-col", default="0", metavar="COL",
                   help="TSV source column: 0-based index or header name (default 0)")
    p.add_argument("--tgt-col", default="1", metavar="COL",
                   help="TSV target column: 0-based index or header name (default 1)")
    p.add_argument("--split", choices=["test", "valid"], default="test",
                   help="bible-es-en split when no --data/--src (default: the test books)")
    p.add_argument("--src", metavar="FILE", help="source sentences, one a line (with --model)")
    p.add_argument("--hyp", metavar="FILE", help="translations to score, one a line")
    p.add_argument("--ref", metavar="FILE", help="references, one a line")
    add_translation_args(p)
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--out", metavar="FILE", help="also write the translations here")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=run)


def test_pairs(args) -> tuple[list[str], list[str]]:
    """(sources, references) from --data, --src/--ref, or the bible-es-en split."""
    if args.data:
        if args.src or args.ref:
            raise UserError("eval bleu: give --data, or --src and --ref, not both")
        from ..data.parallel import read_parallel

        corpus = read_parallel(args.data, args.data_target, args.src_col, args.tgt_col)
        if corpus.bad or corpus.header:
            sys.stderr.write(corpus.summary() + "\n")
        return [s for s, _ in corpus.pairs], [t for _, t in corpus.pairs]
    if args.data_target:
        raise UserError("eval bleu: --data-target goes with --data")
    if args.src or args.ref:
        if not (args.src and args.ref):
            raise UserError("eval bleu: --src and --ref go together")
        return read_lines(args.src, "--src"), read_lines(args.ref, "--ref")
    from .. import data
    from ..train.translation import read_pairs

    root = data.locate("bible-es-en")
    if root is None:
        raise UserError("eval bleu: the bible-es-en corpus is not fetched; run "
                        "`zeroformer data fetch bible-es-en` (or give --data FILE)")
    pairs = read_pairs(root / f"{args.split}.tsv")
    return [s for s, _ in pairs], [t for _, t in pairs]


def run(args):
    from ..inference.translation import bleu_chrf, translate

    if args.hyp:
        if args.model or not args.ref or args.data:
            raise UserError("eval bleu: --hyp needs --ref (and no --model or --data)")
        hyps, refs = read_lines(args.hyp, "--hyp"), read_lines(args.ref, "--ref")
    else:
        if not args.model:
            raise UserError("eval bleu: give --model DIR, or --hyp FILE --ref FILE")
        options = translation_options(args)
        srcs, refs = test_pairs(args)
        if args.limit is not None:
            srcs, refs = srcs[: args.limit], refs[: args.limit]
        if len(srcs) != len(refs):
            raise UserError(f"eval bleu: {len(srcs)} sources but {len(refs)} references")
        from ..inference.load import load_translator

        model, tok = load_translator(args.model)
        hyps = translate(model, tok, srcs, **options)
    if len(hyps) != len(refs):
        raise UserError(f"eval bleu: {len(hyps)} translations but {len(refs)} references")
    if not refs:
        raise UserError("eval bleu: nothing to score (no sentences)")
    if args.out:
        Path(args.out).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    bleu, chrf = bleu_chrf(hyps, refs)
    result = {"bleu": round(bleu, 2), "chrf": round(chrf, 2), "sentences": len(refs)}
    if args.model:
        result.update(model=str(args.model), beams=args.beams)
    result["comet"] = None
    result["comet_note"] = comet_note()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"BLEU {bleu:.2f}  chrF {chrf:.2f}  ({len(refs)} sentences"
              + (f", beam {args.beams})" if args.model else ")"))
        sys.stderr.write(f"COMET: {result['comet_note']}\n")
    return 0


def comet_note() -> str:
    if importlib.util.find_spec("comet") is None:
        return "skipped (the unbabel-comet package is not installed)"
    return "skipped (not computed by zeroformer: it needs a COMET model download)"
