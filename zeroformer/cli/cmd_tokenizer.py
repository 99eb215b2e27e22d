"""`zeroformer tokenizer train`: learn a char / word / byte-level BPE / WordPiece / SentencePiece
(unigram or BPE) vocabulary.

    zeroformer tokenizer train --algo bpe --vocab-size 8000 --out tok/tokenizer.json corpus/*.txt
    zeroformer tokenizer train --algo unigram --vocab-size 8000 --out tok/ corpus/*.txt

BPE and WordPiece write a Hugging Face ``tokenizer.json`` (usable with HF ``tokenizers``); char
and word write zeroformer's own JSON (``{"type": "char"|"word", ...}``); unigram and spm-bpe write
a SentencePiece ``tokenizer.model`` (usable with the ``sentencepiece`` library). `--out` may be a
folder (the file inside it). Input files must be UTF-8 text; for unigram / spm-bpe each line is a
sentence.
"""

from __future__ import annotations

import sys
import time

from ..errors import UserError

ALGOS = ("bpe", "wordpiece", "char", "word", "unigram", "spm-bpe")
SPM_ALGOS = ("unigram", "spm-bpe")


def register(subparsers):
    p = subparsers.add_parser("tokenizer", help="train a tokenizer", description=__doc__)
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", parser_class=type(p))
    t = sub.add_parser("train", help="learn a vocabulary from text files",
                       description=__doc__)
    t.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    t.add_argument("--algo", choices=ALGOS, default="bpe", help="algorithm (default bpe)")
    t.add_argument("--vocab-size", type=int, default=None,
                   help="vocabulary size incl. special tokens (required for bpe/wordpiece)")
    t.add_argument("--out", required=True, help="output file, or folder for tokenizer.json")
    t.add_argument("--special", nargs="*", default=None, metavar="TOKEN",
                   help="special tokens (default per algorithm: <|endoftext|> for bpe, "
                        "[PAD] [UNK] [CLS] [SEP] [MASK] for wordpiece, <pad> <unk> <bos> <eos> for word, none for char)")
    t.add_argument("--character-coverage", type=float, default=0.9995, metavar="F",
                   help="unigram/spm-bpe: the share of characters (by count) the vocabulary keeps; "
                        "the rarest others encode as <unk> (default 0.9995)")
    t.add_argument("--cased", action="store_true", help="wordpiece/word: keep case (default: uncased wordpiece)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)
    p.set_defaults(func=lambda args: p.print_help())


def run_train(args):
    from ..tokenizers.base import read_training_text

    if args.algo in ("bpe", "wordpiece") + SPM_ALGOS and not args.vocab_size:
        raise UserError(f"--vocab-size is required for --algo {args.algo}")
    if args.vocab_size is not None and args.vocab_size < 1:
        raise UserError(f"--vocab-size must be positive, got {args.vocab_size}")
    if not 0 < args.character_coverage <= 1:
        raise UserError(f"--character-coverage must be in (0, 1], got {args.character_coverage}")
    if args.algo in SPM_ALGOS and args.special is not None:
        raise UserError(f"--special is not supported with --algo {args.algo} "
                        "(its pieces are <unk> <s> </s>)")
    texts = read_training_text(args.files)
    progress = not args.quiet and sys.stderr.isatty()
    kw = {} if args.special is None else {"special_tokens": args.special}
    start = time.perf_counter()
    if args.algo == "bpe":
        from ..tokenizers.bpe import BPETokenizer

        tok = BPETokenizer.train(texts, args.vocab_size, progress=not args.quiet, **kw)
    elif args.algo == "wordpiece":
        from ..tokenizers.wordpiece import WordPieceTokenizer

        tok = WordPieceTokenizer.train(texts, args.vocab_size, lowercase=not args.cased,
                                       progress=not args.quiet, **kw)
    elif args.algo in SPM_ALGOS:
        from ..tokenizers import spm_train
        from ..tokenizers.sentencepiece import SentencePieceTokenizer

        train = spm_train.train_unigram if args.algo == "unigram" else spm_train.train_spm_bpe
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        tok = SentencePieceTokenizer(train(texts, args.vocab_size, args.character_coverage,
                                           log=log))
    elif args.algo == "word":
        from ..tokenizers.word import WordTokenizer

        tok = WordTokenizer.train(texts, args.vocab_size, lowercase=False, progress=progress, **kw)
    else:
        from ..tokenizers.char import CharTokenizer

        tok = CharTokenizer.train(texts, args.vocab_size, **kw)
    path = tok.save(args.out)
    print(f"{args.algo}: {tok.vocab_size} tokens from {sum(map(len, texts)):,} characters in "
          f"{time.perf_counter() - start:.1f}s -> {path}")
    return 0
