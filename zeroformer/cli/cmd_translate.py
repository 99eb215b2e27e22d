"""`zeroformer translate --model DIR [TEXT ...] [--beams 4]`: translate with an encoder-decoder.

Texts come from the arguments, or one per line from stdin. Output: one line per input, in order.
An empty (or whitespace-only) input translates to an empty line. A source longer than the
model's context (max_seq_len tokens including </s>) is truncated, with a warning on stderr.
DIR is a training run folder (its newest checkpoint), a zeroformer checkpoint or a Marian folder
that carries our tokenizer.json. A model that is not an encoder-decoder is an error (exit 2).
"""

from __future__ import annotations

import sys

from ..errors import UserError
from .common import add_path_args, report


def register(sub):
    p = sub.add_parser("translate", help="translate text with an encoder-decoder model")
    p.add_argument("--model", required=True, metavar="DIR", help="translator (run folder, "
                   "checkpoint or Marian/opus-mt folder)")
    p.add_argument("text", nargs="*", help="texts to translate (default: lines of stdin)")
    p.add_argument("--beams", type=int, default=4, help="beam width (1 = greedy; default 4)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="score = log p / length^alpha (default 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="output limit (default: 1.5 x source + 10, within the context)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences decoded together")
    add_path_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..inference.load import load_translator
    from ..inference.translation import translate

    if args.beams < 1:
        raise UserError(f"--beams must be >= 1 (got {args.beams})")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1 (got {args.batch_size})")
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

    out = translate(model, tok, texts, beams=args.beams, batch_sentences=args.batch_size,
                    max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty,
                    on_truncate=warn)
    for line in out:
        sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()
    return 0
