"""`zeroformer chat --model PATH [--system TEXT] [--max-new-tokens N] [sampling flags]`: a
multi-turn conversation with an instruction-tuned model, streaming the reply token by token.

The conversation is rendered with the model's own chat template (the Jinja template a GGUF or HF
tokenizer carries, e.g. ChatML for SmolLM2: ``<|im_start|>role\\ncontent<|im_end|>\\n``), run in a
sandbox; a model without a template but with ChatML tokens gets plain ChatML. Each reply ends at
EOS or the template's end-of-turn token (``<|im_end|>``). Type a message and Enter; ``/exit`` or end of
input (Ctrl-D) quits, ``/reset`` starts over.
"""

from __future__ import annotations

import sys

from .common import add_model_args, load_lm, sampling


def register(sub):
    p = sub.add_parser("chat", help="chat with an instruction-tuned model (ChatML template)",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message")
    p.set_defaults(func=run, max_new_tokens=256)


def run(args):
    from ..inference.chat import reply

    kw = sampling(args)
    model, tok = load_lm(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:                      # end of input
            break
        line = line.rstrip("\n")
        if line.strip() in ("/exit", "/quit"):
            break
        if not line.strip():
            continue
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        messages.append({"role": "user", "content": line})
        messages.append({"role": "assistant",
                         "content": reply(model, tok, messages, args.max_new_tokens, **kw)})
    return 0
