"""`fortunes`: the quotes of BSD fortune(6), from the Debian packages ``fortunes-min`` and
``fortunes`` (program BSD-licensed; the quotes are of many origins, see the packages'
copyright files).

Each topic file of ``/usr/share/games/fortunes/`` (``computers``, ``wisdom``, ``literature``,
...; the ``.dat`` indexes and ``.u8`` links are skipped) is a list of quotes separated by lines
holding a single ``%``. Text is decoded as UTF-8 (else Latin-1), terminal overstriking
(``_\\bX`` underline, ``X\\bX`` bold) is removed, trailing blank space is stripped, empty quotes
are dropped.

Result folder: ``fortunes.jsonl``, one ``{"topic": ..., "text": ...}`` per line, topics in
sorted order and quotes in file order.
"""

from __future__ import annotations

import json
import re

from .cache import apt_download, read_text, register

PACKAGES = ("fortunes-min", "fortunes")


def overstrike(line: str) -> str:
    """Render terminal overstriking: a backspace moves back one column, and a character typed
    over another wins unless it is the underline ``_`` (so ``_\bX``, ``X\b_``, ``X\bX`` and
    ``abc\b\b\b___`` all print the letters)."""
    if "\x08" not in line:
        return line
    cells, col = [], 0
    for ch in line:
        if ch == "\x08":
            col = max(col - 1, 0)
            continue
        if col < len(cells):
            if ch != "_":
                cells[col] = ch
        else:
            cells.append(ch)
        col += 1
    return "".join(cells)


def split_quotes(text: str) -> list[str]:
    """A fortune file's text -> its quotes (without the ``%`` separators)."""
    text = "\n".join(overstrike(line) for line in text.split("\n"))
    quotes = re.split(r"^%[ \t]*$", text, flags=re.M)
    return [q.strip("\n").rstrip() for q in quotes if q.strip()]


@register("fortunes", "about 15,000 quotes of BSD fortune(6) by topic, fortunes.jsonl "
          "(BSD program; quotes of many origins)", "debian:fortunes-min + fortunes")
def _fortunes(tmp, work, quiet):
    topics = {}
    for pkg in PACKAGES:
        root = apt_download(pkg, work, quiet)
        for f in (root / "usr/share/games/fortunes").iterdir():
            if f.is_file() and not f.is_symlink() and "." not in f.name:
                topics[f.name] = split_quotes(read_text(f.read_bytes()))
    if not topics:
        raise ValueError("the fortunes packages had no topic files")
    with open(tmp / "fortunes.jsonl", "w", encoding="utf-8", newline="\n") as out:
        for topic in sorted(topics):
            for q in topics[topic]:
                out.write(json.dumps({"topic": topic, "text": q}, ensure_ascii=False) + "\n")
    return ""
