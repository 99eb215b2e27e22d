"""`zeroformer eval METRIC ...`: each metric is a module `zeroformer/cli/eval_<metric>.py` with
`register(subparsers)` (bleu: translation, ppl: language models, accuracy: classifiers, ...)."""

from __future__ import annotations

import importlib
import pkgutil

from .. import cli as _cli


def register(sub):
    p = sub.add_parser("eval", help="evaluate a model (bleu, ppl, accuracy, ...)")
    metrics = p.add_subparsers(dest="metric", metavar="METRIC", parser_class=_cli.ArgumentParser)
    for info in sorted(pkgutil.iter_modules(_cli.__path__), key=lambda m: m.name):
        if info.name.startswith("eval_"):
            importlib.import_module(f"{_cli.__name__}.{info.name}").register(metrics)
    p.set_defaults(func=lambda args: p.print_help())
