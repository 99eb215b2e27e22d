"""`zeroformer data list|fetch`: the offline datasets, tokenizers and weights (zeroformer.data)."""

from __future__ import annotations

import sys

from ..errors import UserError


def register(subparsers):
    p = subparsers.add_parser("data", help="list or fetch datasets, tokenizers and weights",
                              description=__doc__)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    ls = sub.add_parser("list", help="name, fetched path (or -), description")
    ls.set_defaults(func=run_list)
    f = sub.add_parser("fetch", help="fetch datasets into $ZEROFORMER_HOME (~/.cache/zeroformer)")
    f.add_argument("names", nargs="*", metavar="NAME", help="dataset names (see `data list`)")
    f.add_argument("--all", action="store_true", help="fetch every dataset")
    f.add_argument("--all-test", action="store_true", help="fetch the set the test suite uses")
    f.add_argument("--best-effort", action="store_true",
                   help="warn about a failed fetch and go on; exit 0")
    f.add_argument("-q", "--quiet", action="store_true", help="print only the paths")
    f.set_defaults(func=run_fetch)
    p.set_defaults(func=lambda args: p.print_help())


def run_list(args):
    from .. import data

    print(f"cache: {data.home()}")
    width = max(len(n) for n in data.DATASETS)
    for name, desc in data.DATASETS.items():
        path = data.locate(name)
        print(f"{name:<{width}}  {str(path) if path else '-'}\n{'':<{width}}  {desc}")


def run_fetch(args):
    from .. import data

    names = list(args.names)
    if args.all:
        names += list(data.DATASETS)
    if args.all_test:
        names += data.TEST_DATASETS
    names = list(dict.fromkeys(names))  # de-duplicate, keep order
    if not names:
        raise UserError("data fetch: give dataset names, --all or --all-test "
                        "(see `zeroformer data list`)")
    for name in args.names:  # check the typed names before downloading anything
        if name not in data.DATASETS:
            raise UserError(f"unknown dataset {name!r} (known: {', '.join(data.DATASETS)})")
    failed = []
    for name in names:
        try:
            print(data.fetch(name, quiet=args.quiet), flush=True)
        except UserError as e:
            if not args.best_effort:
                raise
            failed.append(name)
            sys.stderr.write(f"zeroformer: warning: {e}\n")
    if failed:
        sys.stderr.write(f"zeroformer: warning: not fetched: {' '.join(failed)}\n")
    return 0
