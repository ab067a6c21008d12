"""What the user's app logged, and which cell each entry belongs to.

The app's output is read as it comes (:class:`AppLog`). An entry is tied to a
cell by, in order: the cell's ``wslab-cell`` id in the line (apps that log
request lines), the tap's own port toward the app in the line (uvicorn logs
its peer ``127.0.0.1:PORT``), or time: the lab lets one handshake at a time
reach an app (:class:`HandshakeGate`) and waits a moment after one whose
connection ended within it (refused, or upgraded and dropped, as a raw
handshake is) for what the app writes about that end, so an entry that arrives
while a cell holds the gate is that cell's (if any of its connections reached
the app: the runner ties nothing by time to a cell whose never did). Entries
tied to no cell stay with the run. A websockets error at the end of an entry
(``websockets.exceptions.InvalidUpgrade: missing Connection header``) becomes
the connection's error, as if the probe server had raised it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from .records import AppLogLine, ServerError

MAX_LINES = 20_000
MAX_LINE_CHARS = 8_000
"""An app's log is kept bounded: the last MAX_LINES entries, each cut at MAX_LINE_CHARS."""
SAME_WRITE = 0.5
"""A traceback is one entry when its lines come within this many seconds (it is written at
once, but may be read in several chunks)."""
ENDED_SETTLE = 0.03
"""Seconds the gate stays held at most after a handshake whose connection ended within it:
websockets logs "opening handshake failed" just after it sends a refusal, and "connection
handler failed" just after an upgraded connection drops with no close frame."""
QUIET = 0.01
"""Once the app has written since the connection ended, the gate is let go after it has been
quiet this long: the app has said what it had to say about that end (its records for one event
come together; a traceback is one write)."""

Stream = Literal["stdout", "stderr"]


class AppLog:
    """What the app wrote, entry by entry, each with the time the lab read it."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.entries: deque[AppLogLine] = deque(maxlen=max_lines)
        self.last_read = 0.0
        """When (time.monotonic()) the lab last read something the app wrote."""

    def add(self, stream: Stream, lines: list[str], at: float | None = None) -> None:
        """Lines read from ``stream``: each a new entry, except the lines that carry on a
        traceback, which join the entry it started in."""
        self.last_read = time.monotonic()
        at = time.time() if at is None else at
        for line in lines:
            last = self.entries[-1] if self.entries else None
            if (
                last is not None
                and last.stream == stream
                and at - last.at <= SAME_WRITE
                and _continues(last.text, line)
            ):
                self.entries[-1] = last.model_copy(
                    update={"text": (last.text + "\n" + line)[:MAX_LINE_CHARS]}
                )
            else:
                self.entries.append(AppLogLine(at=at, stream=stream, text=line[:MAX_LINE_CHARS]))

    def between(self, start: float, end: float) -> list[AppLogLine]:
        return [entry for entry in self.entries if start <= entry.at <= end]

    def tail(self, lines: int = 12) -> str:
        return "\n".join(entry.text for entry in list(self.entries)[-lines:])


TRACEBACK = "Traceback (most recent call last):"


def _continues(entry: str, line: str) -> bool:
    """Whether ``line`` carries on ``entry``: a traceback's start, its indented frames, the
    chained-exception separators, and the exception line that ends it; not a new record."""
    if line.startswith((TRACEBACK, "During handling", "The above")):
        return True
    if TRACEBACK not in entry:
        return False
    previous = entry.rsplit("\n", 1)[-1]
    return line[:1].isspace() or not line or previous[:1].isspace() or not previous


@dataclass
class HandshakeGate:
    """Lets one cell's opening handshake at a time reach one app, and remembers each cell's
    turn, so that what the app logs meanwhile can be tied to that cell by time."""

    log: AppLog | None = None
    """The app's log: once the app has written about the end and gone quiet, the settle is over."""
    settle: float = ENDED_SETTLE
    quiet: float = QUIET
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Turn]:
        """Hold the gate for one opening step; set ``turn.ended`` when the step's connection did
        not stay open (refused, or upgraded and dropped), to keep the gate a moment longer for
        the app's line about its end."""
        async with self._lock:
            turn = Turn(start=time.time())
            try:
                yield turn
            except Exception:
                # A step that failed (a refusal raised, a relay that never came) ended its
                # connection as surely as one that returned.
                await self._settle(turn)
                raise
            else:
                await self._settle(turn)
            finally:
                turn.end = time.time()

    async def _settle(self, turn: Turn) -> None:
        """If the turn's connection ended, wait for what the app writes about it: until it has
        written and then been quiet for ``quiet`` s, at most ``settle`` s."""
        if not turn.ended:
            return
        ended = time.monotonic()
        deadline = ended + self.settle
        while (now := time.monotonic()) < deadline:
            await asyncio.sleep(min(self.quiet, deadline - now))
            last = self.log.last_read if self.log is not None else 0.0
            if last > ended and time.monotonic() - last >= self.quiet:
                return
        # A busy loop may not have read the app's output yet: a few turns of it read what the
        # app wrote within the settle while this cell holds the gate.
        for _ in range(3):
            await asyncio.sleep(0)


