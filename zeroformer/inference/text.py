"""Text in, text out for a decoder-only model: prompt ids, fitting the context, the EOS ids,
streaming the generated text, and the one call to the model's `generate` that the `generate`
and `chat` commands share.

Streaming decodes the whole generated sequence at every token and emits the new suffix, holding
back an incomplete UTF-8 character (decoded as U+FFFD) until its last byte arrives.
"""

from __future__ import annotations

import sys

import torch


def encode_prompt(tok, text: str) -> list[int]:
    """The prompt's ids, with the tokenizer's BOS in front when it asks for one (`add_bos`)."""
    ids = tok.encode(text)
    bos = getattr(tok, "bos_token_id", None)
    if getattr(tok, "add_bos", False) and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def warn(message: str) -> None:
    print(f"zeroformer: warning: {message}", file=sys.stderr)


def fit_context(ids: list[int], max_new: int, context: int, warn=warn) -> tuple[list[int], int]:
    """Keep the prompt's last tokens so that prompt + new tokens fit the context; `warn(text)`
    says what was cut. -> (ids, max_new)."""
    if max_new >= context:
        max_new = context - 1
        warn(f"--max-new-tokens reduced to {max_new} (context {context})")
    room = context - max_new
    if len(ids) > room:
        warn(f"prompt of {len(ids)} tokens cut from the left to {room} "
             f"(context {context}, {max_new} new tokens)")
        ids = ids[-room:]
    return ids, max_new


def eos_ids(model, tok, extra=()) -> list[int]:
    """The model's EOS id(s) plus the ids of the token strings `extra` the tokenizer knows."""
    ids = set()
    eos = model.config.eos_token_id
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    for t in extra:
        i = tok.token_to_id(t) if hasattr(tok, "token_to_id") else None
        if i is not None:
            ids.add(i)
    return sorted(ids)


class TextStream:
    """Write the text of generated tokens to `out` as they arrive (a `stream` for
    generate.sample); tokens in `stop_ids` are not shown."""

    def __init__(self, tok, out=None, stop_ids=()):
        self.tok, self.out, self.stop_ids = tok, out or sys.stdout, set(stop_ids)
        self.ids: list[int] = []
        self.shown = 0

    def text(self) -> str:
        return self.tok.decode([i for i in self.ids if i not in self.stop_ids])

    def __call__(self, token) -> None:
        self.ids.append(int(token[0]))
        text = self.text()
        if text.endswith("\ufffd"):
            return
        if len(text) > self.shown:
            self.out.write(text[self.shown:])
            self.out.flush()
            self.shown = len(text)

    def finish(self, text: str | None = None) -> None:
        text = self.text() if text is None else text
        if len(text) > self.shown:
            self.out.write(text[self.shown:])
        self.out.write("\n")
        self.out.flush()


def stop_on_strings(tok, prompt_len: int, strings):
    """A `stop(seqs)` for generate.sample: True for rows whose new text contains a stop string."""

    def stop(seqs):
        return torch.tensor([any(s in tok.decode(row[prompt_len:].tolist()) for s in strings)
                             for row in seqs], device=seqs.device)

    return stop if strings else None


def generate_stream(model, ids: list[int], max_new: int, stream: TextStream, stop=None,
                    **sampling) -> torch.Tensor:
    """Continue one prompt (ids already fitted to the context) with the model's one `generate`,
    feeding each new token to `stream`; EOS is any of `stream.stop_ids`. sampling: temperature,
    top_k, top_p, repetition_penalty, seed. -> (1, len(ids) + n) ids."""
    eos = sorted(stream.stop_ids) or None
    return model.generate(torch.tensor([ids]), max_new, eos_token_id=eos, stream=stream, stop=stop,
                          **sampling)
