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

from ..errors import UserError
from .cmd_generate import (TextStream, add_model_args, check_args, eos_ids, fit_context,
                           load_lm)

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>")


def register(sub):
    p = sub.add_parser("chat", help="chat with an instruction-tuned model (ChatML template)",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message")
    p.set_defaults(func=run, max_new_tokens=256)


def render(tok, messages: list[dict]) -> str:
    """The prompt text for `messages` + the assistant's turn opener, from the chat template."""
    template = getattr(tok, "chat_template", None)
    if template:
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            template = None
    if template:
        def raise_exception(msg):
            raise UserError(f"chat template: {msg}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            return env.from_string(template).render(
                messages=messages, add_generation_prompt=True,
                bos_token=_token(tok, "bos"), eos_token=_token(tok, "eos"))
        except UserError:
            raise
        except Exception as e:  # a template we cannot render: say so, no traceback
            raise UserError(f"cannot render the model's chat template: {e}") from None
    if tok.token_to_id("<|im_start|>") is None:
        raise UserError("the model has no chat template (and no ChatML tokens); "
                        "use `zeroformer generate` instead")
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n"


def _token(tok, role) -> str:
    i = getattr(tok, f"{role}_token_id", None)
    return tok.id_to_token(i) if i is not None else ""


def reply(model, tok, messages, args, out=None) -> str:
    """Generate the assistant's next message (streamed to `out`) and return its text."""
    import torch

    from ..generate import DecoderSession, sample

    ids = tok.encode(render(tok, messages))   # special tokens in the text become their ids
    ids, max_new = fit_context(ids, args.max_new_tokens, model.config.max_seq_len)
    stops = eos_ids(model, tok, END_OF_TURN)
    stream = TextStream(tok, out=out, stop_ids=stops)
    session = DecoderSession(model, 1, len(ids) + max_new)
    sample(session, torch.tensor([ids]), max_new, temperature=args.temperature, top_k=args.top_k,
           top_p=args.top_p, eos_token_id=stops or None, seed=args.seed,
           repetition_penalty=args.repetition_penalty, stream=stream)
    stream.finish()
    return stream.text().strip()


def run(args):
    check_args(args)
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
        messages.append({"role": "assistant", "content": reply(model, tok, messages, args)})
    return 0
