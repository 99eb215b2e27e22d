"""Labelled text files for classification: TSV or JSON lines, read strictly.

TSV (tab-separated, no quoting): ``text<TAB>label`` or ``text<TAB>text_b<TAB>label`` on every line;
an optional first line ``text<TAB>label`` / ``text<TAB>text_b<TAB>label`` is a header.
JSON lines (``.jsonl`` / ``.json``): ``{"text": ..., "label": ...}`` with an optional ``"text_b"``.
Blank lines are skipped. A line with the wrong number of columns, a missing field, an empty text
or label, or (when `labels` is given) a label outside `labels` raises UserError naming FILE:LINE.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

HEADERS = (["text", "label"], ["text", "text_b", "label"])


def read_labelled(path, labels: list[str] | None = None) -> list[tuple[str, str | None, str]]:
    """-> [(text, text_b or None, label)], in file order."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"data file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None
    jsonl = p.suffix.lower() in (".jsonl", ".json")
    rows, width = [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        if jsonl:
            row = _json_row(line, where)
        else:
            cols = line.split("\t")
            if n == 1 and cols in HEADERS:
                continue
            if len(cols) not in (2, 3):
                raise UserError(f"{where}: expected 2 or 3 tab-separated columns "
                                f"(text[, text_b], label), found {len(cols)}")
            if width is not None and len(cols) != width:
                raise UserError(f"{where}: {len(cols)} columns, but earlier lines have {width}")
            width = len(cols)
            row = (cols[0], cols[1] if len(cols) == 3 else None, cols[-1].strip())
        if not row[0].strip():
            raise UserError(f"{where}: empty text")
        if not row[2]:
            raise UserError(f"{where}: empty label")
        if labels is not None and row[2] not in labels:
            raise UserError(f"{where}: unknown label {row[2]!r} (the model knows: "
                            f"{', '.join(labels)})")
        rows.append(row)
    if not rows:
        raise UserError(f"{p}: no labelled examples")
    return rows


def _json_row(line: str, where: str):
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict) or "text" not in d or "label" not in d:
        raise UserError(f"{where}: expected an object with \"text\" and \"label\"")
    extra = sorted(set(d) - {"text", "text_b", "label"})
    if extra:
        raise UserError(f"{where}: unexpected field(s) {', '.join(extra)}")
    if not isinstance(d["text"], str) or not isinstance(d.get("text_b", ""), str):
        raise UserError(f"{where}: \"text\" and \"text_b\" must be strings")
    return d["text"], d.get("text_b"), str(d["label"]).strip()
