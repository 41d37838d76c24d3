"""How the ``beanproto`` command shows things: aligned tables, JSON, and job
bodies that may not be text."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

__all__ = ["table", "emit_json", "emit_line", "preview", "body_fields", "write_raw", "lines"]

#: How much of a body a preview shows.
PREVIEW_BYTES = 400


def table(rows: Sequence[Sequence[object]], header: Sequence[str], out: TextIO) -> None:
    """Print ``rows`` under ``header``, columns aligned (numbers to the right)."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in rows) and rows for i in range(len(header))]
    for row in cells:
        parts = [
            cell.rjust(width) if numeric[i] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(parts).rstrip() + "\n")


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def emit_json(value: Any, out: TextIO) -> None:
    """``value`` as JSON, one document, for scripts."""
    json.dump(value, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def emit_line(value: Any, out: TextIO) -> None:
    """``value`` as one line of JSON (a stream of records)."""
    out.write(json.dumps(value, sort_keys=True, default=str) + "\n")


def preview(body: bytes) -> str:
    """A body as a person may read it: the text if it is UTF-8 without
    control characters (tabs and newlines allowed), else an escaped preview
    that cannot upset the terminal, with its size."""
    shown = body[:PREVIEW_BYTES]
    more = "" if len(body) <= PREVIEW_BYTES else f"\n… ({len(body) - PREVIEW_BYTES} more bytes)"
    text = _text(body)
    if text is not None:
        return text[: len(shown.decode("utf-8", "ignore"))] + more
    return f"(binary, {len(body)} bytes) {shown!r}"[: PREVIEW_BYTES + 40] + more


def _text(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(_unsafe(ch) for ch in text) or "\r" in text.replace("\r\n", ""):
        return None  # (a bare CR could overwrite the line on screen)
    return text


def _unsafe(ch: str) -> bool:
    """Characters a terminal may act on: C0 and C1 controls, DEL, and the
    invisible format characters (bidi overrides …); tab, CR and LF aside."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def body_fields(body: bytes) -> dict[str, Any]:
    """A body for JSON: ``body`` (the text, or ``None`` when it is not text)
    and ``body_hex`` (always)."""
    return {"body": _text(body), "body_hex": body.hex(), "size": len(body)}


def write_raw(body: bytes) -> None:
    """The body's bytes, as they are, on standard output."""
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def lines(pairs: Iterable[tuple[str, object]], out: TextIO) -> None:
    """``key  value`` lines, keys aligned."""
    items = list(pairs)
    width = max((len(k) for k, _ in items), default=0)
    for key, value in items:
        out.write(f"{key.ljust(width)}  {_cell(value)}\n")
