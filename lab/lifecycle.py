"""Events the lab causes while a WebSocket is open, and what becomes of the connection.

The ``event`` step (scenarios/lifecycle.yaml) keeps sequence-numbered messages crossing an open
WebSocket, causes an event at a chosen moment, watches the connection for a while, and, if it
closed, times how long the client takes to be back from the moment it saw the close: websockets'
reconnecting ``connect`` iterator (:class:`ClientWatch`), or a Chromium page's own reconnect loop
(wslab.page_socket). Causes:

- ``proxy-reload``: the proxy reloads its config the way its documentation says (the signal,
  command, successor process or watched file, and the URL, are in its
  :data:`wslab.proxies.REGISTRY` entry); a kind the lab cannot reload as it runs it is "not
  measured", never faked. A reload by a watched file (Traefik's file provider) ends when the proxy
  answers a check that only the changed config answers, so the cell watches the new config.
- ``server-restart``: the server behind the proxy stops as a SIGTERM'd websockets server does
  (every connection closed with 1001 Going Away), stays down a while and listens again.
- ``redeploy``: the app is redeployed as the platform documents it: a new instance takes new
  connections on the same port at once; the old one keeps its connections for the platform's
  shutdown delay, gets SIGTERM, and SIGKILL after its grace period. An app that handles SIGTERM
  (``handles_sigterm``, as websockets' ``serve()`` with a signal handler does) closes them with
  1001; one that does not (PID 1 in a container without a handler ignores SIGTERM) is cut at the
  SIGKILL without a close frame: 1006.
- ``instance-replacement``: the platform moves a running instance (maintenance, a daily restart):
  the same mechanism as a redeploy, with no config change, on platforms only.
- ``scale-to-zero``: on a platform that scales to zero, the instance is removed once no request
  has been in progress for its idle time; an open WebSocket is a request in progress and keeps
  it. The client stays quiet past that time, then a new client after zero lands on a new instance.

Every wait of the last three is the topology's ``shutdown-delay``, ``shutdown-grace`` and
``idle-to-zero`` parameters (each with its source), scaled as the run's other limits are.

A later ``fault`` step (network faults) can reuse :class:`Traffic` and :func:`reconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect, process_exception

from .probe.wire import READINESS_REQUEST, parse_response_head, split_head
from .proxies import CHANGE_HEADER, REGISTRY, Reload
from .records import Close, Lifecycle, LifecycleEvent, NewConnection, Reconnect, Sequenced
from .topology import Parameter, Topology

if TYPE_CHECKING:
    from .backends import Deployment
    from .endpoint import Endpoint

SEQ_PREFIX = "wslab-seq "
"""Messages of the event step: the prefix and a sequence number; the probe server echoes them."""
KEPT_MESSAGES = 200
"""A lifecycle record keeps at most this many messages (the last) for the timeline."""
WEBSOCKETS_SHUTDOWN = (
    "https://websockets.readthedocs.io/en/stable/faq/server.html#how-do-i-stop-a-server "
    "(exiting serve() on SIGTERM closes every connection with 1001 Going Away)"
)
"""The source of the server-restart event."""
INSTANCE_HEADER = "X-Wslab-Instance"
"""The probe server names the app instance that accepted a connection in this response header."""
SELF_HOSTED_GRACE = Parameter(
    "shutdown_grace",
    90,
    "assumption: a self-hosted app stopped by systemd, whose default stop timeout "
    "(DefaultTimeoutStopSec) is 90 s between SIGTERM and SIGKILL [DOC] "
    "https://www.freedesktop.org/software/systemd/man/latest/systemd-system.conf.html",
    "shutdown-grace",
)
"""The grace period of a topology that declares none: a self-hosted server under systemd."""
NO_SIGTERM_HANDLER = (
    "https://man7.org/linux/man-pages/man7/pid_namespaces.7.html: PID 1 of a container gets only the "
    "signals it has a handler for, so an app without a SIGTERM handler runs on until SIGKILL"
)
"""Why an app that does not handle SIGTERM keeps its connections until the SIGKILL."""
REPLACED = ("redeploy", "instance-replacement")
"""The causes that start a new instance while the old one ends (the same mechanism)."""

CauseEvent = Callable[[str, dict[str, Any]], Awaitable[LifecycleEvent]]
"""What the client calls to have the lab cause an event: (cause, the step's argument)."""


def lifecycle_limit(topology: Topology, kind: str) -> Parameter | None:
    """The topology's parameter of this kind (``shutdown-delay``, ``shutdown-grace``,
    ``idle-to-zero``), if it declares one."""
    return next((p for p in topology.parameters if p.limit == kind), None)


def grace_of(topology: Topology) -> Parameter | None:
    """Seconds from SIGTERM to SIGKILL: the topology's own, or a self-hosted server's systemd
    default; None for a platform that declares none (it runs no app instance)."""
    grace = lifecycle_limit(topology, "shutdown-grace")
    if grace is None and topology.role != "platform":
        return SELF_HOSTED_GRACE
    return grace


def waits(cause: str, topology: Topology) -> float:
    """Faithful seconds an event of this cause waits on the topology's own limits (the run
    scales them): a redeploy's delay and grace; twice the idle time for a scale to zero (once
    with the WebSocket open, once after it closed)."""
    if cause in REPLACED:
        delay = lifecycle_limit(topology, "shutdown-delay")
        grace = grace_of(topology)
        return (delay.seconds if delay else 0) + (grace.seconds if grace else 0)
    if cause == "scale-to-zero" and (idle := lifecycle_limit(topology, "idle-to-zero")) is not None:
        return 2 * idle.seconds
    return 0.0


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
        if not reload.supported:
            return f"{topology.proxy}: {reload.unsupported} ({reload.how}: {reload.source})"
        if reload.successor and backend != "local":
            return (
                f"not supported on the {backend} backend: {topology.proxy}'s reload is a second process "
                "that takes over from the first, and the container ends when its first process exits"
            )
    if cause in REPLACED and grace_of(topology) is None:
        return f"{NOT_APPLICABLE} {topology.name} runs no app instance to stop (no shutdown_grace)"
    if cause == "instance-replacement" and replacement_source(topology) is None:
        if topology.role != "platform":
            return f"{NOT_APPLICABLE} no platform moves a self-hosted server's instance (a redeploy is yours)"
        return f"{NOT_APPLICABLE} {topology.name} moves no app instance: the server behind it is yours"
    if cause == "scale-to-zero":
        return _no_zero(topology)
    return None


def _no_zero(topology: Topology) -> str | None:
    """Why the topology cannot scale to zero (its scale_to_zero fact, or none), or None."""
    fact = next((f for f in topology.facts if f.name == "scale_to_zero"), None)
    if fact is not None and fact.holds and lifecycle_limit(topology, "idle-to-zero") is not None:
        return None
    if fact is not None and fact.holds is False:
        name = topology.platform or topology.name
        return f"{NOT_APPLICABLE} {name} does not scale to zero ({fact.value}: {fact.source})"
    if topology.role != "platform":
        return f"{NOT_APPLICABLE} a self-hosted server runs until you stop it: nothing scales it to zero"
    if fact is not None and fact.holds:
        return f"{NOT_APPLICABLE} {topology.name} stops ({fact.value}), after no documented idle time"
    return f"{NOT_APPLICABLE} {topology.name} is not modelled as scaling to zero (no scale_to_zero fact)"


def assumption(topology: Topology, cause: str) -> str:
    """What emulating the event on this topology assumes ('' for a self-hosted proxy, and for the
    causes whose timing is the topology's own parameters: their sources say how they are known)."""
    if topology.role != "platform" or cause in (*REPLACED, "scale-to-zero"):
        return ""
    if cause == "proxy-reload" and topology.reload is not None and topology.reload.status == "assumed":
        return topology.reload.source
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


def instance_of(websocket: ClientConnection) -> int | None:
    """The app instance that accepted the connection, as the probe server named it (None: the
    server behind says nothing, e.g. a user's app)."""
    value = websocket.response.headers.get(INSTANCE_HEADER) if websocket.response is not None else None
    return int(value) if value is not None and value.isdigit() else None


@dataclass(frozen=True)
class CloseSeen:
    """How the watched connection's close looked to its client."""

    code: int | None
    reason: str | None
    closed_by: str | None
    """client, peer, or abnormal (TCP closed, no close frame)."""
    frame_received: bool
    frame_sent: bool


def fate(
    event: LifecycleEvent,
    sent: dict[int, float],
    echoed: dict[int, float],
    event_at: float,
    watched: float,
    closed_at: float | None,
    close: CloseSeen,
    instance: int | None,
) -> Lifecycle:
    """The watched connection's record from its numbered messages (sequence number -> when sent,
    when echoed) and its close, whichever client held it (times are ``time.monotonic()``)."""
    closed = closed_at is not None
    after = {seq for seq, at in sent.items() if at >= event_at}
    messages = [
        Sequenced(
            seq=seq,
            sent=round(at - event_at, 3),
            echoed=round(echoed[seq] - event_at, 3) if seq in echoed else None,
        )
        for seq, at in sorted(sent.items())
    ]
    survived = not closed and bool(after & echoed.keys())
    return Lifecycle(
        event=event,
        watched=round(watched, 3),
        survived=survived,
        closed_after=round(closed_at - event_at, 3) if closed_at is not None else None,
        code=close.code if closed else None,
        reason=close.reason if closed else None,
        closed_by=close.closed_by if closed else None,
        close_frame_received=close.frame_received,
        close_frame_sent=close.frame_sent,
        sent=len(sent),
        echoed=len(echoed),
        lost=sorted(sent.keys() - echoed.keys()),
        sent_after_event=len(after),
        echoed_after_event=len(after & echoed.keys()),
        messages=messages[-KEPT_MESSAGES:],
        instance_before=instance,
        as_documented=None if event.documented_kept is None else event.documented_kept == survived,
    )


def lifecycle_record(
    event: LifecycleEvent,
    traffic: Traffic | None,
    websocket: ClientConnection,
    event_at: float,
    watched: float,
    closed_at: float | None,
) -> Lifecycle:
    """The fate of a connection websockets' client held, from its traffic (None: it sent none)
    and its close (times are ``time.monotonic()``)."""
    protocol = websocket.protocol
    closed = closed_at is not None
    if protocol.close_rcvd is None:
        closed_by = "abnormal" if closed else None
    else:
        closed_by = "client" if protocol.close_rcvd_then_sent is False else "peer"
    close = CloseSeen(
        code=websocket.close_code,
        reason=websocket.close_reason,
        closed_by=closed_by,
        frame_received=protocol.close_rcvd is not None,
        frame_sent=protocol.close_sent is not None,
    )
    sent, echoed = (traffic.sent, traffic.echoed) if traffic is not None else ({}, {})
    return fate(event, sent, echoed, event_at, watched, closed_at, close, instance_of(websocket))


class Watched(Protocol):
    """The open WebSocket an event step watches, whichever client opened it: websockets' client
    (:class:`ClientWatch`) or a Chromium page's (wslab.page_socket.PageSocket)."""

    @property
    def closed_at(self) -> float | None:
        """When the client saw the close (``time.monotonic()``); None while open."""
        ...

    async def start(self, every: float) -> None:
        """Send a numbered message every ``every`` seconds, and time their echoes."""

    async def wait_closed(self, seconds: float) -> float | None:
        """Wait up to ``seconds`` for the close; :attr:`closed_at`."""
        ...

    async def stop(self, drain: float) -> None:
        """Stop sending; give the echoes on their way up to ``drain`` seconds."""

    async def record(self, event: LifecycleEvent, event_at: float) -> Lifecycle:
        """The connection's fate, watched from ``event_at`` (``time.monotonic()``) until now."""
        ...

    async def reconnect(self, event_at: float, budget: float) -> Reconnect:
        """How the client came back after the close, within ``budget`` seconds of it (the
        event's time, ``time.monotonic()``, for the times a record gives from it)."""
        ...

    async def close(self) -> Close:
        """End the connection (and any reconnecting); its close as the transcript keeps it."""
        ...

    def close_seen(self) -> Close:
        """The watched connection's close, for the transcript."""
        ...


class ClientWatch:
    """The event step's watched connection when websockets' client opened it (``connect``); a
    reconnection is websockets' reconnecting iterator on the same URL."""

    def __init__(self, websocket: ClientConnection, url: str, options: dict[str, Any]) -> None:
        self.websocket = websocket
        self.url = url
        self.options = options
        self.traffic: Traffic | None = None
        self._closed_at: float | None = None

    @property
    def closed_at(self) -> float | None:
        return self._closed_at

    async def start(self, every: float) -> None:
        self.traffic = Traffic(self.websocket, every)
        self.traffic.start()

    async def wait_closed(self, seconds: float) -> float | None:
        if self._closed_at is None:
            if self.traffic is not None:
                self._closed_at = await self.traffic.wait_closed(seconds)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.websocket.wait_closed(), max(0.0, seconds))
                    self._closed_at = time.monotonic()
        return self._closed_at

    async def stop(self, drain: float) -> None:
        if self.traffic is not None:
            await self.traffic.stop(drain)
            self._closed_at = self._closed_at or self.traffic.closed_at
        if self._closed_at is None and self.websocket.close_code is not None:  # closed while draining
            self._closed_at = time.monotonic()

    async def record(self, event: LifecycleEvent, event_at: float) -> Lifecycle:
        watched = time.monotonic() - event_at
        return lifecycle_record(event, self.traffic, self.websocket, event_at, watched, self._closed_at)

    async def reconnect(self, event_at: float, budget: float) -> Reconnect:
        assert self._closed_at is not None
        return await reconnect(self.url, self._closed_at, budget, **self.options)

    async def close(self) -> Close:
        await self.websocket.close()
        return self.close_seen()

    def close_seen(self) -> Close:
        return Close(code=self.websocket.close_code, reason=self.websocket.close_reason or "")


