"""`zeroformer explain`: one self-contained HTML page walking a forward pass of a model (the
tokens, embedding + position, every layer's and head's attention, the residual stream, the
output distribution with a temperature slider). Data: inference/explain.py; page:
inference/explain_page.py."""

from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser("explain", help="an HTML page that walks one forward pass of a model")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="zeroformer checkpoint or run, Hugging Face folder, or .gguf file")
    p.add_argument("--text", required=True, help="the input (a translator's source)")
    p.add_argument("--target", default=None,
                   help="a translator's target text (default: its greedy translation)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer file (default: the model's own)")
    p.add_argument("--max-tokens", type=int, default=64, metavar="N",
                   help="tokens shown per side; a longer text is cut, with a note (default 64)")
    p.add_argument("--top", type=int, default=100, metavar="K",
                   help="logits embedded per position for the temperature slider (default 100)")
    p.add_argument("--out", default="explain.html", metavar="FILE")
    p.set_defaults(func=run)


def run(args):
    from .. import load, load_tokenizer
    from ..errors import UserError
    from ..inference.explain import explain
    from ..inference.explain_page import render
    from ..io.files import write_text_atomic

    if args.top < 10:
        raise UserError(f"--top must be at least 10 (got {args.top})")
    model = load(args.model).eval()
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else model.tokenizer
    if tok is None and model.config.arch == "encoder":
        tok = load_tokenizer(args.model)  # a BERT folder's vocab.txt / tokenizer.json
    if tok is None:
        raise UserError(f"{args.model}: the model has no tokenizer; pass --tokenizer PATH")
    data = explain(model, tok, args.text, args.target, args.max_tokens, args.top, args.model)
    page = render(data)
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        out = write_text_atomic(args.out, page)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write ({e.strerror})") from None
    for note in data["notes"]:
        print(f"note: {note}")
    print(out)
