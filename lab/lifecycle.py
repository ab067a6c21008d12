"""Events the lab causes while a WebSocket is open, and what becomes of the connection.

The ``event`` step (scenarios/lifecycle.yaml) keeps sequence-numbered messages crossing an open
WebSocket, causes an event at a chosen moment, watches the connection for a while, and, if it
closed, times how long websockets' reconnecting ``connect`` iterator takes to be back. Causes:

- ``proxy-reload``: the proxy reloads its config the way its documentation says (the signal and
  URL are in its :data:`wslab.proxies.REGISTRY` entry); a kind the lab cannot reload as it runs
  it (Envoy without hot restart, Varnish without its CLI...) is "not measured", never faked.
- ``server-restart``: the server behind the proxy stops as a SIGTERM'd websockets server does
  (every connection closed with 1001 Going Away), stays down a while and listens again.

A later ``fault`` step (network faults) can reuse :class:`Traffic` and :func:`reconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect, process_exception

from .proxies import REGISTRY, Reload
from .records import Lifecycle, LifecycleEvent, NewConnection, Reconnect, Sequenced
from .topology import Topology

if TYPE_CHECKING:
    from .backends import Deployment

SEQ_PREFIX = "wslab-seq "
"""Messages of the event step: the prefix and a sequence number; the probe server echoes them."""
KEPT_MESSAGES = 200
"""A lifecycle record keeps at most this many messages (the last) for the timeline."""
WEBSOCKETS_SHUTDOWN = (
    "https://websockets.readthedocs.io/en/stable/faq/server.html#how-do-i-stop-a-server "
    "(exiting serve() on SIGTERM closes every connection with 1001 Going Away)"
)
"""The source of the server-restart event."""

CauseEvent = Callable[[str, dict[str, Any]], Awaitable[LifecycleEvent]]
"""What the client calls to have the lab cause an event: (cause, the step's argument)."""


def event_seconds(argument: dict[str, Any]) -> float:
    """Seconds an event step may take in this run (not scaled: the lab's own timing): the lead-in,
    the watch, a restarted server's downtime and the reconnection budget."""
    return (
        float(argument.get("after", 1))
        + float(argument.get("watch", 3))
        + float(argument.get("down", 0))
        + (float(argument.get("reconnect_within", 10)) if argument.get("reconnect") else 0)
    )


def reload_of(topology: Topology) -> Reload | None:
    """The reload entry of the topology's proxy kind (None for ``direct``, or a kind without one)."""
    return None if topology.direct else REGISTRY[topology.proxy].reload


EVENT_BACKENDS = ("local", "compose", "containers")
"""The backends that cause lifecycle events: on processes, or on containers from the host."""

NOT_APPLICABLE = "not applicable:"
"""How :func:`unsupported` starts a reason that no backend could change (nothing to reload)."""


def unsupported(cause: str, topology: Topology, backend: str) -> str | None:
    """Why the lab cannot cause ``cause`` on this topology with this backend; None if it can."""
    if backend not in EVENT_BACKENDS:
        return (
            f"not supported on the {backend} backend: only the local, compose and containers "
            "backends cause lifecycle events"
        )
    if cause == "proxy-reload":
        if topology.direct:
            return f"{NOT_APPLICABLE} direct has no proxy to reload"
        reload = reload_of(topology)
        if reload is None:
            return f"not supported here: no documented reload for {topology.proxy} in the registry"
        if reload.signal is None and not reload.argv:
            return f"{topology.proxy}: {reload.unsupported} ({reload.how}: {reload.source})"
    return None


def assumption(topology: Topology, cause: str) -> str:
    """What emulating the event on this topology assumes ('' for a self-hosted proxy)."""
    if topology.role != "platform":
        return ""
    what = "redeploy or edge config change" if cause == "proxy-reload" else "app instance restart"
    return (
        f"assumption: {topology.platform or topology.name}'s {what} behaves like this emulation's "
        f"{topology.proxy} {'reload' if cause == 'proxy-reload' else 'in front of a restarting server'}; "
        "its topology.yaml documents no such behaviour"
    )


class Traffic:
    """Sequence-numbered messages sent every ``every`` seconds, and their echoes, timed."""

    def __init__(self, websocket: ClientConnection, every: float) -> None:
        self.websocket = websocket
        self.every = every
        self.sent: dict[int, float] = {}
        self.echoed: dict[int, float] = {}
        self.closed_at: float | None = None
        """When the connection's closing ended (``time.monotonic()``), if it did."""
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._send()), asyncio.ensure_future(self._receive())]
        self._watch = asyncio.ensure_future(self._closing())

    async def _closing(self) -> None:
        await self.websocket.wait_closed()
        self.closed_at = time.monotonic()

    async def wait_closed(self, seconds: float) -> float | None:
        """Wait up to ``seconds`` for the close; when it ended, or None if still open."""
        assert self._watch is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._watch), max(0.0, seconds))
        return self.closed_at

    async def stop(self, drain: float) -> None:
        """Stop sending, give the echoes still on their way up to ``drain`` seconds, stop reading."""
        sender, receiver = self._tasks
        sender.cancel()
        deadline = time.monotonic() + drain
        while self.sent.keys() - self.echoed.keys() and not receiver.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        receiver.cancel()
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task

    async def _send(self) -> None:
        seq = 0
        while True:
            seq += 1
            self.sent[seq] = time.monotonic()
            try:
                await self.websocket.send(f"{SEQ_PREFIX}{seq}")
            except websockets.ConnectionClosed:
                del self.sent[seq]  # never left: not a message in flight
                return
            await asyncio.sleep(self.every)

    async def _receive(self) -> None:
        async for message in self.websocket:
            if isinstance(message, str) and message.startswith(SEQ_PREFIX):
                self.echoed[int(message[len(SEQ_PREFIX) :])] = time.monotonic()