async def new_connection(
    url: str, event_at: float, delay: float, timeout: float, **options: Any
) -> NewConnection:
    """Open (and close) a second WebSocket ``delay`` seconds after the event: can new clients
    connect while old connections drain (lighttpd's graceful restart stops accepting)?"""
    await asyncio.sleep(max(0.0, event_at + delay - time.monotonic()))
    started = time.monotonic()
    try:
        async with connect(url, open_timeout=timeout, proxy=None, **options) as websocket:
            instance = instance_of(websocket)
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        error = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return NewConnection(
            at=round(started - event_at, 3),
            opened=False,
            took=round(time.monotonic() - started, 3),
            error=error,
        )
    return NewConnection(
        at=round(started - event_at, 3),
        opened=True,
        took=round(time.monotonic() - started, 3),
        instance=instance,
    )


async def reconnect(url: str, since: float, budget: float, **options: Any) -> Reconnect:
    """How long websockets' reconnecting iterator (``async for ws in connect(url)``, with its own
    backoff) takes to open a connection again, counted from ``since`` (the close, as
    ``time.monotonic()``: a client reconnects as soon as it sees it), within ``budget`` seconds."""
    attempts = 0
    last_error: list[str] = []
    landed: list[int | None] = [None]

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
            landed[0] = instance_of(websocket)
            await websocket.close()
            return

    try:
        await asyncio.wait_for(first(), budget)
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        error = last_error[0] if last_error else str(exc) or type(exc).__name__
        return Reconnect(back_after=None, attempts=attempts, error=error)
    return Reconnect(
        back_after=round(time.monotonic() - since, 3),
        attempts=attempts,
        error=last_error[0] if last_error else None,
        instance=landed[0],
    )