@dataclass
class Turn:
    """When one cell held the gate."""

    start: float
    end: float = 0.0
    ended: bool = False


CELL_ID = re.compile(r"wslab-cell=([A-Za-z0-9_-]+)")
PORT = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\]|::1)['\"]?(?::|,\s*)(\d{1,5})\b")
"""A loopback peer as apps log it: ``127.0.0.1:54321`` or ``('127.0.0.1', 54321)``."""


def attribute(
    entries: Iterable[AppLogLine], cell: str | None, ports: set[int], turns: list[Turn]
) -> list[AppLogLine]:
    """The entries that belong to one cell: those naming its id, those naming one of its
    connections' ports toward the app, and those that came during one of its turns at the gate
    while naming no other cell."""
    mine = []
    for entry in entries:
        named = set(CELL_ID.findall(entry.text))
        if named:
            if cell in named:
                mine.append(entry.model_copy(update={"attributed_by": "request id"}))
            continue
        if ports & {int(port) for port in PORT.findall(entry.text)}:
            mine.append(entry.model_copy(update={"attributed_by": "connection port"}))
        elif any(turn.start <= entry.at <= turn.end for turn in turns):
            mine.append(entry.model_copy(update={"attributed_by": "timing"}))
    return mine


EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<type>[A-Z]\w*(?:Error|Exception|Invalid\w*|Closed\w*)|Invalid\w+|ConnectionClosed\w*|NegotiationError)(?::\s?(?P<text>.*))?$"
)


def handshake_error(entries: Iterable[AppLogLine]) -> ServerError | None:
    """The websockets error of a refused opening handshake an entry ends with, read as the probe
    server would report it: the last exception line is the one raised, the one before it (``The
    above exception was the direct cause``) its cause. A ConnectionClosed error is never one:
    websockets raises it only on a connection that upgraded."""
    for entry in entries:
        raised = [m for line in entry.text.splitlines() if (m := EXCEPTION_LINE.match(line))]
        if not raised or not _from_websockets(entry.text, raised[-1].group(0)):
            continue
        if raised[-1].group("type").startswith("ConnectionClosed"):
            continue
        outer = raised[-1]
        cause = (
            f"{raised[-2].group('type')}: {raised[-2].group('text') or ''}".rstrip(": ")
            if len(raised) > 1
            else ""
        )
        return ServerError(
            type=outer.group("type"), text=outer.group("text") or "", cause=cause, source="app log"
        )
    return None


def _from_websockets(text: str, raised: str) -> bool:
    """An exception websockets raised: named ``websockets.exceptions.X``, or thrown from a frame
    inside the websockets package."""
    return raised.startswith("websockets.") or any(
        line.lstrip().startswith("File ") and "/websockets/" in line for line in text.splitlines()
    )
