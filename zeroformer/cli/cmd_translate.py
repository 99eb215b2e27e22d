"""`zeroformer translate --model DIR [TEXT ...] [--beams 4] [--length-penalty A --length-norm gnmt]
[--max-len-a A --max-len-b B]`: translate with an encoder-decoder.

Texts come from the arguments, or one per line from stdin. Output: one line per input, in order.
An empty (or whitespace-only) input translates to an empty line. A source longer than the
model's context (max_seq_len tokens including </s>) is truncated, with a warning on stderr.
DIR is a training run folder (its newest checkpoint), a zeroformer checkpoint or a Marian folder
that carries our tokenizer.json. A model that is not an encoder-decoder is an error (exit 2).
"""

from __future__ import annotations

import sys

from ..errors import UserError
from .common import add_path_args, add_translation_args, report, translation_options


def register(sub):
    p = sub.add_parser("translate", help="translate text with an encoder-decoder model")
    p.add_argument("--model", required=True, metavar="DIR", help="translator (run folder, "
                   "checkpoint or Marian/opus-mt folder)")
    p.add_argument("text", nargs="*", help="texts to translate (default: lines of stdin)")
    add_translation_args(p)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="a fixed output limit (instead of --max-len-a/-b), within the context")
    add_path_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..inference.load import load_translator
    from ..inference.translation import translate

    options = translation_options(args)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
    model, tok = load_translator(args.model, args.dtype, args.int8, args.int4,
                                 report(args))
    if args.max_new_tokens is not None and args.max_new_tokens >= model.config.max_seq_len:
        args.max_new_tokens = model.config.max_seq_len - 1
    texts = list(args.text) if args.text else [line.rstrip("\r\n") for line in sys.stdin]
    limit = model.config.max_seq_len - 1

    def warn(i, n):
        sys.stderr.write(f"zeroformer: warning: input {i + 1}: {n} tokens is longer than the "
                         f"model's context; truncated to the first {limit}\n")

    out = translate(model, tok, texts, max_new_tokens=args.max_new_tokens, on_truncate=warn,
                    **options)
    for line in out:
        sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()
    return 0