class EventBackend(Protocol):
    """What a backend needs to cause lifecycle events (the local backend has them)."""

    time_scale: float

    async def signal_proxy(self, deployment: Deployment, signal_name: str) -> None: ...

    async def reload_by_command(self, deployment: Deployment) -> None: ...

    async def reload_by_successor(self, deployment: Deployment) -> None: ...

    async def write_reload_change(self, deployment: Deployment, text: str) -> None: ...

    async def restart_server(self, listener: str, down: float) -> dict[str, Any]: ...

    async def command_server(self, command: dict[str, Any], answer: str) -> dict[str, Any]: ...


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
        detail = ""
        if reload.signal is not None:
            await backend.signal_proxy(deployment, reload.signal)
        elif reload.successor:
            await backend.reload_by_successor(deployment)
        elif reload.change is not None:
            detail = await _reload_by_change(backend, deployment, reload)
        else:
            await backend.reload_by_command(deployment)
        documented = topology.reload
        return LifecycleEvent(
            cause="proxy-reload",
            at=at,
            how=reload.how,
            source=reload.source,
            assumption=emulated,
            documented=documented.describe() if documented else "",
            documented_kept=documented.kept if documented else None,
            detail=detail,
        )
    if cause in REPLACED:
        return await _replace(backend, deployment, cause, bool(argument.get("handles_sigterm", True)))
    if cause == "scale-to-zero":
        return await _arm_scale_to_zero(backend, deployment)
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


