"""Evidence made safe for each medium it is shown in: terminal, Markdown, XML.

Everything in a cell's evidence comes from the network or from files someone
else may have written: header names and values, request targets, raw heads,
websockets' error texts (which quote the request), proxy log lines, scenario
titles and ids, topology names, Chromium's messages. Any of it may carry
terminal escape sequences, bidi overrides, NUL, HTML, Markdown or rich markup.
Each output shows it through one function here, so a person sees what was sent
and the medium does nothing with it:

- terminal and logs: :func:`printable` (from ``wslab.probe.text``, which the
  probe server's own log lines use too) turns every control character into a
  visible escape, ``\\x1b``, ``\\r``, ``\\u202e``; :func:`terminal_text` wraps
  the result in a rich :class:`~rich.text.Text`, never parsed as markup;
- XML (JUnit): :func:`xml_text`, the same escapes, which also remove every
  character XML 1.0 refuses; ElementTree escapes ``&``, ``<``, ``>`` and quotes;
- Markdown (the summary, the explain and compare pages): :func:`markdown_text`
  for prose and table cells, :func:`markdown_code` for an inline code span,
  :func:`markdown_block` for a fenced block;
- HTML: Jinja2's autoescaping and DOM text nodes (``wslab.reports.html``).
"""

from __future__ import annotations

import re

from rich.text import Text

from ..probe.text import printable

__all__ = ["markdown_block", "markdown_code", "markdown_text", "printable", "terminal_text", "xml_text"]


def terminal_text(value: object, style: str = "", multiline: bool = False) -> Text:
    """Untrusted text for a rich console: escaped, and a Text, so never read as markup."""
    return Text(printable(value, multiline), style=style)


def xml_text(value: object, multiline: bool = True) -> str:
    """Untrusted text for an XML attribute or element: no character XML 1.0 refuses, no control.

    What stays (tab, newline, and with ``multiline=False`` not even those) is
    allowed everywhere in XML 1.0; ElementTree then escapes the markup characters.
    """
    return printable(value, multiline)


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BLOCK_START = re.compile(r"^([#+=-]|\d+(?=[.)]))")
"""What would open a heading, a list or a setext underline at the start of a line."""


def markdown_text(value: object) -> str:
    """Untrusted text for a Markdown line or table cell, rendered as the same text.

    ``&``, ``<`` and ``>`` become entities (no inline HTML: ``<script>`` shows as
    text); backslash, backtick, ``*``, ``_``, ``[``, ``]``, ``|`` and ``~`` are
    backslash-escaped (no link, image, code span, emphasis or table column);
    a leading ``#``, ``-``, ``+``, ``=``, list number or space is escaped too, so the
    text opens no block at the start of a line; newlines and other controls become
    visible escapes, so it stays on its line.
    """
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", str(value))
    text = "".join(_HTML.get(char, char) for char in text)
    text = _BLOCK_START.sub(lambda m: m.group() + "\\" if m.group().isdigit() else "\\" + m.group(), text)
    if text.startswith(" "):
        text = "&#32;" + text[1:]
    return printable(text)


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)


def markdown_code(value: object, table: bool = False) -> str:
    """Untrusted text as an inline code span: its fence is longer than any backtick run
    inside, and ``table`` escapes ``|`` (GFM splits table cells before code spans)."""
    text = printable(value)
    if not text:
        return "` `"
    fence = "`" * (_longest_backtick_run(text) + 1)
    if text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " " and text.strip(" ")):
        text = f" {text} "
    if table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def markdown_block(value: object, indent: str = "") -> list[str]:
    """Text as a fenced code block, its lines each prefixed by ``indent``: the fence is
    longer than any backtick run inside, so nothing in the text can close it."""
    text = printable(value, multiline=True)
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return [f"{indent}{fence}", *[f"{indent}{line}" for line in text.splitlines()], f"{indent}{fence}"]
