"""`zeroformer eval METRIC ...`: each metric is a module `zeroformer/cli/eval_<metric>.py` with
`register(subparsers)` (bleu: translation, ppl: language models, accuracy: classifiers); adding a
metric is adding a module and a line below."""

from __future__ import annotations

from . import eval_accuracy, eval_bleu, eval_ppl

METRICS = (eval_accuracy, eval_bleu, eval_ppl)   # the order `zeroformer eval --help` lists them


def register(sub):
    p = sub.add_parser("eval", help="evaluate a model (bleu, ppl, accuracy, ...)")
    metrics = p.add_subparsers(dest="metric", metavar="METRIC")
    for module in METRICS:
        module.register(metrics)
    p.set_defaults(func=lambda args: p.print_help())