async def _reload_by_change(backend: EventBackend, deployment: Deployment, reload: Reload) -> str:
    """Write a change with a new token where the proxy watches for one, and return once the proxy
    answers the check only the changed config answers (EventFailed if it does not in
    :data:`RELOAD_TIMEOUT`): what the lab saw, for the event's ``detail``."""
    assert reload.change is not None and deployment.endpoint is not None
    token = uuid.uuid4().hex[:12]
    written = time.monotonic()
    await backend.write_reload_change(deployment, reload.change(token))
    deadline = written + RELOAD_TIMEOUT
    while not await change_applied(deployment.endpoint, token):
        if time.monotonic() > deadline:
            raise EventFailed(
                f"{deployment.topology.name}: the proxy did not apply the changed {reload.change_file} "
                f"in {RELOAD_TIMEOUT:g} s"
            )
        await asyncio.sleep(CHANGE_POLL)
    return (
        f"{reload.change_file} (token {token}) written; the proxy answered with the changed config "
        f"{time.monotonic() - written:.2f} s later"
    )


def change_request(token: str) -> bytes:
    """The lab's readiness request, asking whether the change marked ``token`` is applied. The
    probe server (or tap) behind the proxy answers it 200 and records nothing until then."""
    rest = f"HTTP/1.1\r\nHost: ready\r\n{CHANGE_HEADER}: {token}\r\nConnection: close\r\n\r\n"
    return READINESS_REQUEST + rest.encode()


