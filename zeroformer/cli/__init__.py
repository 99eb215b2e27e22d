"""`zeroformer` command line: one module per subcommand in this package.

Each module `zeroformer/cli/cmd_<name>.py` defines ``register(subparsers)``, which adds its parser
and sets ``func=run`` (a function taking the parsed args and returning an exit status or None);
COMMANDS below lists them (adding a command is adding a module and a line there). A command
module parses arguments and prints; the work is in zeroformer/inference and the library.
Command modules never import each other (shared flags: cli/common.py).
User mistakes raise `zeroformer.errors.UserError` -> one line on stderr and exit 2; anything else
is an internal bug -> traceback and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from . import (cmd_bench, cmd_chat, cmd_convert, cmd_data, cmd_embed, cmd_eval, cmd_explain,
               cmd_generate, cmd_neighbors, cmd_serve, cmd_similar, cmd_tokenize, cmd_tokenizer,
               cmd_train, cmd_translate, cmd_viz)

# The order here is the order `zeroformer --help` lists them (DESIGN.md).
COMMANDS = {
    "train": cmd_train, "generate": cmd_generate, "chat": cmd_chat, "translate": cmd_translate,
    "embed": cmd_embed, "similar": cmd_similar, "neighbors": cmd_neighbors, "eval": cmd_eval,
    "tokenize": cmd_tokenize,
    "tokenizer": cmd_tokenizer, "convert": cmd_convert, "data": cmd_data, "viz": cmd_viz,
    "explain": cmd_explain,
    "bench": cmd_bench, "serve": cmd_serve,
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `zeroformer: error: ...` and exit 2.

    extra_args_dest: a parser made with ``add_parser(..., extra_args_dest="x")`` keeps the words
    it does not know in ``args.x`` instead of rejecting them (`train`'s --key=value overrides)."""

    def __init__(self, *args, extra_args_dest: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_args_dest = extra_args_dest

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        if self.extra_args_dest and rest:
            setattr(ns, self.extra_args_dest,
                    list(getattr(ns, self.extra_args_dest, None) or []) + list(rest))
            rest = []
        return ns, rest

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"zeroformer: error: {self.prog}: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="zeroformer", description="zeroformer: build, train and run the Transformer family (2017 encoder-decoder, BERT, GPT-2, LLaMA) from first principles.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"zeroformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if any("\x00" in w for w in argv):  # no shell can pass one; Python's file calls refuse it
        sys.stderr.write("zeroformer: error: an argument contains a NUL byte\n")
        return 2
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
    # a command process keeps freed memory for reuse (train/machine.py:keep_freed_memory): each
    # beam-search step of `translate` frees and allocates the same MB-sized buffers, which glibc
    # otherwise returns to the kernel: 190k page faults and 10% more CPU for 389 verses
    from ..train.machine import keep_freed_memory

    keep_freed_memory()
    sys.exit(main())
