"""The runner's end of the probe server's side channel.

:class:`ObservationFeed` holds one control WebSocket open to the probe server
and turns what it reports into records: a greeting, then one
:class:`Observed` per connection the server saw (its handshake, and for an
h2c connection the requests inside it), then how upgraded ones closed. Cells
find their connections by correlation id, or, for scenarios that have a
topology's listener to themselves, by listener and time window.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from .http2 import read_frames, stream_records
from .records import Closed, Connection, StreamRequest

COMMAND_TIMEOUT = 10.0
"""Seconds the probe server may take to say a listener it was asked to restart is down."""

ConnectionKey = tuple[str, int]
"""(listener, connection number): how the probe server names a connection."""


@dataclass(frozen=True)
class Hello:
    """The probe server's greeting, sent first on the channel."""

    websockets: str
    time_scale: float = 1.0
    redacted: bool = True
    """Whether the server redacts its records (false when it runs with --no-redact)."""


@dataclass
class Observed:
    """One connection the probe server saw, as it reported it."""

    connection: Connection
    streams: list[StreamRequest] = field(default_factory=list)
    """For an h2c connection: every request inside it, read from its HEADERS frames."""

    @property
    def key(self) -> ConnectionKey:
        return self.connection.listener, self.connection.conn

    @property
    def cells(self) -> set[str]:
        """Every correlation id this connection carried: its request's, or its streams'."""
        ids = {stream.cell for stream in self.streams if stream.cell}
        return ids | {self.connection.cell} if self.connection.cell else ids

    def view(self, cell: str | None, closed: Closed | None) -> Connection:
        """The connection as one cell's evidence: with the stream that carried that cell's
        request (over h2c), and how it closed."""
        stream = next((s for s in self.streams if cell and s.cell == cell), None)
        return self.connection.model_copy(update={"http2_request": stream, "closed": closed})


@dataclass(frozen=True)
class Closing:
    """An upgraded connection ended."""

    key: ConnectionKey
    closed: Closed


Event = Hello | Observed | Closing


def parse_event(message: dict[str, Any]) -> Event | None:
    """A control-channel message as a record; None for a kind this runner does not know."""
    kind = message.get("event")
    if kind == "hello":
        return Hello(
            str(message["websockets"]),
            float(message.get("time_scale") or 1.0),
            bool(message.get("redacted", True)),
        )
    if kind == "handshake":
        fields = {k: v for k, v in message.items() if k not in ("event", "http2_frames", "http2_streams")}
        # The server reads an h2c connection's streams itself (http2_streams); one of an
        # earlier release passed the raw frames on (http2_frames).
        frames = message.get("http2_frames")
        streams = stream_records(message.get("http2_streams") or []) or (
            read_frames(frames) if frames else []
        )
        return Observed(Connection.model_validate(fields), streams)
    if kind == "closed":
        keys = ("at", "code", "reason", "closed_by", "tap")
        closed = Closed.model_validate({key: message[key] for key in keys if key in message})
        return Closing((message["listener"], message["conn"]), closed)
    return None