def answers_change(head: bytes, token: str) -> bool:
    """Whether a response head says the change marked ``token`` is applied (it carries the token)."""
    response = parse_response_head(head)
    return response is not None and any(
        name.strip().lower() == CHANGE_HEADER.lower() and value == token for name, value in response.headers
    )


async def change_applied(endpoint: Endpoint, token: str) -> bool:
    """Ask the proxy once, with :func:`change_request`, whether the change marked ``token`` is
    applied; False when it is not yet, or when the proxy does not answer."""
    try:
        reader, writer = await endpoint.open()
    except OSError:
        return False
    try:
        writer.write(change_request(token))
        data = b""
        while (parts := split_head(data)) is None and len(data) < 65536:
            chunk = await asyncio.wait_for(reader.read(4096), 2)
            if not chunk:
                break
            data += chunk
        return parts is not None and answers_change(parts[0], token)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def _replace(
    backend: EventBackend, deployment: Deployment, cause: str, handles_sigterm: bool
) -> LifecycleEvent:
    """Redeploy the app (or have the platform move its instance) with the topology's shutdown
    delay and grace period, scaled as the run's limits are."""
    topology, scale = deployment.topology, backend.time_scale
    delay = lifecycle_limit(topology, "shutdown-delay")
    grace = grace_of(topology)
    assert grace is not None  # unsupported() said so
    drain = delay.seconds * scale if delay else 0.0
    answer = await backend.command_server(
        {
            "redeploy": deployment.listener,
            "drain": drain,
            "grace": grace.seconds * scale,
            "handles_sigterm": handles_sigterm,
        },
        "redeployed",
    )
    if "error" in answer:
        raise EventFailed(f"{cause}: the probe server refused: {answer['error']}")
    waited = f"{delay.seconds:g} s later " if delay else "at once "
    app = (
        "the app handles SIGTERM as websockets' serve() does: 1001 Going Away to each connection"
        if handles_sigterm
        else "the app does not handle SIGTERM, so its connections are cut at the SIGKILL, no close frame"
    )
    sources = [p.source for p in (delay, grace) if p is not None]
    if cause == "instance-replacement" and (replaced := replacement_source(topology)) is not None:
        sources.insert(0, replaced)
    if not handles_sigterm:
        sources.append(NO_SIGTERM_HANDLER)
    return LifecycleEvent(
        cause=cause,
        at=answer["at"],
        how=f"instance {answer['new']} takes new connections on the same port at once; instance "
        f"{answer['old']} gets SIGTERM {waited}and SIGKILL {grace.seconds:g} s after it "
        f"(x{scale:g} in this run); {app}",
        source="; ".join(sources),
        ends_after=round((delay.seconds if delay else 0) * scale + grace.seconds * scale, 3),
        detail=f"instance {answer['old']} → {answer['new']}; {answer['open']} connection(s) on the old one",
    )


