"""`zeroformer generate --model PATH --prompt TEXT [--max-new-tokens N] [--temperature T]
[--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--stop STR] [--dtype fp32|bf16]
[--int8 | --int4]`: continue a prompt with a decoder-only model, streaming the text as it is produced.

Temperature 0 (the default) is greedy. A prompt longer than the model's context is cut from the
left (keeping its end) with a warning. The helpers here (`load_lm`, `fit_context`, `TextStream`)
are shared with `zeroformer chat` and `zeroformer eval ppl`.
"""

from __future__ import annotations

import sys

from ..errors import UserError


def add_model_args(p, sampling=True):
    p.add_argument("--model", required=True, metavar="PATH",
                   help="zeroformer checkpoint, Hugging Face folder, or .gguf file")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer file (default: the model's own)")
    p.add_argument("--dtype", default=None, help="compute dtype: fp32 (default) or bf16")
    p.add_argument("--int8", action="store_true",
                   help="int8 weight-only linear layers (faster on CPU, ~1e-2 relative error)")
    p.add_argument("--int4", action="store_true",
                   help="int4 group-wise weight-only linear layers, output layer re-scoring its top 64 in int8 "
                        "(fastest on CPU; CPU only)")
    if sampling:
        p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
        p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy")
        p.add_argument("--top-k", type=int, default=None, metavar="K")
        p.add_argument("--top-p", type=float, default=None, metavar="P")
        p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R")
        p.add_argument("--seed", type=int, default=None, metavar="S")


def register(sub):
    p = sub.add_parser("generate", help="continue a prompt with a language model",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--prompt", required=True, metavar="TEXT")
    p.add_argument("--stop", action="append", default=[], metavar="STR",
                   help="stop when the generated text contains STR (repeatable)")
    p.set_defaults(func=run)


def check_args(args) -> None:
    """Refuse bad sampling parameters before loading anything (exit 2)."""
    from ..generate import check_sampling_args

    check_sampling_args(args.temperature, args.top_k, args.top_p, 1, args.repetition_penalty)
    if args.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0 (got {args.max_new_tokens})")


def load_lm(args):
    """(model, tokenizer) from --model / --tokenizer / --dtype / --int8 / --int4; decoder-only."""
    import zeroformer

    model = zeroformer.load(args.model, dtype=args.dtype)
    if getattr(model.config, "arch", None) != "decoder":
        raise UserError(f"{args.model}: not a decoder-only language model "
                        f"(arch={model.config.arch})")
    tok = zeroformer.load_tokenizer(args.tokenizer) if args.tokenizer else getattr(
        model, "tokenizer", None)
    if tok is None:
        raise UserError(f"{args.model}: the model has no tokenizer; pass --tokenizer PATH")
    int8, int4 = getattr(args, "int8", False), getattr(args, "int4", False)
    if int8 and int4:
        raise UserError("--int8 and --int4 exclude each other")
    if int8 or int4:
        from ..nn.fast import prepare_inference

        prepare_inference(model, fuse=True, int8=int8, int4=int4, int4_head="refine")
    return model.eval(), tok


def encode_prompt(tok, text: str) -> list[int]:
    ids = tok.encode(text)
    bos = getattr(tok, "bos_token_id", None)
    if getattr(tok, "add_bos", False) and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def fit_context(ids: list[int], max_new: int, context: int) -> tuple[list[int], int]:
    """Keep the prompt's last tokens so that prompt + new tokens fit the context (warn if cut)."""
    if max_new >= context:
        max_new = context - 1
        print(f"zeroformer: warning: --max-new-tokens reduced to {max_new} (context {context})",
              file=sys.stderr)
    room = context - max_new
    if len(ids) > room:
        print(f"zeroformer: warning: prompt of {len(ids)} tokens cut from the left to {room} "
              f"(context {context}, {max_new} new tokens)", file=sys.stderr)
        ids = ids[-room:]
    return ids, max_new


class TextStream:
    """Print the text of generated tokens as they arrive. Decodes the whole generated sequence
    each time and prints the new suffix, holding back an incomplete UTF-8 character (U+FFFD)."""

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
    import torch

    def stop(seqs):
        return torch.tensor([any(s in tok.decode(row[prompt_len:].tolist()) for s in strings)
                             for row in seqs], device=seqs.device)

    return stop if strings else None


def eos_ids(model, tok, extra=()) -> list[int]:
    ids = set()
    eos = model.config.eos_token_id
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    for t in extra:
        i = tok.token_to_id(t) if hasattr(tok, "token_to_id") else None
        if i is not None:
            ids.add(i)
    return sorted(ids)


def run(args):
    import torch

    from ..generate import DecoderSession, sample

    check_args(args)
    model, tok = load_lm(args)
    ids, max_new = fit_context(encode_prompt(tok, args.prompt), args.max_new_tokens,
                               model.config.max_seq_len)
    if not ids:
        raise UserError("the prompt is empty (no tokens); give some text")
    prompt = torch.tensor([ids])
    eos = eos_ids(model, tok)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    stream = TextStream(tok, stop_ids=eos)
    session = DecoderSession(model, 1, len(ids) + max_new)
    seqs = sample(session, prompt, max_new, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, eos_token_id=eos or None, seed=args.seed,
                  repetition_penalty=args.repetition_penalty, stream=stream,
                  stop=stop_on_strings(tok, len(ids), args.stop))
    text = stream.text()
    for s in args.stop:  # cut at the first stop string
        if s in text:
            text = text[: text.index(s)]
    stream.finish(text if len(text) >= stream.shown else None)
    return 0 if seqs is not None else 1
