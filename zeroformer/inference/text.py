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


class Detokenizer:
    """The text of generated tokens as they arrive, for streaming: `add(token)` -> the new text
    that is safe to show (an incomplete UTF-8 character or the start of a possible stop string
    is held back; text from a stop string on is never shown); `end()` -> the rest."""

    def __init__(self, tok, hidden=(), stops=()):
        self.tok, self.hidden, self.stops = tok, set(hidden), [s for s in stops if s]
        self.ids: list[int] = []
        self.shown = 0
        self.stopped = False

    def text(self) -> str:
        text = self.tok.decode([i for i in self.ids if i not in self.hidden])
        for s in self.stops:
            if s in text:
                text, self.stopped = text[:text.index(s)], True
        return text

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.text()
        safe = len(text)
        if text.endswith("\ufffd"):
            safe = len(text.rstrip("\ufffd"))
        if not self.stopped:
            for s in self.stops:        # hold back a suffix that may begin a stop string
                for k in range(min(len(s) - 1, safe), 0, -1):
                    if text[:safe].endswith(s[:k]):
                        safe -= k
                        break
        return self._emit(text, safe)

    def end(self) -> str:
        text = self.text()
        return self._emit(text, len(text))

    def _emit(self, text: str, upto: int) -> str:
        if upto <= self.shown:
            return ""
        out, self.shown = text[self.shown:upto], upto
        return out


class TextStream:
    """Write the text of generated tokens to `out` as they arrive (a `stream` for
    generate.sample), through a Detokenizer: tokens in `stop_ids` are not shown, an incomplete
    UTF-8 character or a possible start of one of `stops` is held back, and nothing from a stop
    string on is ever written."""

    def __init__(self, tok, out=None, stop_ids=(), stops=()):
        self.out = out or sys.stdout
        self.detok = Detokenizer(tok, hidden=stop_ids, stops=stops)
        self.stop_ids = self.detok.hidden

    def text(self) -> str:
        return self.detok.text()

    def __call__(self, token) -> None:
        self._write(self.detok.add(int(token[0])))

    def finish(self) -> None:
        self._write(self.detok.end() + "\n")

    def _write(self, piece: str) -> None:
        if piece:
            self.out.write(piece)
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