def replacement_source(topology: Topology) -> str | None:
    """Where the topology says the platform moves (replaces) instances, with its source or
    'assumption': its behaviour line that starts with 'Instance replacement' (None: no line)."""
    return next((b for b in topology.behaviours if b.lower().startswith("instance replacement")), None)


async def _arm_scale_to_zero(backend: EventBackend, deployment: Deployment) -> LifecycleEvent:
    """Arm the probe server's autoscaler with the topology's idle time, scaled."""
    idle = lifecycle_limit(deployment.topology, "idle-to-zero")
    assert idle is not None  # unsupported() said so
    seconds = idle.seconds * backend.time_scale
    at = time.time()
    answer = await backend.command_server({"scale_to_zero": deployment.listener, "idle": seconds}, "armed")
    if "error" in answer:
        raise EventFailed(f"scale-to-zero: the probe server refused: {answer['error']}")
    return LifecycleEvent(
        cause="scale-to-zero",
        at=at,
        how=f"the instance is removed once no request has been in progress for {idle.seconds:g} s "
        f"(x{backend.time_scale:g}: {seconds:g} s in this run); an open WebSocket is a request in "
        "progress; the next client starts a new instance",
        source=idle.source,
        ends_after=round(seconds, 3),
        detail=f"instance {answer['instance']}, {answer['open']} open connection(s) when it was armed",
    )


class EventFailed(Exception):
    """The lab could not cause the event it was asked for."""


RELOAD_TIMEOUT = 10.0
"""How long a reload command (caddy reload), a successor's take-over or a changed file's taking
effect may take before the event is a lab error."""
CHANGE_POLL = 0.1
"""Seconds between two checks of whether a changed file has taken effect: each is a line in the
proxy's access log, and Traefik may take its providers' throttle (2 s) to apply a change."""


def reload_timed_out(topology: Topology) -> EventFailed:
    return EventFailed(f"{topology.name}: the reload command gave no answer in {RELOAD_TIMEOUT:g} s")


def reload_failed(topology: Topology, output: bytes) -> EventFailed:
    """The error of a reload command that exited non-zero, with its last line of output."""
    last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return EventFailed(f"{topology.name}: the reload command failed: {last[0][:300]}")
