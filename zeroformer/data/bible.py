"""`bible-es-en`: a verse-aligned Spanish–English parallel corpus (both texts public domain).

Sources (Debian packages, read with PyPI ``pysword``; ``pip install zeroformer[data]``):
- Spanish: ``sword-text-sparv`` = Reina-Valera 1909 (module spaRV1909eb, KJV versification);
- English: ``sword-text-web`` = World English Bible (module engWEB2015eb, NRSVA versification).

Both are OSIS markup. Cleaning: ``<note>...</note>`` (footnotes, variant readings),
``<speaker>``, ``<catchWord>`` and non-canonical ``<title>`` (headings) are dropped with their
content; every other tag is removed keeping its text (so a canonical psalm superscription
stays in verse 1, as in the Spanish text, which has it there as plain text);
a dropped note between two letters becomes a space (WEB writes ``God<note>..</note>created``);
whitespace is collapsed. Verses are paired by (book, chapter, verse) over the 66 books both
have (the WEB's deuterocanon has no Spanish side); a pair is kept when both sides are non-empty.
The two versifications differ only in 3 John 1:15 and Revelation 12:18 (WEB only): dropped.

Files (UTF-8, tab-separated, no header, columns ``book chapter verse spanish english``, book
= pysword's English book name, e.g. "Genesis", "I Kings"):
- ``pairs.tsv``: every pair, in canonical order;
- ``train.tsv`` / ``valid.tsv`` / ``test.tsv``: the same rows split BY WHOLE BOOK, never by
  verse (neighbouring verses repeat phrases, which would leak test text into training):

  - valid: Esther, Micah, Philippians, I John
  - test:  Ruth, Jonah, Galatians, James
  - train: the other 58 books.

  Short books from different genres (narrative, prophecy, epistle) so that valid and test
  look like the training text; the synoptic gospels stay in train together, because Mark
  or Luke in test would be largely a re-run of Matthew.
- ``stats.json``: pair and character counts per split.
"""

from __future__ import annotations

import functools
import json
import re

from .cache import apt_download, register

VALID_BOOKS = ("Esther", "Micah", "Philippians", "I John")
TEST_BOOKS = ("Ruth", "Jonah", "Galatians", "James")

_MODULES = {  # Debian package -> (module folder, pysword versification)
    "sword-text-sparv": ("spaRV1909eb", "kjv"),
    "sword-text-web": ("engWEB2015eb", "nrsva"),
}
_DROP = re.compile(r"<(note|speaker|catchWord)\b[^>]*?(?<!/)>.*?</\1>"
                   r"|<title(?![^>]*canonical=\"true\")[^>]*?(?<!/)>.*?</title>", re.S)
_TAG = re.compile(r"<[^>]*>")
_CHAPTER_END = re.compile(r"<chapter\b[^>]*\beID=")
_GAP = "\x00"


def clean_osis(text: str) -> str:
    """OSIS verse markup -> plain text (see the module docstring for the rules).

    Whatever follows a chapter's end marker is not the verse (the WEB appends its whole glossary,
    17,500 characters, to Revelation 22:21 that way), so it is cut."""
    text = _CHAPTER_END.split(text, maxsplit=1)[0]
    text = _DROP.sub(_GAP, text)
    text = _TAG.sub("", text)
    text = re.sub(rf"(?<=\w){_GAP}(?=\w)", " ", text).replace(_GAP, "")
    return " ".join(text.split())


def split_of(book: str) -> str:
    """'train', 'valid' or 'test' for a book name."""
    return "valid" if book in VALID_BOOKS else "test" if book in TEST_BOOKS else "train"


def _read(package, work, quiet):
    """{(book, chapter, verse): clean text} and the book order of one SWORD module."""
    from pysword.bible import SwordBible

    module, versification = _MODULES[package]
    root = apt_download(package, work, quiet)
    path = root / "usr/share/sword/modules/texts/ztext" / module
    if not path.is_dir():
        raise ValueError(f"{package}: no module folder {module}")
    bible = SwordBible(str(path), "ztext", versification, "utf8", "OSIS")
    if hasattr(bible, "_decompressed_text"):
        # pysword inflates the whole compressed block (one per book here) for every verse:
        # remembering the last blocks makes reading the Bible ~100x faster.
        bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    verses, order = {}, []
    for books in bible.get_structure().get_books().values():
        for book in books:
            order.append(book.name)
            for ch, n in enumerate(book.chapter_lengths, start=1):
                for v in range(1, n + 1):
                    raw = bible.get(books=[book.name], chapters=[ch], verses=[v], clean=False)
                    text = clean_osis(raw)
                    if text:
                        verses[(book.name, ch, v)] = text
    return verses, order


def _row(key, es, en):
    book, ch, v = key
    return f"{book}\t{ch}\t{v}\t{es}\t{en}\n"


@register("bible-es-en", "Spanish–English verse pairs (Reina-Valera 1909 / World English Bible), "
          "split by book (public domain)", "debian:sword-text-sparv + sword-text-web (pysword)",
          version=3)
def _bible(tmp, work, quiet):
    try:
        import pysword  # noqa: F401
    except ImportError:
        raise ValueError("needs the pysword package: pip install 'zeroformer[data]'") from None
    es, order = _read("sword-text-sparv", work, quiet)
    en, _ = _read("sword-text-web", work, quiet)
    rank = {b: i for i, b in enumerate(order)}
    keys = sorted((k for k in es if k in en), key=lambda k: (rank[k[0]], k[1], k[2]))
    for b in VALID_BOOKS + TEST_BOOKS:
        if b not in rank:
            raise ValueError(f"book {b!r} missing from the Spanish module")
    files = {s: open(tmp / f"{s}.tsv", "w", encoding="utf-8", newline="\n")
             for s in ("train", "valid", "test")}
    stats = {s: {"pairs": 0, "chars_es": 0, "chars_en": 0, "books": []}
             for s in ("pairs", "train", "valid", "test")}
    with open(tmp / "pairs.tsv", "w", encoding="utf-8", newline="\n") as allf:
        for k in keys:
            row = _row(k, es[k], en[k])
            split = split_of(k[0])
            allf.write(row)
            files[split].write(row)
            for s in ("pairs", split):
                st = stats[s]
                st["pairs"] += 1
                st["chars_es"] += len(es[k])
                st["chars_en"] += len(en[k])
                if not st["books"] or st["books"][-1] != k[0]:
                    st["books"].append(k[0])
    for f in files.values():
        f.close()
    stats["pairs"]["books"] = len(stats["pairs"]["books"])
    stats["train"]["books"] = len(stats["train"]["books"])
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    return ""
