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

import math
from pathlib import Path

from ..errors import UserError


def register(metrics):
    p = metrics.add_parser("ppl", help="perplexity of a language model on a text file",
                           description=__doc__)
    from .cmd_generate import add_model_args

    add_model_args(p, sampling=False)
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="window length in tokens (default: the model's context, at most 1024)")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="tokens between window starts (default: --context)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B")
    p.set_defaults(func=run)


def windows(n_tokens: int, context: int, stride: int):
    """(start, end, first_scored) per window: tokens [start, end) are fed; the targets
    first_scored..end-1 (absolute indices) are counted. Consecutive windows overlap by at least
    one token, so each window's first target has history."""
    out, scored, start = [], 1, 0          # token 0 has no history: never predicted
    while scored < n_tokens:
        end = min(start + context, n_tokens)
        out.append((start, end, scored))
        scored = end
        start = min(start + stride, end - 1)
    return out


def perplexity(model, ids: list[int], context: int, stride: int, batch_size: int = 4):
    """-> (n_scored, total_nll_nats). ids: the token ids of the whole text."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    spans = windows(len(ids), context, stride)
    with torch.no_grad():
        for i in range(0, len(spans), batch_size):
            group = spans[i:i + batch_size]
            width = max(e - s for s, e, _ in group)
            x = torch.zeros(len(group), width, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.long)
            for r, (s, e, _) in enumerate(group):   # left-pad shorter windows
                x[r, width - (e - s):] = torch.tensor(ids[s:e])
                mask[r, width - (e - s):] = 1
            logp = F.log_softmax(model(x, attention_mask=mask).float(), dim=-1)
            for r, (s, e, first) in enumerate(group):
                off = width - (e - s)
                tgt = torch.tensor(ids[first:e])                 # predicted tokens
                rows = logp[r, off + first - s - 1: off + e - s - 1]  # positions predicting them
                total -= rows.gather(1, tgt[:, None]).sum().item()
                count += len(tgt)
    return count, total


def run(args):
    from .cmd_generate import load_lm

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"text file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    model, tok = load_lm(args)
    context = args.context or min(model.config.max_seq_len, 1024)
    stride = args.stride or context
    if not 2 <= context <= model.config.max_seq_len:
        raise UserError(f"--context must be in [2, {model.config.max_seq_len}] (got {context})")
    if not 1 <= stride <= context:
        raise UserError(f"--stride must be in [1, --context] (got {stride})")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1 (got {args.batch_size})")
    ids = tok.encode(text)
    if len(ids) < 2:
        raise UserError(f"{path}: fewer than 2 tokens, nothing to score")
    n, nll = perplexity(model, ids, context, stride, args.batch_size)
    mean = nll / n
    n_bytes = len(text.encode("utf-8"))
    print(f"tokens {n}  nll {mean:.4f} nats/token  bits/byte {nll / math.log(2) / n_bytes:.4f}  "
          f"ppl {math.exp(mean):.3f}")
    return 0
