"""`austen`: Jane Austen's six novels, from the Debian package ``r-cran-janeaustenr`` (MIT).

The R package stores each novel as a character vector (one element per printed line) in a
lazy-load database, ``data/Rdata.rdx`` (index: name -> [offset, length]) + ``data/Rdata.rdb``
(each object = 4-byte big-endian length + compressed R serialization). We read it with PyPI
``rdata`` (``pip install zeroformer[data]``); nothing runs R code.

Result folder: ``emma.txt``, ``mansfieldpark.txt``, ``northangerabbey.txt``, ``persuasion.txt``,
``prideprejudice.txt``, ``sensesensibility.txt`` (lines joined with \\n, UTF-8) and ``input.txt``
= the six in sorted file-name order, separated by a blank line.
"""

from __future__ import annotations

import bz2
import lzma
import warnings
import zlib

from .cache import apt_download, register

NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
          "sensesensibility")


def _decompress(blob: bytes, compressed: int) -> bytes:
    """One lazy-load record -> raw serialization (R's lazyLoadDBfetch)."""
    body = blob[4:]
    if compressed in (2, 3):  # a type byte follows the length
        kind, body = body[:1], body[1:]
        return {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress,
                b"0": bytes}[kind](body)
    return zlib.decompress(body)


def read_lazyload(rdx, rdb) -> dict:
    """{name: python object} for every variable of an R lazy-load database."""
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns about the .rdx extension
        index = rdata.conversion.convert(rdata.parser.parse_file(rdx))
        data = open(rdb, "rb").read()
        compressed = int(index["compressed"][0]) if hasattr(index["compressed"], "__len__") \
            else int(index["compressed"])
        out = {}
        for name, (offset, length) in index["variables"].items():
            raw = _decompress(data[int(offset):int(offset) + int(length)], compressed)
            out[str(name)] = rdata.conversion.convert(rdata.parser.parse_data(raw))
    return out


@register("austen", "Jane Austen's 6 novels, one .txt each + input.txt, 4.0 M characters (MIT)",
          "debian:r-cran-janeaustenr (read with rdata)")
def _austen(tmp, work, quiet):
    try:
        import rdata  # noqa: F401
    except ImportError:
        raise ValueError("needs the rdata package: pip install 'zeroformer[data]'") from None
    root = apt_download("r-cran-janeaustenr", work, quiet)
    found = list(root.glob("usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"))
    if not found:
        raise ValueError("r-cran-janeaustenr: no data/Rdata.rdx")
    objs = read_lazyload(found[0], found[0].with_suffix(".rdb"))
    missing = [n for n in NOVELS if n not in objs]
    if missing:
        raise ValueError(f"r-cran-janeaustenr: missing {missing} (has {sorted(objs)})")
    parts = []
    for name in sorted(NOVELS):
        text = "\n".join(str(line) for line in objs[name]).strip("\n") + "\n"
        (tmp / f"{name}.txt").write_text(text, encoding="utf-8", newline="\n")
        parts.append(text)
    (tmp / "input.txt").write_text("\n".join(parts), encoding="utf-8", newline="\n")
    return ""
