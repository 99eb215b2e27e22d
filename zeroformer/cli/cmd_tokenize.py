"""`zeroformer tokenize --tokenizer PATH TEXT...`: print the token ids (or pieces) of each text.

PATH: a tokenizer.json, vocab.txt, *.tiktoken, a GPT-2 folder (encoder.json + vocab.bpe), a .gguf,
a SentencePiece tokenizer.model, or a checkpoint folder. One line per TEXT (``-`` reads standard input as one text).
"""

from __future__ import annotations

import sys


def register(subparsers):
    p = subparsers.add_parser("tokenize", help="print the token ids of texts", description=__doc__)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text to encode ('-' = stdin)")
    p.add_argument("--tokenizer", "-t", required=True, metavar="PATH", help="tokenizer file or folder")
    p.add_argument("--pieces", action="store_true", help="print the pieces instead of the ids")
    p.add_argument("--special", action="store_true",
                   help="add the special tokens the vocabulary declares ([CLS]/[SEP], <bos>...)")
    p.set_defaults(func=run)


def run(args):
    from ..tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    for text in args.texts:
        if text == "-":
            text = sys.stdin.read()
        ids = tok.encode(text, add_special_tokens=args.special)
        if args.pieces:
            print(" ".join(repr(tok.id_to_token(i)) if " " in tok.id_to_token(i) or not tok.id_to_token(i)
                           else tok.id_to_token(i) for i in ids))
        else:
            print(" ".join(map(str, ids)))
    return 0
