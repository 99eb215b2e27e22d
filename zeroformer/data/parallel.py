"""Parallel corpora (source sentence, target sentence) from the user's files, read leniently.

Three layouts, one reader (`read_parallel`):

    TSV          one pair a line, tab-separated columns; the source and target columns are
                 `src_col` / `tgt_col`: a 0-based index (default 0 and 1: the first two columns)
                 or a column name. Names mean the first non-blank line is a header that must
                 hold both. With indices, a first line whose chosen cells read src/tgt or
                 source/target (any case) is taken as a header and skipped (and said so).
    two files    `path` holds the source sentences and `target` the target sentences, one a line,
                 aligned line by line (train.es + train.en). Unequal line counts are an error:
                 a missing line shifts every pair after it.
    JSON lines   `.jsonl` / `.json`: one object a line with string fields "src" and "tgt".

A line that cannot be a pair (too few columns, an empty side, not UTF-8, not a JSON object with
string "src" and "tgt") is a *bad row*: it is left out and counted by reason (Corpus.bad, with
the first line numbers in Corpus.examples) -- one stray line never stops a training run. Blank
lines of TSV / JSONL are skipped without counting; in two files a blank line is an empty side.
What is an error (UserError, exit 2): a missing file, a binary file (a NUL byte in its first
64 KiB), a named column the header lacks, unequal line counts of two files, and a file that
yields no pair at all.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

HEADER_NAMES = ({"src", "tgt"}, {"source", "target"})
EXAMPLES = 3   # line numbers kept per bad-row reason


@dataclass
class Corpus:
    """The pairs read from `where`, and what was left out."""
    where: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    bad: Counter = field(default_factory=Counter)        # reason -> rows left out
    examples: dict = field(default_factory=dict)         # reason -> first line numbers
    header: bool = False                                 # a header line was skipped

    def reject(self, reason: str, line: int) -> None:
        self.bad[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < EXAMPLES:
            self.examples[reason].append(line)

    def summary(self) -> str:
        """One line: '<where>: N pairs; k bad rows left out (2 missing column: lines 4, 9; ...)'."""
        text = f"{self.where}: {len(self.pairs)} pairs" + (" (header line skipped)" * self.header)
        if self.bad:
            parts = [f"{n} {reason}: line{'s' * (len(self.examples[reason]) > 1)} "
                     + ", ".join(map(str, self.examples[reason])) + (", ..." * (n > EXAMPLES))
                     for reason, n in sorted(self.bad.items())]
            text += f"; {sum(self.bad.values())} bad rows left out ({'; '.join(parts)})"
        return text


def read_parallel(path, target=None, src_col: int | str = 0, tgt_col: int | str = 1) -> Corpus:
    """Read a parallel corpus (see the module docstring for the layouts and what is an error)."""
    p = Path(path)
    if target is not None:
        corpus = _read_two(p, Path(target))
    elif p.suffix.lower() in (".jsonl", ".json"):
        corpus = _read_jsonl(p)
    else:
        corpus = _read_tsv(p, _column(src_col), _column(tgt_col))
    if not corpus.pairs:
        why = f" ({corpus.summary().split('; ', 1)[1]})" if corpus.bad else ""
        raise UserError(f"{corpus.where}: not a parallel corpus: no (source, target) pair in it"
                        f"{why}; expected TSV (source<TAB>target), JSON lines "
                        '({"src": ..., "tgt": ...}) or two aligned text files')
    return corpus


def _column(c):
    """'3' -> 3 (an index given as text on the command line); a name stays a name."""
    if isinstance(c, str) and c.strip().lstrip("-").isdigit():
        c = int(c)
    if isinstance(c, int) and c < 0:
        raise UserError(f"column index must be >= 0 (got {c})")
    return c


def _raw_lines(p: Path) -> list[bytes]:
    """The file's lines as bytes (without line ends); a missing or binary file is an error."""
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"data file not found: {p}") from None
    except IsADirectoryError:
        raise UserError(f"{p}: is a folder, not a data file") from None
    if b"\x00" in data[:65536]:
        raise UserError(f"{p}: a binary file, not a text corpus")
    if data.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte order mark
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _decode(raw: bytes, corpus: Corpus, n: int) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        corpus.reject("not UTF-8", n)
        return None


def _add(corpus: Corpus, src: str, tgt: str, n: int) -> None:
    src, tgt = src.strip(), tgt.strip()
    if not src:
        corpus.reject("empty source", n)
    elif not tgt:
        corpus.reject("empty target", n)
    else:
        corpus.pairs.append((src, tgt))


def _read_tsv(p: Path, src_col, tgt_col) -> Corpus:
    corpus = Corpus(str(p))
    by_name = isinstance(src_col, str) or isinstance(tgt_col, str)
    first = True
    for n, raw in enumerate(_raw_lines(p), 1):
        line = _decode(raw, corpus, n)
        if line is None or not line.strip():
            continue
        cols = line.split("\t")
        if first:
            first = False
            if by_name:
                src_col, tgt_col = (_index_of(c, cols, p) for c in (src_col, tgt_col))
                corpus.header = True
                continue
            if max(src_col, tgt_col) < len(cols) and \
                    {cols[src_col].strip().lower(), cols[tgt_col].strip().lower()} in HEADER_NAMES:
                corpus.header = True
                continue
        if len(cols) <= max(src_col, tgt_col):
            corpus.reject("missing column", n)
            continue
        _add(corpus, cols[src_col], cols[tgt_col], n)
    return corpus


def _index_of(name, header: list[str], p: Path) -> int:
    if isinstance(name, int):
        return name
    names = [h.strip() for h in header]
    if name not in names:
        raise UserError(f"{p}:1: no column named {name!r} in the header "
                        f"({', '.join(repr(h) for h in names)})")
    return names.index(name)


def _read_jsonl(p: Path) -> Corpus:
    corpus = Corpus(str(p))
    for n, raw in enumerate(_raw_lines(p), 1):
        line = _decode(raw, corpus, n)
        if line is None or not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            corpus.reject("not JSON", n)
            continue
        if not isinstance(d, dict) or not isinstance(d.get("src"), str) \
                or not isinstance(d.get("tgt"), str):
            corpus.reject('no string "src" and "tgt"', n)
            continue
        _add(corpus, d["src"], d["tgt"], n)
    return corpus


def _read_two(src: Path, tgt: Path) -> Corpus:
    corpus = Corpus(f"{src} + {tgt}")
    a, b = _raw_lines(src), _raw_lines(tgt)
    if len(a) != len(b):
        raise UserError(f"{src} has {len(a)} lines but {tgt} has {len(b)}: two-file corpora "
                        "must be aligned line by line")
    for n, (x, y) in enumerate(zip(a, b), 1):
        s, t = _decode(x, corpus, n), None
        if s is not None:
            t = _decode(y, corpus, n)
        if s is not None and t is not None:
            _add(corpus, s, t, n)
    return corpus
