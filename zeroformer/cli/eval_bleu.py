"""`zeroformer eval bleu`: corpus BLEU and chrF (sacrebleu, detokenized text, 13a tokenization).

    zeroformer eval bleu --model DIR [--split test|valid] [--beams 4] [--limit N] [--out HYP]
        translate the bible-es-en test (or valid) books with the model and score them;
    zeroformer eval bleu --model DIR --src FILE --ref FILE
        translate FILE (one sentence a line) and score it against FILE;
    zeroformer eval bleu --hyp FILE --ref FILE
        score existing translations (one a line, aligned with the references).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .common import read_lines


def register(sub):
    p = sub.add_parser("bleu", help="BLEU and chrF of a translator (sacrebleu)")
    p.add_argument("--model", metavar="DIR", help="translator to evaluate")
    p.add_argument("--split", choices=["test", "valid"], default="test",
                   help="bible-es-en split (default: the test books)")
    p.add_argument("--src", metavar="FILE", help="source sentences, one a line (with --model)")
    p.add_argument("--hyp", metavar="FILE", help="translations to score, one a line")
    p.add_argument("--ref", metavar="FILE", help="references, one a line")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--out", metavar="FILE", help="also write the translations here")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=run)


def run(args):
    from ..inference.translation import bleu_chrf, translate

    if args.hyp:
        if args.model or not args.ref:
            raise UserError("eval bleu: --hyp needs --ref (and no --model)")
        hyps, refs = read_lines(args.hyp, "--hyp"), read_lines(args.ref, "--ref")
        srcs = None
    else:
        if not args.model:
            raise UserError("eval bleu: give --model DIR, or --hyp FILE --ref FILE")
        if args.beams < 1:
            raise UserError(f"--beams must be >= 1 (got {args.beams})")
        if args.src or args.ref:
            if not (args.src and args.ref):
                raise UserError("eval bleu: --src and --ref go together")
            srcs, refs = read_lines(args.src, "--src"), read_lines(args.ref, "--ref")
        else:
            from .. import data
            from ..train.translation import read_pairs

            root = data.locate("bible-es-en")
            if root is None:
                raise UserError("eval bleu: the bible-es-en corpus is not fetched; run "
                                "`zeroformer data fetch bible-es-en` (or give --src/--ref)")
            pairs = read_pairs(root / f"{args.split}.tsv")
            srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
        if args.limit is not None:
            srcs, refs = srcs[: args.limit], refs[: args.limit]
        if len(srcs) != len(refs):
            raise UserError(f"eval bleu: {len(srcs)} sources but {len(refs)} references")
        from ..inference.load import load_translator

        model, tok = load_translator(args.model)
        hyps = translate(model, tok, srcs, beams=args.beams)
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
    if args.json:
        print(json.dumps(result))
    else:
        print(f"BLEU {bleu:.2f}  chrF {chrf:.2f}  ({len(refs)} sentences"
              + (f", beam {args.beams})" if args.model else ")"))
    return 0
