"""Text from the network or from files, made safe for a terminal: control characters shown, not obeyed.

An STS error body with `\x1b]0;…\x07` retitles the terminal, `\x1b[2K` erases the line that says
what failed, a bidi override reorders what is read; a `metadata.name` in analyzed YAML can carry
the same. Every human output (the table, `-v`, the one-line summary, stderr) shows them as
escapes (`\x1b`, `\u202e`) instead. JSON and YAML output need nothing: their encoders escape them.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: a cell is one line), DEL, C1 controls, and the Unicode
# format characters that reorder or hide text (bidi embeddings, overrides and isolates).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Longest table cell, in characters: a 65,536-character role name must not widen every line.
MAX_CELL = 160


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, newlines: bool = False) -> str:
    """`text` with every control character as a visible escape; `newlines=True` keeps line breaks."""
    return (_CONTROL_KEEP_NEWLINES if newlines else _CONTROL).sub(_escape, text)


def cell(text: str, width: int = MAX_CELL) -> str:
    """One table cell: visible, and cut to `width` characters (the cut marked with '…')."""
    shown = visible(text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"
