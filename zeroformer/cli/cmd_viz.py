"""`zeroformer viz positions|attention|loss`: pictures for learning (PNG files)."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("viz", help="draw attention maps, positional encodings, loss curves")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    pe = kinds.add_parser("positions", help="heatmap of the sinusoidal positional encoding")
    pe.add_argument("--max-len", type=int, default=100)
    pe.add_argument("--d-model", type=int, default=128)
    pe.add_argument("--layout", choices=["interleaved", "split"], default="interleaved")
    pe.add_argument("--out", default="positions.png")
    pe.set_defaults(func=run_positions)
    at = kinds.add_parser("attention", help="attention weights of one layer for a text")
    at.add_argument("--model", required=True)
    at.add_argument("--text", required=True)
    at.add_argument("--layer", type=int, default=-1, help="layer index (default: the last)")
    at.add_argument("--out", default="attention.png")
    at.set_defaults(func=run_attention)
    lo = kinds.add_parser("loss", help="loss curves of a training run")
    lo.add_argument("run", help="training output folder (or a checkpoint folder)")
    lo.add_argument("--out", default="loss.png")
    lo.set_defaults(func=run_loss)
    p.set_defaults(func=lambda args: p.print_help())


def run_positions(args):
    from ..inference.viz import plot_positional_encoding

    print(plot_positional_encoding(args.out, args.max_len, args.d_model, args.layout))


def run_attention(args):
    from .. import load
    from ..errors import UserError
    from ..inference.viz import attention_for_text, plot_attention

    model = load(args.model)
    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{args.model}: the model has no tokenizer to encode --text with")
    layers, pieces = attention_for_text(model, tok, args.text)
    if not -len(layers) <= args.layer < len(layers):
        raise UserError(f"--layer {args.layer}: the model has {len(layers)} attention layers")
    print(plot_attention(layers[args.layer], pieces, args.out,
                         title=f"{args.model}: layer {args.layer % len(layers)}"))


def run_loss(args):
    from ..inference.viz import plot_loss

    print(plot_loss(args.run, args.out))
