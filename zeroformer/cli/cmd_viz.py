"""`zeroformer viz positions|attention|loss|tokenizer`: pictures for learning (PNG files), and a
tokenizer's splitting step by step (text)."""

from __future__ import annotations

STACKS = ("self", "encoder", "decoder", "cross")


def register(sub):
    p = sub.add_parser("viz", help="draw attention maps, positional encodings, loss curves; "
                                   "show how a tokenizer splits a word")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    pe = kinds.add_parser("positions", help="heatmap of the sinusoidal positional encoding")
    pe.add_argument("--max-len", type=int, default=100)
    pe.add_argument("--d-model", type=int, default=128)
    pe.add_argument("--layout", choices=["interleaved", "split"], default="interleaved")
    pe.add_argument("--out", default="positions.png")
    pe.set_defaults(func=run_positions)
    at = kinds.add_parser("attention", help="attention weights of one layer for a text (or one "
                                            "head across the checkpoints of a run)")
    src = at.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint, Hugging Face folder or .gguf file")
    src.add_argument("--run", metavar="DIR",
                     help="a training run folder: one head at each of its step-* checkpoints")
    at.add_argument("--text", required=True, help="the input (a translator's source)")
    at.add_argument("--target", default=None,
                    help="a translator's target text (default: its greedy translation)")
    at.add_argument("--attention", choices=STACKS, default=None,
                    help="which attention: self (decoder-only, BERT), or a translator's encoder "
                         "/ decoder / cross (its default: cross)")
    at.add_argument("--layer", type=int, default=-1, help="layer index (default: the last)")
    at.add_argument("--head", type=int, default=None,
                    help="one head (default: every head; with --run: head 0)")
    at.add_argument("--max-tokens", type=int, default=64, metavar="N")
    at.add_argument("--out", default="attention.png")
    at.set_defaults(func=run_attention)
    lo = kinds.add_parser("loss", help="loss curves of a training run")
    lo.add_argument("run", help="training output folder (or a checkpoint folder)")
    lo.add_argument("--out", default="loss.png")
    lo.set_defaults(func=run_loss)
    tk = kinds.add_parser("tokenizer", help="how a BPE / WordPiece tokenizer splits a text, "
                                            "step by step")
    tk.add_argument("--tokenizer", required=True, metavar="PATH",
                    help="tokenizer file or folder (a checkpoint's, a .gguf's)")
    tk.add_argument("--text", required=True)
    tk.set_defaults(func=run_tokenizer)
    p.set_defaults(func=lambda args: p.print_help())


def run_positions(args):
    from ..inference.viz import plot_positional_encoding

    print(plot_positional_encoding(args.out, args.max_len, args.d_model, args.layout))


def run_attention(args):
    from .. import load
    from ..errors import UserError
    from ..inference.viz import (attention_for_text, attention_over_run, default_stack, pick,
                                 plot_attention)

    if args.run:
        head = 0 if args.head is None else args.head
        maps, q, k = attention_over_run(args.run, args.text, args.attention, args.layer, head,
                                        args.target, args.max_tokens)
        import torch

        print(plot_attention(torch.stack([m for _, m in maps]), q, args.out,
                             title=f"{args.run}: layer {args.layer}, head {head}",
                             panel_titles=[f"step {s}" for s, _ in maps], key_tokens=k))
        return
    model = load(args.model)
    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{args.model}: the model has no tokenizer to encode --text with")
    stack = args.attention or default_stack(model)
    layers, q, k = attention_for_text(model, tok, args.text, stack, args.target, args.max_tokens)
    w = pick(layers, stack, args.layer, args.head)
    heads = [f"head {args.head % layers[0].size(0)}"] if args.head is not None else None
    print(plot_attention(w, q, args.out, panel_titles=heads, key_tokens=k,
                         title=f"{args.model}: {stack} attention, layer "
                               f"{args.layer % len(layers)}"))


def run_loss(args):
    from ..inference.viz import plot_loss

    print(plot_loss(args.run, args.out))


def run_tokenizer(args):
    from .. import load_tokenizer
    from ..inference.split_steps import split_steps

    s = split_steps(load_tokenizer(args.tokenizer), args.text)
    print(f"{s['algorithm']}: {len(s['ids'])} tokens")
    for w in s["words"]:
        print(f"\n{w['word']!r}")
        print(f"  start        {' '.join(w['symbols'])}")
        for n, st in enumerate(w["steps"], 1):
            if "merge" in st:
                key = f"rank {st['rank']}" if "rank" in st else f"score {st['score']:g}"
                print(f"  merge {n:<3} {st['merge'][0]} + {st['merge'][1]} ({key}) -> "
                      f"{' '.join(st['parts'])}")
            elif st["piece"] is None:
                print(f"  at {st['at']:<3}     no prefix in the vocabulary -> the word is [UNK]")
            else:
                n_tried = f"{st['tried']} candidate{'s' if st['tried'] > 1 else ''}"
                print(f"  at {st['at']:<3}     {st['piece']} (the longest in the vocabulary: "
                      f"{n_tried} tried, longest first)")
        print(f"  tokens       {' '.join(w['tokens'])}")
    if s["note"]:
        print(f"\nnote: {s['note']}")
    print(f"\ntokens: {' '.join(s['tokens'])}\nids:    {s['ids']}")
