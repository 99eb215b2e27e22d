"""Argument groups and input reading that several `zeroformer` subcommands share (a helper for
the command modules, not a command: command modules import this and the inference layer, never
each other)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError


def add_path_args(p):
    """--dtype/--int8/--int4/--verbose: the inference path (inference/plan.py chooses it)."""
    p.add_argument("--dtype", default=None, metavar="fp32|bf16",
                   help="weights and compute in this dtype, no quantization (fp32: the reference "
                        "path). Default: a quantized GGUF keeps its quantization (4-bit -> int4, "
                        "8-bit -> int8), other models run as stored")
    p.add_argument("--int8", action="store_true",
                   help="int8 weight-only linear layers (faster on CPU, ~1e-2 relative error)")
    p.add_argument("--int4", action="store_true",
                   help="int4 group-wise weight-only linear layers, output layer re-scoring its "
                        "top 64 in int8 (fastest on CPU; CPU only)")
    p.add_argument("--verbose", action="store_true",
                   help="print the path taken (weights, compute, threads) on stderr")


def report(args):
    """The `report` callback of the inference loaders: one `zeroformer: path: ...` line on
    stderr with --verbose, else None."""
    if not getattr(args, "verbose", False):
        return None
    return lambda line: sys.stderr.write(f"zeroformer: path: {line}\n")


def add_model_args(p, sampling=True):
    """--model/--tokenizer, the path flags (add_path_args), and with `sampling` the decoding
    flags."""
    p.add_argument("--model", required=True, metavar="PATH",
                   help="zeroformer checkpoint, Hugging Face folder, or .gguf file")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer file (default: the model's own)")
    add_path_args(p)
    if sampling:
        p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
        p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy")
        p.add_argument("--top-k", type=int, default=None, metavar="K")
        p.add_argument("--top-p", type=float, default=None, metavar="P")
        p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R")
        p.add_argument("--seed", type=int, default=None, metavar="S")


def load_lm(args):
    """(model, tokenizer) of a decoder-only model from the add_model_args flags."""
    from ..inference.load import load_lm as load

    return load(args.model, args.tokenizer, args.dtype, args.int8, args.int4, report(args))


def sampling(args) -> dict:
    """The decoding flags as generate.sample's keywords; bad values refused first (exit 2)."""
    from ..generate import check_sampling_args

    check_sampling_args(args.temperature, args.top_k, args.top_p, 1, args.repetition_penalty)
    if args.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0 (got {args.max_new_tokens})")
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                repetition_penalty=args.repetition_penalty, seed=args.seed)


def read_text(src: str, what: str = "input") -> str:
    """The text of a UTF-8 file, or of stdin for '-'. UserError if unreadable."""
    try:
        return sys.stdin.read() if src == "-" else Path(src).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{what} file not found: {src}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{src}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{src}: cannot read ({e.strerror})") from None


def read_lines(src: str, what: str = "input") -> list[str]:
    """Lines of a file or stdin ('-'), without their line breaks. UserError if unreadable."""
    return read_text(src, what).splitlines()


def add_translation_args(p):
    """The beam-search flags of `translate` and `eval bleu` (defaults and meaning:
    zeroformer/inference/translation.py)."""
    p.add_argument("--beams", type=int, default=4, help="beam width (1 = greedy; default 4)")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="ALPHA",
                   help="score = sum(log p) / lp(|Y|), lp = |Y|^ALPHA (default 1.0)")
    p.add_argument("--length-norm", choices=["length", "gnmt"], default="length",
                   help="lp: |Y|^ALPHA (length, as transformers/Marian; default) or GNMT's "
                        "((5 + |Y|) / 6)^ALPHA (gnmt; the 2017 paper: ALPHA 0.6)")
    p.add_argument("--max-len-a", type=float, default=1.5, metavar="A",
                   help="output limit A x source length + B tokens (default 1.5; paper: 1)")
    p.add_argument("--max-len-b", type=int, default=10, metavar="B",
                   help="(default 10; paper: 50)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences decoded together")


def translation_options(args) -> dict:
    """The add_translation_args flags as inference.translation.translate's keywords, checked."""
    if args.beams < 1:
        raise UserError(f"--beams must be >= 1 (got {args.beams})")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1 (got {args.batch_size})")
    if args.max_len_a < 0 or args.max_len_b < 0:
        raise UserError("--max-len-a and --max-len-b must be >= 0")
    return dict(beams=args.beams, length_penalty=args.length_penalty,
                length_norm=args.length_norm, max_len_a=args.max_len_a,
                max_len_b=args.max_len_b, batch_sentences=args.batch_size)
