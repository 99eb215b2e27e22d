"""The word2vec text format (word2vec.c `-binary 0`; gensim's `save_word2vec_format(binary=False)`):

    <number of words> <dimensions>
    <word> <v_1> <v_2> ... <v_d>          one line per word, numbers separated by single spaces

`write` is atomic (temp file + os.replace). `read` treats the file as hostile: the header must be
two positive integers, every line exactly one word and d numbers, the count of lines as the
header says; anything else is a UserError naming the line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..errors import UserError


def write(path, words: list[str], vectors: torch.Tensor) -> Path:
    """Write `words` (N) and `vectors` (N, d) in the word2vec text format."""
    path = Path(path)
    if vectors.dim() != 2 or vectors.size(0) != len(words):
        raise ValueError(f"{len(words)} words but vectors of shape {tuple(vectors.shape)}")
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise UserError(f"word {bad[0]!r} cannot be written in the word2vec text format "
                        "(empty or contains whitespace)")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    rows = vectors.detach().float().cpu().tolist()
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{len(words)} {vectors.size(1)}\n")
            for w, row in zip(words, rows):
                f.write(w + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read(path) -> tuple[list[str], torch.Tensor]:
    """(words, vectors (N, d) float32) from a word2vec text file."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        try:
            head = f.readline().split()
            if len(head) != 2 or not all(h.isdigit() for h in head) or int(head[1]) < 1:
                raise UserError(f"{path}:1: not a word2vec text file (the first line must be "
                                "'<words> <dimensions>')")
            n, d = int(head[0]), int(head[1])
            words, rows = [], []
            for lineno, line in enumerate(f, 2):
                if not line.strip():
                    continue
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if len(parts) != d + 1:
                    raise UserError(f"{path}:{lineno}: {len(parts) - 1} numbers, expected {d}")
                try:
                    row = [float(x) for x in parts[1:]]
                except ValueError:
                    raise UserError(f"{path}:{lineno}: not a number among the vector") from None
                if not all(math.isfinite(x) for x in row):
                    raise UserError(f"{path}:{lineno}: the vector holds inf or nan")
                words.append(parts[0])
                rows.append(row)
                if len(words) > n:
                    raise UserError(f"{path}:{lineno}: more words than the header's {n}")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text (a binary word2vec file? write it with "
                            "binary=False)") from None
    if len(words) != n:
        raise UserError(f"{path}: the header says {n} words, the file has {len(words)}")
    return words, torch.tensor(rows, dtype=torch.float32).reshape(n, d)