def lifecycle_record(
    event: LifecycleEvent,
    traffic: Traffic,
    websocket: ClientConnection,
    event_at: float,
    watched: float,
    closed_at: float | None,
) -> Lifecycle:
    """The connection's fate from the traffic and its close (times are ``time.monotonic()``)."""
    protocol = websocket.protocol
    closed = closed_at is not None
    after = {seq for seq, at in traffic.sent.items() if at >= event_at}
    messages = [
        Sequenced(
            seq=seq,
            sent=round(at - event_at, 3),
            echoed=round(traffic.echoed[seq] - event_at, 3) if seq in traffic.echoed else None,
        )
        for seq, at in sorted(traffic.sent.items())
    ]
    if protocol.close_rcvd is None:
        closed_by = "abnormal" if closed else None
    else:
        closed_by = "client" if protocol.close_rcvd_then_sent is False else "peer"
    return Lifecycle(
        event=event,
        watched=round(watched, 3),
        survived=not closed and bool(after & traffic.echoed.keys()),
        closed_after=round(closed_at - event_at, 3) if closed_at is not None else None,
        code=websocket.close_code if closed else None,
        reason=websocket.close_reason if closed else None,
        closed_by=closed_by,
        close_frame_received=protocol.close_rcvd is not None,
        close_frame_sent=protocol.close_sent is not None,
        sent=len(traffic.sent),
        echoed=len(traffic.echoed),
        lost=sorted(traffic.sent.keys() - traffic.echoed.keys()),
        sent_after_event=len(after),
        echoed_after_event=len(after & traffic.echoed.keys()),
        messages=messages[-KEPT_MESSAGES:],
    )


async def new_connection(
    url: str, event_at: float, delay: float, timeout: float, **options: Any
) -> NewConnection:
    """Open (and close) a second WebSocket ``delay`` seconds after the event: can new clients
    connect while old connections drain (lighttpd's graceful restart stops accepting)?"""
    await asyncio.sleep(max(0.0, event_at + delay - time.monotonic()))
    started = time.monotonic()
    try:
        async with connect(url, open_timeout=timeout, proxy=None, **options):
            pass
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        error = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return NewConnection(
            at=round(started - event_at, 3),
            opened=False,
            took=round(time.monotonic() - started, 3),
            error=error,
        )
    return NewConnection(
        at=round(started - event_at, 3), opened=True, took=round(time.monotonic() - started, 3)
    )


async def reconnect(url: str, budget: float, **options: Any) -> Reconnect:
    """How long websockets' reconnecting iterator (``async for ws in connect(url)``, with its own
    backoff) takes to open a connection again, within ``budget`` seconds."""
    started = time.monotonic()
    attempts = 0
    last_error: list[str] = []

    def count(exc: Exception) -> Exception | None:
        nonlocal attempts
        attempts += 1
        last_error[:] = [str(exc) or type(exc).__name__]
        return process_exception(exc)

    async def first() -> None:
        nonlocal attempts
        async for websocket in connect(
            url, process_exception=count, open_timeout=budget, proxy=None, **options
        ):
            attempts += 1
            await websocket.close()
            return

    try:
        await asyncio.wait_for(first(), budget)
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        error = last_error[0] if last_error else str(exc) or type(exc).__name__
        return Reconnect(back_after=None, attempts=attempts, error=error)
    return Reconnect(
        back_after=round(time.monotonic() - started, 3),
        attempts=attempts,
        error=last_error[0] if last_error else None,
    )


class EventBackend(Protocol):
    """What a backend needs to cause lifecycle events (the local backend has both)."""

    async def signal_proxy(self, deployment: Deployment, signal_name: str) -> None: ...

    async def reload_by_command(self, deployment: Deployment) -> None: ...

    async def restart_server(self, listener: str, down: float) -> dict[str, Any]: ...


async def cause_on(
    backend: EventBackend, deployment: Deployment, cause: str, argument: dict[str, Any]
) -> LifecycleEvent:
    """Cause the event on a deployed topology; :func:`unsupported` said it can be done."""
    topology = deployment.topology
    emulated = assumption(topology, cause)
    if cause == "proxy-reload":
        reload = reload_of(topology)
        assert reload is not None
        at = time.time()
        if reload.signal is not None:
            await backend.signal_proxy(deployment, reload.signal)
        else:
            await backend.reload_by_command(deployment)
        return LifecycleEvent(
            cause="proxy-reload", at=at, how=reload.how, source=reload.source, assumption=emulated
        )
    down = float(argument.get("down", 0))
    answer = await backend.restart_server(deployment.listener, down)
    if "error" in answer:
        raise EventFailed(f"server-restart: the probe server refused: {answer['error']}")
    return LifecycleEvent(
        cause="server-restart",
        at=answer["closed_at"],
        how="the probe server's listener stops as websockets' serve() does on SIGTERM (close(): "
        f"1001 Going Away to every connection), stays down {down:g} s, listens again on its port",
        source=WEBSOCKETS_SHUTDOWN,
        assumption=emulated,
        detail=f"the listener stopped at {answer['closed_at']:.3f} and listens again {down:g} s later",
    )


class EventFailed(Exception):
    """The lab could not cause the event it was asked for."""
