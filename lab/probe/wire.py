"""Lenient parsing of HTTP/1.x request and response heads, exactly as they arrived.

websockets parses strictly and gives up on the first thing it dislikes (HEAD,
HTTP/1.0, a bad header), which is precisely the traffic the lab must still be
able to describe. These helpers never raise: they keep the order and the case
of every header line and report what they could read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CELL_PARAM = "wslab-cell"
"""Query parameter that carries the runner's per-cell correlation id."""

_CELL_SUFFIX = re.compile(r"[?&]" + CELL_PARAM + r"=([A-Za-z0-9_-]+)$")
HEAD_END = b"\r\n\r\n"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What a client speaking HTTP/2 without TLS (h2c, "prior knowledge") sends first."""
READINESS_PATH = "/.wslab-ready"
READINESS_REQUEST = b"GET " + READINESS_PATH.encode() + b" "
"""How the lab's own readiness check (lab/processes.py) begins. Every listener of the probe
server, websockets or tap, answers it itself and records nothing: it is the lab asking whether a
proxy is up, not traffic to observe (a 426 for it once looked like the very error users hunt)."""


def is_readiness_check(head: bytes) -> bool:
    """Whether a request head, as received, is the lab's readiness check."""
    return head.startswith(READINESS_REQUEST)


@dataclass
class RequestHead:
    """A request line and its header lines, in arrival order and original case."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def cell(self) -> str | None:
        """The correlation id the runner appended to the target, if any; else the one in
        the Referer, so that a browser's own follow-up (``/favicon.ico``) joins its page."""
        match = _CELL_SUFFIX.search(self.target)
        if match is None:
            referer = next((value for name, value in self.headers if name.lower() == "referer"), "")
            match = _CELL_SUFFIX.search(referer)
        return match.group(1) if match else None

    @property
    def path(self) -> str:
        """The target without the runner's correlation parameter."""
        return _CELL_SUFFIX.sub("", self.target)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "target": self.target,
            "path": self.path,
            "version": self.version,
            "headers": [list(pair) for pair in self.headers],
        }


@dataclass
class ResponseHead:
    """A status line and its header lines."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "headers": [list(pair) for pair in self.headers],
        }


def may_be_http2(data: bytes) -> bool:
    """Whether ``data`` is, or could still grow into, the HTTP/2 connection preface."""
    return data[: len(HTTP2_PREFACE)] == HTTP2_PREFACE[: len(data)]


def split_http2(data: bytes) -> tuple[bytes, bytes] | None:
    """Split ``data`` into (preface, frames) if it starts with the HTTP/2 preface, else None."""
    if not data.startswith(HTTP2_PREFACE):
        return None
    return data[: len(HTTP2_PREFACE)], data[len(HTTP2_PREFACE) :]


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split ``data`` into (head, rest) at the first blank line, or None if incomplete."""
    index = data.find(HEAD_END)
    if index < 0:
        return None
    return data[:index], data[index + len(HEAD_END) :]


def _header_lines(lines: list[str], limit: int | None = None) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        if limit is not None and len(headers) >= limit:
            break
        if not line:
            continue
        name, sep, value = line.partition(":")
        headers.append((name, value.strip()) if sep else (line, ""))
    return headers


def parse_request_head(data: bytes, max_headers: int | None = None) -> RequestHead | None:
    """Read a request head from the start of ``data``; None if no request line. With
    ``max_headers``, only that many header lines are parsed (the rest stay in ``data``)."""
    text = data.split(HEAD_END, 1)[0].decode("latin-1")
    if max_headers is None:
        lines = text.split("\r\n")
    else:
        lines = text.split("\r\n", max_headers + 1)[: max_headers + 1]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0]:
        return None
    method, target, version = parts
    return RequestHead(method, target, version, _header_lines(lines[1:], max_headers))


def parse_response_head(data: bytes) -> ResponseHead | None:
    """Read a response head from the start of ``data``; None if no status line."""
    text = data.split(HEAD_END, 1)[0].decode("latin-1")
    lines = text.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not status.isdigit():
        return None
    return ResponseHead(version, int(status), reason, _header_lines(lines[1:]))


def with_cell(target: str, cell: str) -> str:
    """Append the correlation parameter to a request target."""
    return f"{target}{'&' if '?' in target else '?'}{CELL_PARAM}={cell}"
