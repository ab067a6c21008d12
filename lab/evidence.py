"""Facts derived from a cell's evidence, shared by expectations and diagnosis.

The client's transcript says what was sent and what came back; the server's
observations say what arrived. :class:`Facts` puts the two side by side so
that checks and diagnosis rules read as plain comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .probe.redact import redact_header_value, redact_headers, redact_record, redact_target


def header(headers: list[list[str]] | None, name: str) -> str | None:
    """All values of header ``name`` joined by ', ', or None if absent."""
    values = [value for key, value in headers or [] if key.lower() == name.lower()]
    return ", ".join(values) if values else None


def tokens(value: str | None) -> list[str]:
    return [token.strip().lower() for token in (value or "").split(",") if token.strip()]


def asks_upgrade(request: dict[str, Any] | None) -> bool:
    """True if a request head carries a WebSocket upgrade (Connection + Upgrade)."""
    if request is None:
        return False
    return "upgrade" in tokens(header(request["headers"], "Connection")) and "websocket" in tokens(
        header(request["headers"], "Upgrade")
    )


@dataclass
class Facts:
    """What one cell's client and server saw, side by side."""

    transcript: dict[str, Any]
    connections: list[dict[str, Any]]

    @property
    def sent(self) -> dict[str, Any] | None:
        return self.transcript.get("sent")

    @property
    def status(self) -> int | None:
        received = self.transcript.get("received")
        return received["status"] if received else None

    @property
    def server(self) -> dict[str, Any] | None:
        """The first connection the server saw for this cell, if any."""
        return min(self.connections, key=lambda c: c["opened_at"]) if self.connections else None

    @property
    def reached_server(self) -> bool:
        return bool(self.connections)

    @property
    def server_request(self) -> dict[str, Any] | None:
        return self.server["request"] if self.server else None

    @property
    def server_error(self) -> str | None:
        error = self.server["error"] if self.server else None
        return error["text"] if error else None

    @property
    def server_status(self) -> int | None:
        response = self.server["response"] if self.server else None
        return response["status"] if response else None

    @property
    def client_asked_upgrade(self) -> bool:
        return asks_upgrade(self.sent)

    @property
    def server_got_upgrade(self) -> bool:
        return asks_upgrade(self.server_request)

    def sent_header(self, name: str) -> str | None:
        return header(self.sent["headers"], name) if self.sent else None

    def received_header(self, name: str) -> str | None:
        request = self.server_request
        return header(request["headers"], name) if request else None

    def client_summary(self) -> str:
        """A few characters saying how the exchange ended, for the matrix."""
        transcript = self.transcript
        hold = transcript.get("hold")
        if hold:
            faithful = hold["lived_faithful"] if hold["closed"] else hold["seconds_faithful"]
            return f"{'cut' if hold['closed'] else 'open'} {faithful:.0f}s"
        if self.status is not None:
            return str(self.status)
        if transcript.get("timed_out"):
            return "timeout"
        error = transcript.get("error") or ""
        if "refused" in error.lower():
            return "refused"
        if "without a response" in error:
            return "no answer"
        if transcript.get("kind") == "tcp_probe" and transcript.get("connected"):
            return "open"
        return "error" if error else "-"


def _redact_header_line(line: str) -> str:
    name, sep, value = line.partition(":")
    return f"{name}{sep} {redact_header_value(name, value.strip())}" if sep else line


def _redact_argument(argument: Any) -> Any:
    if not isinstance(argument, dict):
        return argument
    redacted = dict(argument)
    if isinstance(redacted.get("path"), str):
        redacted["path"] = redact_target(redacted["path"])
    if isinstance(redacted.get("headers"), list):
        redacted["headers"] = [_redact_header_line(line) for line in redacted["headers"]]
    return redacted


def _redact_heads(exchange: dict[str, Any]) -> dict[str, Any]:
    """The ``sent`` and ``received`` heads of an exchange with no secret left."""
    redacted = {}
    for key in ("sent", "received"):
        head = exchange.get(key)
        if head:
            redacted[key] = {**head, "headers": redact_headers(head["headers"])}
            for field in ("target", "path"):
                if field in head:
                    redacted[key][field] = redact_target(head[field])
    return redacted


def redact_evidence(transcript: dict[str, Any], connections: list[dict[str, Any]]) -> tuple[dict, list]:
    """Copies of a cell's evidence with no secret value left (Authorization, cookies, tokens).

    Results are meant to be shared: every output format is built from these copies.
    """
    redacted = {**transcript, **_redact_heads(transcript)}
    browser = transcript.get("browser")
    if browser:
        requests = [
            {**request, **_redact_heads(request), "url": redact_target(request["url"])}
            for request in browser["requests"]
        ]
        redacted["browser"] = {**browser, "requests": requests}
    redacted["steps"] = [
        {**step, "argument": _redact_argument(step["argument"])} for step in transcript["steps"]
    ]
    return redacted, [{**redact_record(c), "closed": c.get("closed")} for c in connections]
