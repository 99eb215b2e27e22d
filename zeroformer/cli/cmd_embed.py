"""`zeroformer embed --model PATH [FILE|-] [--out X.npy|X.jsonl] [--jsonl]`: sentence embeddings.

Each input line is one text. Its embedding is the mean of BERT's last hidden states over the real
tokens of ``[CLS] text [SEP]``, L2-normalised (sentence-transformers' mean pooling):

    e = normalize( sum_t m_t h_L[t] / sum_t m_t )          (H,) with |e| = 1

Output row i is input line i. An empty (or whitespace-only) line is NOT dropped: it embeds to the
vector of the empty text, i.e. of ``[CLS] [SEP]`` alone - exactly what transformers +
mean pooling (and sentence-transformers' ``encode("")``) give - so rows stay aligned with lines.
Texts longer than the model's limit (sentence_bert_config.json's max_seq_length, else the position
table) are truncated, as sentence-transformers does.

Output: ``--out X.npy`` a float32 (N, H) array; ``--out X.jsonl`` or no ``--out`` (stdout): one JSON
object per line, ``{"text": ..., "embedding": [...]}``; ``--jsonl`` forces JSON lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..errors import UserError


def register(sub):
    p = sub.add_parser("embed", help="sentence embeddings from a BERT model (mean-pooled, L2-normalised)")
    p.add_argument("--model", required=True, help="BERT model folder (e.g. all-MiniLM-L6-v2)")
    p.add_argument("input", nargs="?", default="-", help="text file, one text per line (default: stdin)")
    p.add_argument("--out", help="output .npy or .jsonl file (default: JSON lines on stdout)")
    p.add_argument("--jsonl", action="store_true", help="write JSON lines (also with --out)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------- shared helpers
def load_encoder(path):
    """Load a BERT model (any heads) and its tokenizer; UserError when either is missing."""
    from .. import load, load_tokenizer

    model = load(path)
    if getattr(model.config, "arch", None) != "encoder":
        raise UserError(f"{path}: not a BERT (encoder) model (arch={model.config.arch!r})")
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        tok = load_tokenizer(path)
    model.eval()
    return model, tok


def max_length_of(model, path, override=None) -> int:
    if override is not None:
        if override < 2:
            raise UserError(f"--max-length must be at least 2 (got {override})")
        return min(override, model.config.max_seq_len)
    st = Path(path) / "sentence_bert_config.json"
    if st.is_file():
        try:
            return min(int(json.loads(st.read_text())["max_seq_length"]), model.config.max_seq_len)
        except (ValueError, KeyError, TypeError):
            pass
    return model.config.max_seq_len


def bert_batch(tok, texts, max_length: int):
    """texts -> {"input_ids", "attention_mask", "token_type_ids"} (B, T), each row
    ``[CLS] ids[:max_length-2] [SEP]`` right-padded (BERT framing whatever the tokenizer's own
    `wrap` does; without [CLS]/[SEP] in the vocabulary, just the ids). Raises UserError naming
    the text's position when it has no tokens at all."""
    cls, sep = tok.cls_token_id, tok.sep_token_id
    framed = cls is not None and sep is not None
    rows = []
    for k, t in enumerate(texts):
        ids = tok.encode(t)
        rows.append([cls] + ids[:max_length - 2] + [sep] if framed else ids[:max_length])
        if not rows[-1]:
            raise UserError(f"text {k + 1} ({t!r}) has no tokens and this tokenizer has no "
                            "[CLS]/[SEP]: cannot embed an empty text")
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@torch.inference_mode()
def embed_texts(model, tok, texts, batch_size=32, max_length=512) -> torch.Tensor:
    """texts (N strings) -> (N, H) float32 unit vectors. Batches texts of similar length together
    (less padding) and returns rows in the input order."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be positive (got {batch_size})")
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = torch.empty(len(texts), model.config.d_model)
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        enc = bert_batch(tok, [texts[i] for i in idx], max_length)
        e = model.sentence_embedding(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        out[idx] = e.float()
    return out


def read_lines(src: str) -> list[str]:
    """Lines of a file or stdin ('-'), without their line breaks. UserError if unreadable."""
    try:
        text = sys.stdin.read() if src == "-" else Path(src).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"input file not found: {src}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{src}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{src}: cannot read ({e.strerror})") from None
    return text.splitlines()


# ------------------------------------------------------------------------------------- command
def run(args):
    texts = read_lines(args.input)
    model, tok = load_encoder(args.model)
    emb = embed_texts(model, tok, texts, args.batch_size, max_length_of(model, args.model, args.max_length))
    jsonl = args.jsonl or args.out is None or not args.out.endswith(".npy")
    if not jsonl:
        import numpy as np

        np.save(args.out, emb.numpy().astype("float32"))
        sys.stderr.write(f"{len(texts)} embeddings of size {emb.shape[1]} -> {args.out}\n")
        return 0
    f = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for t, e in zip(texts, emb.tolist()):
            f.write(json.dumps({"text": t, "embedding": [round(x, 7) for x in e]}) + "\n")
    finally:
        if args.out:
            f.close()
    return 0