class ObservationFeed:
    """Collects the probe server's reports; lets cells wait for theirs."""

    def __init__(self, retain: bool = True) -> None:
        self.retain = retain
        """Keep each report for the cells to wait for. A kept lab's own feed (``wslab up``) does
        not: it only passes reports to its subscribers, and would otherwise grow with every run
        played on the lab (lab/commands/warm_lab.py)."""
        self.hello_event: Hello | None = None
        self.observed: list[Observed] = []
        self.by_cell: dict[str, list[Observed]] = {}
        """The reported connections that carried each correlation id: a cell waiting for its own
        looks there, not through every connection of the run at each report."""
        self.closings: dict[ConnectionKey, Closed] = {}
        self.subscribers: list[Callable[[Event], None]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: ClientConnection | None = None
        self._stopping = False
        self.lost: str | None = None
        """Why the channel ended before :meth:`stop`: the probe server is gone."""
        self._barriers: dict[int, asyncio.Future[bool]] = {}
        self._barrier_numbers = itertools.count(1)

    async def start(self, host: str, port: int, history: bool = True) -> None:
        """Follow the control channel at host:port; without ``history``, only what the probe
        server records from now on (a lab kept up has every earlier run's records)."""
        query = "" if history else "?history=0"
        self._connection = await connect(
            f"ws://{host}:{port}/{query}", ping_interval=None, max_size=None, proxy=None
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._connection is not None
        try:
            async for message in self._connection:
                fields = json.loads(message)
                if fields.get("event") == "settled":
                    self._settled(fields)
                elif not (self.retain or self.subscribers or fields.get("event") == "hello"):
                    continue  # nobody wants it: read only to know when the channel ends
                elif (event := parse_event(fields)) is not None:
                    self.add(event)
        except websockets.ConnectionClosed:
            pass
        if not self._stopping:
            self.lost = "the probe server closed its control channel"
            self._changed.set()

    @property
    def records_redacted(self) -> bool:
        """Whether the probe server said in its greeting that it redacts its records (its
        listeners' and its taps': lab/probe/redact.py, the runner's own rules)."""
        return self.hello_event is not None and self.hello_event.redacted

    async def closed(self) -> None:
        """Return when the probe server closes the channel."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def add(self, event: Event) -> None:
        if isinstance(event, Hello):
            self.hello_event = event
        elif self.retain:
            self._keep(event)
        for subscriber in self.subscribers:
            subscriber(event)
        self._notify()

    def _keep(self, event: Observed | Closing) -> None:
        if isinstance(event, Observed):
            self.observed.append(event)
            for cell in event.cells:
                self.by_cell.setdefault(cell, []).append(event)
        else:
            self.closings[event.key] = event.closed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _settled(self, fields: dict[str, Any]) -> None:
        barrier = self._barriers.get(fields.get("id"))  # type: ignore[arg-type]
        if barrier is not None and not barrier.done():
            barrier.set_result(fields.get("settled") is True)
            self._notify()

    async def settled(self, listener: str) -> bool:
        """Whether the probe server has published the record of every connection ``listener``
        had accepted by now (its ``settle`` barrier). The server publishes a record before it
        answers the request: once a client has its answer and this says true, every record of
        that request is in. False when it cannot tell (a tap, an older server, a lost channel)."""
        if self._connection is None or self.lost is not None:
            return False
        number = next(self._barrier_numbers)
        barrier = self._barriers[number] = asyncio.get_running_loop().create_future()
        try:
            await self._connection.send(json.dumps({"settle": listener, "id": number}))
            return await barrier
        except websockets.ConnectionClosed:
            return False
        finally:
            del self._barriers[number]

    async def stop(self) -> None:
        self._stopping = True
        if self._connection is not None:
            await self._connection.close()
        if self._task is not None:
            await self._task

    async def _wait_change(self, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def hello(self, timeout: float = 10.0) -> Hello:
        """The probe server's greeting (its websockets version), sent first on the channel."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.hello_event is None:
            if not await self._wait_change(deadline):
                raise TimeoutError("the probe server sent no greeting")
        return self.hello_event

    async def wait_for_cell(
        self, cell: str, settle: float, expected: int = 1, listener: str | None = None
    ) -> list[Connection]:
        """Connections tagged with ``cell``, waiting up to ``settle`` s for them to report.

        Waits for ``expected`` handshakes (a browser page and its favicon are two), or, given the
        ``listener`` the cell's requests went to, for the server to say it has published every
        record (:meth:`settled`: a request a proxy refused itself never reached it), then for
        the close of every upgraded one. Call it once the client has its answers.
        """
        deadline = asyncio.get_running_loop().time() + settle
        barrier = asyncio.ensure_future(self.settled(listener)) if listener is not None else None
        if barrier is not None:
            # Its end is a change of its own: the server's answer may be read (and notified)
            # while the request is still being sent, before the barrier can say it is done.
            barrier.add_done_callback(lambda _: self._notify())
        try:
            while True:
                connections = [
                    seen.view(cell, self.closings.get(seen.key)) for seen in self.by_cell.get(cell, [])
                ]
                complete = len(connections) >= expected or (
                    barrier is not None and barrier.done() and barrier.result()
                )
                if complete and all(c.closed or not c.upgraded for c in connections):
                    return connections
                if not await self._wait_change(deadline):
                    return connections
        finally:
            if barrier is not None:
                barrier.cancel()

    async def first_report(self, cell: str) -> Connection:
        """The first connection reported with ``cell``'s correlation id, once there is one (no
        deadline: the caller bounds the wait)."""
        while cell not in self.by_cell:
            if self.lost is not None:
                await asyncio.get_running_loop().create_future()  # no report will come
            await self._changed.wait()
        return self.by_cell[cell][0].view(cell, None)

    def seen(self, cell: str) -> bool:
        """Whether a connection carrying ``cell``'s correlation id has been reported."""
        return cell in self.by_cell

    async def in_window(
        self, listener: str, start: float, settle: float, closed_back: bool = False
    ) -> list[Connection]:
        """Connections opened on ``listener`` since ``start`` that carried no correlation id, once
        ``settle`` s have passed (one that carried an id is that cell's, whenever it opened).

        ``closed_back``: the front end has closed the cell's only connection (a TCP probe's), so
        anything it opened to the server for it was opened before, and the server accepts it no
        later than it reads the barrier it is then sent: once :meth:`settled` says true, the
        window is complete."""
        if not (closed_back and await self.settled(listener)):
            await asyncio.sleep(settle)
        return self._views(
            lambda seen: (
                seen.connection.listener == listener and seen.connection.opened_at >= start and not seen.cells
            )
        )

    async def unattributed(self, listener: str, start: float) -> list[Connection]:
        """Connections on ``listener`` since ``start`` that carried no correlation id.

        A request the server could not read (garbage, an HTTP/2 connection whose
        frames name no cell) has none; such connections are the best evidence a
        cell whose own request never showed up has.
        """
        views = self._views(
            lambda seen: (
                seen.connection.listener == listener and not seen.cells and seen.connection.opened_at >= start
            )
        )
        return [view.model_copy(update={"attributed": False}) for view in views]

    def _views(self, match: Callable[[Observed], bool], cell: str | None = None) -> list[Connection]:
        return [seen.view(cell, self.closings.get(seen.key)) for seen in self.observed if match(seen)]


async def command_listener(control: tuple[str, int], command: dict[str, Any], answer: str) -> dict[str, Any]:
    """Send the probe server whose control channel is at ``control`` a listener command (see
    wslab.probe.__main__: restart, redeploy, scale_to_zero; the command's first value names the
    listener) and return its ``answer`` event for that listener (which may hold an ``error``).
    Every backend whose probe server it can reach causes lab/lifecycle.py's events so."""
    from .lifecycle import EventFailed

    host, port = control
    listener = next(iter(command.values()))
    try:
        async with connect(f"ws://{host}:{port}/?history=0", ping_interval=None, proxy=None) as channel:
            await channel.send(json.dumps(command))
            async with asyncio.timeout(COMMAND_TIMEOUT):
                async for message in channel:
                    event = json.loads(message)
                    if event.get("event") == answer and event.get("listener") == listener:
                        return event
    except TimeoutError:
        raise EventFailed(
            f"the probe server did not answer {answer} for {listener} in {COMMAND_TIMEOUT:g} s"
        ) from None
    except (OSError, websockets.WebSocketException) as error:
        raise EventFailed(f"the probe server's control channel failed: {error}") from None
    raise EventFailed("the probe server closed its control channel")
