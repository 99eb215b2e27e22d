"""`zeroformer generate --model PATH --prompt TEXT [--max-new-tokens N] [--temperature T]
[--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--stop STR] [--dtype fp32|bf16]
[--int8 | --int4] [--verbose]`: continue a prompt with a decoder-only model, streaming the text as
it is produced. A quantized GGUF runs quantized unless `--dtype fp32` (inference/plan.py);
`--verbose` prints the path taken on stderr.

Temperature 0 (the default) is greedy. A prompt longer than the model's context is cut from the
left (keeping its end) with a warning.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from .common import add_model_args, load_lm, sampling


def register(sub):
    p = sub.add_parser("generate", help="continue a prompt with a language model",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--prompt", required=True, metavar="TEXT")
    p.add_argument("--stop", action="append", default=[], metavar="STR",
                   help="stop when the generated text contains STR (repeatable)")
    p.set_defaults(func=run)


def run(args):
    from ..inference.text import (TextStream, encode_prompt, eos_ids, fit_context,
                                  generate_stream, stop_on_strings)

    kw = sampling(args)
    model, tok = load_lm(args)
    ids, max_new = fit_context(encode_prompt(tok, args.prompt), args.max_new_tokens,
                               model.config.max_seq_len)
    if not ids:
        raise UserError("the prompt is empty (no tokens); give some text")
    from ..train.memory import check_generation  # the KV cache fits in what loading left free

    check_generation(model, max(1, int(kw.get("num_beams") or 1)), len(ids) + max_new)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    stream = TextStream(tok, stop_ids=eos_ids(model, tok), stops=args.stop)  # cut at a stop string
    seqs = generate_stream(model, ids, max_new, stream,
                           stop=stop_on_strings(tok, len(ids), args.stop), **kw)
    stream.finish()
    return 0 if seqs is not None else 1
