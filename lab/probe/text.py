"""Untrusted text made safe to show: every control character becomes a visible escape.

Everything the probe server records comes from the network: header names and
values, request targets, and websockets' error texts, which quote them. A
header value such as ``"\\x1b]0;pwned\\x07"`` or ``"\\x1b[2J"`` written raw to a
terminal rewrites the title or clears the screen; a bare ``"\\r"`` or ``"\\n"``
forges a log line. :func:`printable` turns each such code point into the
escape a person can read (``\\x1b``, ``\\r``, ``\\u202e``), so the line shows
what was sent and does nothing else.

It is the one escaping function for terminals and logs: the probe server's own
log lines use it, and so do every report and command of the lab
(``wslab.reports.safe_text`` builds the Markdown and XML escaping on it). Like
the rest of ``wslab.probe``, it depends on the standard library only.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

_CONTROLS = "\x0b-\x1f\x7f-\x9f"
"""C0 controls after LF (ESC, CR...), DEL and the C1 controls (0x9b is an 8-bit CSI)."""
_OTHERS = (
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff"  # lone surrogates (a JSON string may hold one): no encoding can write them
    "\ufffe\uffff"  # noncharacters, refused by XML 1.0 too
)
_SINGLE_LINE = re.compile(f"[\x00-\x0a{_CONTROLS}{_OTHERS}]")
_MULTI_LINE = re.compile(f"[\x00-\x08{_CONTROLS}{_OTHERS}]")
"""The same without tab (0x09) and newline (0x0a)."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, multiline: bool = False) -> str:
    """``text`` (``str()`` of it) with every control character shown as a visible escape.

    Escaped: the C0 controls (``\\x1b`` for ESC, ``\\x00``, and ``\\r``, ``\\n``,
    ``\\t``), DEL, the C1 controls (``\\x9b``, an 8-bit CSI), the bidirectional
    marks, embeddings, overrides and isolates (``\\u202e``), U+2028 and U+2029,
    lone surrogates and U+FFFE/U+FFFF. ``multiline`` keeps newline and tab, for a
    block meant to span lines (a log tail, a config, a fix). Nothing else changes,
    a backslash included, so ordinary text reads as it is.
    """
    return (_MULTI_LINE if multiline else _SINGLE_LINE).sub(_escape, str(text))
