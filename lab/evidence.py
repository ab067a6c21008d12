"""One cell's evidence side by side, for expectations and diagnosis.

The client's :class:`~wslab.records.Transcript` says what was sent and what
came back; the server's :class:`~wslab.records.Connection` records say what
arrived. :class:`Evidence` puts the two together so that checks and
diagnosis rules read as plain comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .records import ClientKind, Connection, RequestHead, Transcript


@dataclass(frozen=True)
class Evidence:
    """What one cell's client and server saw."""

    transcript: Transcript
    connections: list[Connection]

    @property
    def sent(self) -> RequestHead | None:
        return self.transcript.sent

    @property
    def status(self) -> int | None:
        """The status the client got, or None without a response."""
        return self.transcript.status

    @cached_property
    def server(self) -> Connection | None:
        """The first connection the server saw for this cell, if any."""
        return min(self.connections, key=lambda c: c.opened_at) if self.connections else None

    @property
    def reached_server(self) -> bool:
        return bool(self.connections)

    @property
    def server_request(self) -> RequestHead | None:
        """The request line and headers the server received (not its HTTP/2 stream)."""
        return self.server.request if self.server else None

    @property
    def server_error(self) -> str | None:
        error = self.server.error if self.server else None
        return error.text if error else None

    @property
    def server_refused(self) -> bool:
        """The server raised an error, or answered with an error status: a user's app behind the
        tap tells its error only by its status, or in its log."""
        return self.server_error is not None or (self.server_status or 0) >= 400

    @property
    def server_status(self) -> int | None:
        response = self.server.response if self.server else None
        return response.status if response else None

    @property
    def client_asked_upgrade(self) -> bool:
        return self.sent is not None and self.sent.asks_upgrade

    @property
    def server_got_upgrade(self) -> bool:
        return self.server_request is not None and self.server_request.asks_upgrade

    def sent_header(self, name: str) -> str | None:
        return self.sent.header(name) if self.sent else None

    def received_header(self, name: str) -> str | None:
        return self.server_request.header(name) if self.server_request else None

    def summary(self) -> str:
        """A few characters saying how the exchange ended, for the matrix."""
        transcript = self.transcript
        if (life := transcript.lifecycle) is not None:
            if life.survived:
                return "kept"
            back = life.reconnect.back_after if life.reconnect else None
            return (
                f"{life.code} ↻{back:.1f}s" if back is not None else f"{life.code} {life.closed_after:.1f}s"
            )
        hold = transcript.hold
        if hold:
            faithful = hold.lived_faithful if hold.closed else hold.seconds_faithful
            return f"{'cut' if hold.closed else 'open'} {faithful:.0f}s"
        if self.status is not None:
            return str(self.status)
        if transcript.timed_out:
            return "timeout"
        error = transcript.error or ""
        if "refused" in error.lower():
            return "refused"
        if "without a response" in error:
            return "no answer"
        if transcript.kind == ClientKind.TCP_PROBE and transcript.connected:
            return "open"
        return "error" if error else "-"
