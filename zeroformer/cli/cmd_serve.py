"""`zeroformer serve --model PATH [--model PATH ...] [--name NAME ...] [--host 127.0.0.1]
[--port 8000] [--max-batch N] [--max-len N] [--max-tokens N] [--max-queue N] [--api-key KEY]
[--dtype fp32|bf16] [--int8 | --int4] [--verbose]`: an OpenAI-compatible HTTP server
(/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /health) with streaming and
continuous batching.

Each model is served under its file or folder stem, or under the --name of the same rank. Binds to
127.0.0.1 unless --host says otherwise; SIGTERM or Ctrl-C stops it. The server itself is
zeroformer/serve/ (needs `pip install 'zeroformer[serve]'`).
"""

from __future__ import annotations

import os

from .common import add_path_args, report


def register(sub):
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API",
                       description=__doc__)
    p.add_argument("--model", action="append", required=True, metavar="PATH",
                   help="a language model or BERT encoder (checkpoint, HF folder, .gguf); "
                        "repeatable")
    p.add_argument("--name", action="append", default=[], metavar="NAME",
                   help="the name clients use for the --model of the same rank (repeatable; "
                        "a model without one: its file or folder stem)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="requests decoded together per model (slots)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests waiting for a slot before the server answers 429")
    p.add_argument("--max-len", type=int, default=2048, metavar="N",
                   help="positions per request, prompt + max_tokens (at most the model's "
                        "context; the KV cache holds max-batch x N)")
    p.add_argument("--max-tokens", type=int, default=512, metavar="N",
                   help="the largest max_tokens a request may ask for")
    p.add_argument("--api-key", default=os.environ.get("ZEROFORMER_API_KEY"), metavar="KEY",
                   help="require `Authorization: Bearer KEY` (default: $ZEROFORMER_API_KEY)")
    add_path_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..serve import run as serve

    return serve(args.model, args.name, host=args.host, port=args.port,
                 max_batch=args.max_batch, max_tokens=args.max_tokens, max_len=args.max_len,
                 api_key=args.api_key,
                 max_queue=args.max_queue, dtype=args.dtype, int8=args.int8, int4=args.int4,
                 report=report(args))
