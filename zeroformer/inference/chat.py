"""Chat: render a conversation with the model's chat template, and generate one reply.

The template is the Jinja one a GGUF or HF tokenizer carries (e.g. ChatML for SmolLM2:
``<|im_start|>role\\ncontent<|im_end|>\\n``), run in jinja2's immutable sandbox; a tokenizer
without a template but with ChatML tokens gets plain ChatML. A reply ends at EOS or an
end-of-turn token (END_OF_TURN).
"""

from __future__ import annotations

from ..errors import UserError
from .text import TextStream, eos_ids, fit_context, generate_stream

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>")


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


def end_of_turn_id(tok) -> int | None:
    """The id of the first END_OF_TURN token the tokenizer knows (None: it knows none)."""
    return next((tok.token_to_id(t) for t in END_OF_TURN if tok.token_to_id(t) is not None), None)


def reply(model, tok, messages, max_new_tokens: int, out=None, **sampling) -> str:
    """Generate the assistant's next message (streamed to `out`) and return its text."""
    ids = tok.encode(render(tok, messages))   # special tokens in the text become their ids
    ids, max_new = fit_context(ids, max_new_tokens, model.config.max_seq_len)
    stream = TextStream(tok, out=out, stop_ids=eos_ids(model, tok, END_OF_TURN))
    generate_stream(model, ids, max_new, stream, **sampling)
    stream.finish()
    return stream.text().strip()
