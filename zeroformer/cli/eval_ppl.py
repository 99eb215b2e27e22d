"""`zeroformer eval ppl --model PATH FILE [--context N] [--stride S] [--batch-size B]`: perplexity
of a language model on a text file.

    PPL = exp( -(1/N) Σ_t log p(x_t | x_<t) )

The file is tokenized once. Windows of `context` tokens start every `stride` tokens (default:
context - 1, i.e. back to back); each window scores only the tokens no earlier window scored, so
every token after the first is counted exactly once, each with at least `context - stride` tokens
of history (a smaller stride: more history per token, more compute).
Prints tokens, mean negative log-likelihood (nats/token), bits per byte and perplexity.
"""

from __future__ import annotations

from ..errors import UserError
from .common import add_model_args, load_lm, read_text


def register(metrics):
    p = metrics.add_parser("ppl", help="perplexity of a language model on a text file",
                           description=__doc__)
    add_model_args(p, sampling=False)
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="window length in tokens (default: the model's context, at most 1024)")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="tokens between window starts (default: --context)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B")
    p.set_defaults(func=run)


def run(args):
    from ..inference.perplexity import text_perplexity

    text = read_text(args.file, "text")
    model, tok = load_lm(args)
    context = args.context or min(model.config.max_seq_len, 1024)
    stride = args.stride or context
    if not 2 <= context <= model.config.max_seq_len:
        raise UserError(f"--context must be in [2, {model.config.max_seq_len}] (got {context})")
    if not 1 <= stride <= context:
        raise UserError(f"--stride must be in [1, --context] (got {stride})")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1 (got {args.batch_size})")
    r = text_perplexity(model, tok, text, context, stride, args.batch_size)
    if r is None:
        raise UserError(f"{args.file}: fewer than 2 tokens, nothing to score")
    print(f"tokens {r['tokens']}  nll {r['nll']:.4f} nats/token  "
          f"bits/byte {r['bits_per_byte']:.4f}  ppl {r['ppl']:.3f}")
    return 0
