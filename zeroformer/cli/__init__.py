"""`zeroformer` command line: one module per subcommand in this package.

Each module `zeroformer/cli/cmd_<name>.py` defines ``register(subparsers)``, which adds its parser
and sets ``func=run`` (a function taking the parsed args and returning an exit status or None).
User mistakes raise `zeroformer.errors.UserError` -> one line on stderr and exit 2; anything else
is an internal bug -> traceback and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

# The order here is the order `zeroformer --help` lists them (DESIGN.md).
COMMANDS = [
    "train", "generate", "chat", "translate", "embed", "similar", "eval", "tokenize",
    "tokenizer", "convert", "data", "viz", "bench",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `zeroformer: error: ...` and exit 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"zeroformer: error: {self.prog}: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="zeroformer", description="zeroformer: build, train and run the Transformer family (2017 encoder-decoder, BERT, GPT-2, LLaMA) from first principles.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"zeroformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".cmd_{name.replace('-', '_')}", __name__)
        except ModuleNotFoundError as e:  # a subcommand whose module is not written yet
            if e.name and e.name.endswith(f"cmd_{name}"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        status = args.func(args)
    except UserError as e:
        sys.stderr.write(f"zeroformer: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("zeroformer: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    return int(status or 0)


def entry():  # pragma: no cover - console script wrapper
    sys.exit(main())
