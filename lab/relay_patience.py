"""How long a raw step waits for the proxy once the server has answered its request.

A proxy that upgrades the backend connection of an HTTP/1.0 client and never answers the client
(Apache) is told apart from a slow one by time alone: the server's answer is reported, and
nothing reaches the client. On loopback a proxy relays a response head in milliseconds, and a
run relays hundreds of them, so the run's own relays are the yardstick: a step waits MARGIN
times the slowest relay the run has seen so far, and never less than FLOOR s. The slowest relay
grows with the machine's load, and the patience with it (measured on 2 cores: 0.02 s with the
machine otherwise idle, 0.13 s with two cold runs and two busy loops beside it, where a fixed
0.5 s would have kept a margin of 4 and this one keeps 5). Until the run has relayed a first
response there is nothing to compare with: then BEFORE_ANY s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .records import Connection

FLOOR = 0.2
MARGIN = 5.0
BEFORE_ANY = 0.5
RECHECK = 0.05
"""Seconds between two looks at the patience while waiting (it changes as relays are measured)."""
REPORT_WITHIN = 5.0
"""Seconds a relayed response's measure waits for the server's report of the request."""

ServerAnswer = Callable[[str], Awaitable[Connection]]
"""Waits until the server reports a request carrying the correlation id, and returns it."""


class NotRelayed(TimeoutError):
    """The server answered a raw request and the proxy delivered nothing within the patience."""


class RelayPatience:
    """One run's relays of the server's answers, and the patience they set. Shared by the run's
    clients (one event loop: no lock)."""

    def __init__(self, server_answer: ServerAnswer) -> None:
        self.server_answer = server_answer
        self.slowest: float | None = None
        """Seconds from the server's answer to the client's reading it, the longest seen."""
        self.relayed = 0

    @property
    def seconds(self) -> float:
        """The patience now."""
        return BEFORE_ANY if self.slowest is None else max(FLOOR, MARGIN * self.slowest)

    async def response(self, cell: str, reading: Awaitable[bytes], sent_at: float) -> bytes:
        """What ``reading`` gets (a response head, or what came before the connection closed),
        unless the server answers ``cell``'s request and nothing reaches the client within the
        patience after: then NotRelayed, saying both times. ``sent_at``: UNIX time the request
        was sent."""
        # Two tasks and no more: a run plays hundreds of raw steps on one busy event loop.
        read = asyncio.ensure_future(reading)
        answer = asyncio.ensure_future(self.server_answer(cell))
        try:
            await asyncio.wait({read, answer}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                learned = time.monotonic()
                while not read.done() and (waited := time.monotonic() - learned) < (patience := self.seconds):
                    await asyncio.wait({read}, timeout=min(patience - waited, RECHECK))
                if not read.done():
                    raise NotRelayed(self._not_relayed(answer.result(), sent_at, patience))
            data = read.result()
        except BaseException:
            read.cancel()
            answer.cancel()
            raise
        if not data:
            answer.cancel()
            return data
        # A relayed response: once the server's report of it is in, a measure for the patience.
        read_at = time.time()
        answer.add_done_callback(lambda reported: self._measure(reported, read_at))
        asyncio.get_running_loop().call_later(REPORT_WITHIN, answer.cancel)
        return data

    def _measure(self, reported: asyncio.Future[Connection], read_at: float) -> None:
        if reported.cancelled() or reported.exception() is not None:
            return
        self.relayed += 1
        self.slowest = max(self.slowest or 0.0, read_at - reported.result().at, 0.0)

    def _not_relayed(self, answered: Connection, sent_at: float, patience: float) -> str:
        response = answered.response
        status = f"{response.status} {response.reason}".strip() if response else "nothing"
        return (
            f"the server answered {status} {max(0.0, answered.at - sent_at):.3f} s after the request; "
            f"nothing reached the client within {patience:.2f} s after that ({self._yardstick()})"
        )

    def _yardstick(self) -> str:
        if self.slowest is None:
            return "no response relayed in this run yet to compare with"
        return f"the slowest of this run's {self.relayed} relayed responses took {self.slowest:.3f} s"
