"""The client side of a cell: plays a scenario's steps and keeps a transcript.

Opening steps (``connect``, ``raw``, ``tcp_probe``) record the request exactly
as it went out and the response head exactly as it came back. Browser steps
(``browser_visit``, ``browser_websocket``) hand the URL to real Chromium
(:mod:`lab.browser`) and record what it reported. WebSocket steps
(``send``, ``expect_message``, ``expect_close``, ``command``, ``ping``,
``idle``, ``close``) run
on the connection a ``connect`` step opened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from .app_log import HandshakeGate, Turn
from .browser import FAVICON_WAIT, Chromium, Exchange, open_websocket, visit
from .endpoint import Endpoint
from .faults import Active, Fault, FaultFailed, FaultUnavailable, Hop, controller, shown
from .lifecycle import (
    CauseEvent,
    ClientWatch,
    EventFailed,
    Watched,
    event_seconds,
    new_connection,
)
from .page_socket import PageSocket, Retry, open_page_socket
from .probe import wire
from .records import (
    BrowserReport,
    ClientKind,
    Close,
    FaultRecord,
    Hold,
    Lifecycle,
    LifecycleEvent,
    Reconnect,
    RequestHead,
    ResponseHead,
    Step,
    Transcript,
)
from .relay_patience import NotRelayed, RelayPatience
from .scenario import ENV_PLACEHOLDER, FAULT_STEPS, OPENING_STEPS

PEER_CLOSE_WAIT = 1.0
"""Seconds a TCP probe waits for the front end to close its side once it has sent its FIN."""
READ_CHUNK = 65536
RESET_QUIET = 0.25
"""Seconds a hop is left quiet before a reset fault: beyond Linux's longest delayed ACK (200 ms)."""


def request_record(head: wire.RequestHead) -> RequestHead:
    """A request head as the records keep it (its path without the correlation parameter)."""
    return RequestHead.model_validate(head.to_dict())


def response_record(data: bytes) -> ResponseHead | None:
    """The response head at the start of ``data``, as the records keep it; None if there is none."""
    head = wire.parse_response_head(data)
    return ResponseHead.model_validate(head.to_dict()) if head else None


class RecordingConnection(ClientConnection):
    """A ClientConnection that keeps the raw response head and when the last byte arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_head = b""
        self.last_byte_at = time.monotonic()
        self.lost_at: float | None = None
        """UNIX time the TCP connection ended (for a fault's ``closed_after``)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = time.time()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_byte_at = time.monotonic()
        if wire.split_head(self.raw_head) is None:
            self.raw_head += data
        super().data_received(data)


def _expand(text: str, environment: Mapping[str, str]) -> str:
    """``text`` with each ``{env:NAME}`` replaced by its value (checked set before the run)."""
    return ENV_PLACEHOLDER.sub(lambda match: environment[match.group(1)], text)


def _fill(header: str, endpoint: Endpoint, key: str, environment: Mapping[str, str]) -> tuple[str, str]:
    name, _, value = header.partition(":")
    value = value.strip().replace("{host}", endpoint.authority).replace("{key}", key)
    return name, _expand(value, environment)


def _landed(record: Lifecycle) -> int | None:
    """The instance a client reached after the event: the new client's, else the reconnection's."""
    fresh, again = record.new_connection, record.reconnect
    if fresh is not None and fresh.opened:
        return fresh.instance
    return again.instance if again is not None else None


def _new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    return f"{text} ({cause})" if cause and str(cause) not in text else text


class Client:
    """Runs one scenario's steps against an endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        cell: str | None,
        step_timeout: float,
        time_scale: float = 1.0,
        browser: Chromium | None = None,
        environment: Mapping[str, str] | None = None,
        gate: HandshakeGate | None = None,
        hops: Mapping[str, Hop] | None = None,
        cause_event: CauseEvent | None = None,
        event_waits: float = 0.0,
        relays: RelayPatience | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.relays = relays
        """The run's relays of the server's answers: a raw step whose request the server
        answered stops waiting for the proxy once their patience is out. None: the whole step
        timeout."""
        self.hops = dict(hops or {})
        """Where each hop a ``fault`` step may name is (client-proxy, proxy-server); empty
        where faults cannot be put on (then a fault step is not measured)."""
        self.faults: list[tuple[Active, FaultRecord]] = []
        """The faults this cell has on now, with their records."""
        self.cause_event = cause_event
        """How the ``event`` step has the lab cause its event (a proxy reload...); None: it cannot."""
        self.event_waits = event_waits
        """Seconds of this run the event steps wait on the topology's own limits (a redeploy's
        grace period, a scale to zero's idle time: wslab.lifecycle.waits, scaled)."""
        self.connect_path = "/"
        """The path the ``connect`` step opened, where a reconnecting client goes back to."""
        self.environment = environment or {}
        """Values for the steps' ``{env:NAME}`` placeholders."""
        self.gate = gate
        """With a user's app: its opening handshakes go one at a time (see wslab.app_log)."""
        self.turns: list[Turn] = []
        self.browser = browser
        self.cell = cell
        self.step_timeout = step_timeout
        self.time_scale = time_scale
        """Scenario durations (idle, hold, pings) are faithful seconds, multiplied by this."""
        self.transcript = Transcript()
        self.websocket: RecordingConnection | None = None
        self.page: PageSocket | None = None
        """The page a ``browser_connect`` step opened its WebSocket from, kept until the end."""
        self._pages = contextlib.AsyncExitStack()

    def _target(self, path: str) -> str:
        path = _expand(path, self.environment)
        return wire.with_cell(path, self.cell) if self.cell else path

    async def play(self, steps: list[dict[str, Any]]) -> Transcript:
        """Run every step in order; the first failing step ends the run. Every fault a step put
        on is taken off before the connection is closed, whatever happened."""
        try:
            for step in steps:
                ((action, argument),) = step.items()
                record = Step(step=action, argument=argument)
                self.transcript.steps.append(record)
                under = ", ".join(active.fault.describe() for active, _ in self.faults)
                started = time.monotonic()
                try:
                    detail = await self._step(action, argument)
                except TimeoutError as exc:
                    self.transcript.timed_out = True
                    detail = (
                        str(exc)
                        if isinstance(exc, NotRelayed)
                        else f"no answer within {self._timeout_for(action, argument):g} s"
                    )
                    record.ok = False
                except FaultUnavailable as why:
                    detail = f"not measured: {why}"
                    record.ok = False
                except (OSError, websockets.WebSocketException, StepFailed) as exc:
                    detail = _error_text(exc)
                    record.ok = False
                if under and action not in FAULT_STEPS:
                    # The timing is the evidence of a bandwidth or latency fault.
                    took = f"{time.monotonic() - started:.3f} s under {under}"
                    detail = f"{detail}; {took}" if detail else took
                if detail:
                    record.detail = detail
                if not record.ok:
                    self.transcript.error = self.transcript.error or f"{action}: {detail}"
                    break
        finally:
            try:
                await self._clear_faults()
            finally:
                await self._finish()
        return self.transcript

    async def _step(self, action: str, argument: Any) -> str:
        run = _within(getattr(self, f"_{action}")(argument), self._timeout_for(action, argument))
        if action not in OPENING_STEPS or self.gate is None:
            return await run
        async with self.gate.turn() as turn:
            self.turns.append(turn)
            try:
                return await run
            finally:
                turn.ended = self.websocket is None and self.page is None

    def _timeout_for(self, action: str, argument: Any) -> float:
        if action == "idle":
            return float(argument) * self.time_scale + self.step_timeout
        if action == "hold":
            return float(argument["seconds"]) * self.time_scale + self.step_timeout
        if action == "event":
            return event_seconds(argument) + 1.5 * self.event_waits + 2 * self.step_timeout
        if action.startswith("browser_"):
            # The page load, the wait for Chromium's own follow-ups, and the tab's setup.
            return 2 * self.step_timeout + FAVICON_WAIT
        return self.step_timeout

    async def _fault(self, argument: dict[str, Any]) -> str:
        fault = Fault.from_step(argument)
        hop = self.hops.get(fault.hop)
        record = FaultRecord(
            kind=fault.kind,
            hop=fault.hop,
            port=hop.port if hop is not None else None,
            rate_kbit=fault.rate_kbit if fault.kind == "bandwidth" else None,
            delay_ms=fault.delay_ms if fault.kind == "latency" else None,
            applied_at=None,
        )
        self.transcript.faults.append(record)
        try:
            if hop is None:
                raise FaultUnavailable("this backend gives the lab no hop to put faults on")
            if fault.kind == "reset":
                await self._quiet_hops()
            active = await controller().apply(fault, hop)
        except FaultUnavailable as why:
            record.not_measured = str(why)
            raise
        except FaultFailed as failed:
            record.error = str(failed)
            raise StepFailed(str(failed)) from None
        record.applied_at = time.time()
        record.commands = [shown(command) for command in active.prepared + active.applied]
        self.faults.append((active, record))
        return f"{fault.describe()} ({hop.describe()})"

    async def _quiet_hops(self) -> None:
        """Let the ACKs still owed for what was just exchanged cross before a reset: a delayed
        ACK (up to 40 ms on Linux) sent after the rule met the reset before the client's next
        message did, and the connection ended a step early. This client's own is sent now."""
        raw = self.websocket.transport.get_extra_info("socket") if self.websocket is not None else None
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        await asyncio.sleep(RESET_QUIET)

    async def _clear_fault(self, argument: dict[str, Any]) -> str:
        cleared = ", ".join(active.fault.describe() for active, _ in self.faults)
        errors = await self._clear_faults()
        if errors:
            raise StepFailed("; ".join(errors))
        return f"cleared {cleared}" if cleared else "no fault was on"

    async def _clear_faults(self) -> list[str]:
        """Take off every fault this cell has on, and note in each record when the WebSocket
        ended under it; the removal errors (normally none: the namespace goes anyway)."""
        errors: list[str] = []
        while self.faults:
            active, record = self.faults.pop()
            lost_at = self.websocket.lost_at if self.websocket is not None else None
            # Shielded: a cell cancelled (its budget, Ctrl-C) must still take its rules off.
            failed = await asyncio.shield(controller().clear(active))
            record.cleared_at = time.time()
            if lost_at is not None and record.applied_at is not None and lost_at >= record.applied_at:
                record.closed_after = round(lost_at - record.applied_at, 3)
            if failed:
                record.error = "; ".join(failed)
                errors += failed
        return errors

    async def _finish(self) -> None:
        if self.page is not None:
            if self.transcript.browser is not None:
                # Each socket's own handshake, to pair with the connection the server saw for it.
                self.transcript.browser.requests = self.page.requests()
            try:
                if self.transcript.close is None and self.transcript.upgraded:
                    with contextlib.suppress(OSError):
                        self.transcript.close = await self.page.close()
            finally:
                await self._pages.aclose()
        if self.websocket is None:
            return
        if self.transcript.close is None:
            await self.websocket.close()
            self.transcript.close = self._close_record()

    def _close_record(self) -> Close:
        websocket = self.websocket
        assert websocket is not None
        return Close(code=websocket.close_code, reason=websocket.close_reason or "")

    # Opening steps.

    async def _connect(self, argument: dict[str, Any]) -> str:
        self.transcript.kind = ClientKind.CONNECT
        key = _new_key()
        headers = [_fill(h, self.endpoint, key, self.environment) for h in argument.get("headers", [])]
        opened: list[RecordingConnection] = []

        def factory(*args: Any, **kwargs: Any) -> RecordingConnection:
            opened.append(RecordingConnection(*args, **kwargs))
            return opened[-1]

        path = self._connect_path(argument)
        ping = argument.get("ping")
        try:
            self.websocket = await connect(
                self.endpoint.ws_url(self._target(path)),
                additional_headers=headers,
                subprotocols=[_expand(p, self.environment) for p in argument["subprotocols"]]
                if argument.get("subprotocols")
                else None,
                compression="deflate" if argument.get("compression", True) else None,
                open_timeout=None,
                ping_interval=ping * self.time_scale if ping else None,
                # The lab measures the topology, never a proxy named in the environment.
                proxy=None,
                create_connection=factory,
                **({"ssl": self.endpoint.tls} if self.endpoint.tls else {}),
            )
        finally:
            if opened:
                self._record_handshake(opened[0])
        self.transcript.upgraded = True
        self.transcript.subprotocol = self.websocket.subprotocol
        return ""

    def _record_handshake(self, connection: RecordingConnection) -> None:
        self.transcript.connected = True
        request = getattr(connection, "request", None)
        if request is not None:
            self.transcript.sent = request_record(
                wire.RequestHead("GET", request.path, "HTTP/1.1", list(request.headers.raw_items()))
            )
        self.transcript.received = response_record(connection.raw_head)

    async def _raw(self, argument: dict[str, Any]) -> str:
        self.transcript.kind = ClientKind.RAW
        key = _new_key()
        head = wire.RequestHead(
            argument.get("method", "GET"),
            self._target(argument.get("path", "/")),
            argument.get("version", "HTTP/1.1"),
            [_fill(h, self.endpoint, key, self.environment) for h in argument["headers"]],
        )
        reader, writer = await self.endpoint.open()
        self.transcript.connected = True
        try:
            lines = [f"{head.method} {head.target} {head.version}"]
            lines += [f"{name}: {value}" for name, value in head.headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self.transcript.sent = request_record(head)
            sent_at = time.time()
            data = await self._response_or_not_relayed(_read_head(reader), sent_at)
        finally:
            writer.close()
        response = response_record(data)
        if response is None:
            raise StepFailed(
                "connection closed without a response" if not data else f"unreadable response: {data[:80]!r}"
            )
        self.transcript.received = response
        self.transcript.upgraded = response.status == 101
        return ""

    async def _response_or_not_relayed(self, reading: Awaitable[bytes], sent_at: float) -> bytes:
        """The response ``reading`` gets; with the run's relays (wslab.relay_patience), NotRelayed
        once the server has answered and nothing reached the client within their patience."""
        if self.relays is None or self.cell is None:
            return await reading
        return await self.relays.response(self.cell, reading, sent_at)

    async def _tcp_probe(self, argument: dict[str, Any]) -> str:
        self.transcript.kind = ClientKind.TCP_PROBE
        reader, writer = await self.endpoint.open()
        self.transcript.connected = True
        if not writer.can_write_eof():  # TLS: close_notify, then the FIN
            writer.close()
            return "connected and closed without sending a byte"
        # The FIN a probe's close sends, with the socket left open to read: the front end's own FIN
        # back says it has dealt with the connection (the runner then need not wait out a window).
        writer.write_eof()
        sent = time.monotonic()
        try:
            async with asyncio.timeout(PEER_CLOSE_WAIT):
                while await reader.read(READ_CHUNK):
                    pass
        except (TimeoutError, OSError):
            return f"connected and closed without sending a byte; no close back within {PEER_CLOSE_WAIT:g} s"
        finally:
            writer.close()
        self.transcript.peer_closed_after = round(time.monotonic() - sent, 4)
        return (
            "connected and closed without sending a byte; closed back "
            f"{self.transcript.peer_closed_after:.3f} s later"
        )

    async def _browser_visit(self, argument: dict[str, Any]) -> str:
        scheme = "https" if self.endpoint.tls else "http"
        url = f"{scheme}://{self.endpoint.authority}{self._target(argument.get('path', '/'))}"
        return await self._record_browser(visit(self._chromium, url, self.step_timeout))

    def _connect_path(self, argument: dict[str, Any]) -> str:
        """The path a connect step opens: its ``path``, where a reconnecting client goes back to,
        with the probe server's ping setting if it gives one."""
        path = self.connect_path = argument.get("path", "/")
        if "server_ping" in argument:
            server_ping = argument["server_ping"]
            path += f"{'&' if '?' in path else '?'}wslab-ping={server_ping if server_ping else 'off'}"
        return path

    async def _browser_connect(self, argument: dict[str, Any]) -> str:
        """``new WebSocket(url)`` from a page, left open; the page's own loop reopens it on close
        (:mod:`wslab.page_socket`)."""
        url = self.endpoint.ws_url(self._target(self._connect_path(argument)))
        retry = Retry.from_step(argument.get("retry"))
        transcript = self.transcript
        transcript.kind = ClientKind.BROWSER
        self.page = await self._pages.enter_async_context(
            open_page_socket(self._chromium, url, retry, self.step_timeout)
        )
        handshake = await self.page.begin(self.step_timeout)
        first = self.page.first
        transcript.connected = handshake.sent is not None
        transcript.sent, transcript.received = handshake.sent, handshake.received
        transcript.upgraded = first is not None and first.get("opened") is not None
        transcript.browser = BrowserReport(product=self._chromium.version, requests=[])
        if first is None:
            raise StepFailed(f"Chromium: the page's WebSocket did not open within {self.step_timeout:g} s")
        if not transcript.upgraded:
            transcript.close = Close(code=first.get("code"), reason=first.get("reason") or "")
            why = handshake.error or f"closed with {first.get('code')} before opening"
            raise StepFailed(f"Chromium: {why}")
        return f"opened; {retry.describe()}"

    async def _browser_websocket(self, argument: dict[str, Any]) -> str:
        url = self.endpoint.ws_url(self._target(argument.get("path", "/")))
        subprotocols = [_expand(p, self.environment) for p in argument.get("subprotocols", [])]
        messages = argument.get("send", [])
        return await self._record_browser(
            open_websocket(self._chromium, url, subprotocols, messages, self.step_timeout)
        )

    @property
    def _chromium(self) -> Chromium:
        if self.browser is None:
            raise StepFailed("this run has no browser")
        return self.browser

    async def _record_browser(self, step: Awaitable[Exchange]) -> str:
        """Run a browser step and put what Chromium reported into the transcript."""
        try:
            exchange = await step
        except RuntimeError as error:  # a DevTools command Chromium refused
            raise StepFailed(f"Chromium: {error}") from None
        transcript = self.transcript
        transcript.kind = ClientKind.BROWSER
        transcript.connected = exchange.sent is not None
        transcript.sent, transcript.received = exchange.sent, exchange.received
        transcript.upgraded, transcript.subprotocol = exchange.upgraded, exchange.subprotocol
        transcript.close = exchange.close
        transcript.browser = BrowserReport(product=self._chromium.version, requests=exchange.requests)
        if exchange.error:
            raise StepFailed(exchange.error)
        return exchange.detail

    # WebSocket steps.

    @property
    def _open(self) -> RecordingConnection:
        if self.websocket is None:
            raise StepFailed("no open WebSocket")
        return self.websocket

    async def _send(self, argument: str | dict[str, int]) -> str:
        payload = argument if isinstance(argument, str) else b"\0" * argument["bytes"]
        await self._open.send(payload)
        return ""

    async def _expect_message(self, argument: str | dict[str, int]) -> str:
        message = await self._open.recv()
        if isinstance(argument, str):
            if message != argument:
                raise StepFailed(f"expected {argument!r}, received {message!r:.80}")
        elif len(message) != argument["bytes"]:
            raise StepFailed(f"expected {argument['bytes']} bytes, received {len(message)}")
        return ""

    async def _command(self, argument: dict[str, Any]) -> str:
        await self._open.send(json.dumps(argument))
        if argument["wslab"] == "handshake":
            report = json.loads(await self._open.recv())
            return f"server saw subprotocol {report.get('subprotocol')!r}"
        return ""

    async def _ping(self, argument: dict[str, Any]) -> str:
        started = time.monotonic()
        await (await self._open.ping())
        return f"pong after {1000 * (time.monotonic() - started):.1f} ms"

    async def _hold(self, argument: dict[str, Any]) -> str:
        """Keep the connection open without sending data; record how and when it ends."""
        websocket = self._open
        wanted = float(argument["seconds"]) * self.time_scale
        started = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(websocket.wait_closed(), wanted)
        ended = time.monotonic()
        closed = websocket.close_code is not None
        lived = ended - started
        self.transcript.hold = Hold(
            seconds=wanted,
            seconds_faithful=float(argument["seconds"]),
            closed=closed,
            lived=round(lived, 3),
            lived_faithful=round(lived / self.time_scale, 1),
            since_last_byte=round(ended - websocket.last_byte_at, 3),
            code=websocket.close_code,
            reason=websocket.close_reason,
            closed_by=self._closed_by() if closed else None,
        )
        if closed:
            self.transcript.close = self._close_record()
            return f"closed after {lived:.2f} s ({lived / self.time_scale:.0f} s faithful)"
        return f"still open after {lived:.2f} s"

    def _closed_by(self) -> str:
        protocol = self._open.protocol
        if protocol.close_rcvd is None:
            return "abnormal (TCP closed, no close frame)"
        return "client" if protocol.close_rcvd_then_sent is False else "peer"

    async def _event(self, argument: dict[str, Any]) -> str:
        """Keep numbered messages crossing, have the lab cause the event after ``after`` seconds,
        watch the connection ``watch`` seconds once the event is done (and until a redeployed
        instance is gone), and time a reconnection if it closed. A scale to zero is watched in
        silence (:meth:`_quiet_event`). The watched connection is websockets' client's
        (``connect``), or a Chromium page's (``browser_connect``), which reconnects by its own loop."""
        watched = self._watched()
        if self.cause_event is None:
            raise StepFailed("this run cannot cause lifecycle events")
        if argument["cause"] == "scale-to-zero":
            return await self._quiet_event(argument, watched)
        await watched.start(float(argument.get("every", 0.1)))
        await asyncio.sleep(float(argument.get("after", 1)))
        event_at = time.monotonic()
        event = await self._cause(argument, watched)
        # The watch starts once the event is done: a reload the proxy applies later than it was
        # asked for (Traefik throttles its file provider) is watched as long as any other.
        done = time.monotonic()
        watch = float(argument.get("watch", 3))
        url, tls = self._url()
        # Halfway through the base watch: a redeployed old instance still holds its connections.
        halfway = done - event_at + watch / 2
        second = asyncio.ensure_future(new_connection(url, event_at, halfway, watch / 2, **tls))
        budget = float(argument.get("reconnect_within", 10)) if argument.get("reconnect") else None
        again: asyncio.Future[Reconnect] | None = None
        try:
            # A reconnecting client goes back as soon as it sees the close, whatever the lab still
            # watches: started later, its time to be back would be the lab's, not the client's.
            if await watched.wait_closed(done + watch + (event.ends_after or 0) - time.monotonic()):
                again = self._reconnecting(watched, event_at, budget)
            await watched.stop(drain=self.step_timeout / 5)
            if again is None and watched.closed_at is not None:  # closed while draining
                again = self._reconnecting(watched, event_at, budget)
            record = await watched.record(event, event_at)
            record.new_connection = await second
            if again is not None:
                record.reconnect = await again
        finally:
            for task in (second, again):
                if task is not None:
                    task.cancel()
        if watched.closed_at is not None:
            self.transcript.close = watched.close_seen()
        record.instance_after = _landed(record)
        self.transcript.lifecycle = record
        if record.survived:
            echoes = record.echoed_after_event
            return f"{event.cause}: still open after {record.watched:.1f} s, {echoes} echoes since"
        return f"{event.cause}: closed {record.closed_after} s after it, code {record.code}"

    def _watched(self) -> Watched:
        """The connection an event step watches: the page's, if a browser_connect opened one."""
        if self.page is not None:
            return self.page
        url, tls = self._url()
        return ClientWatch(self._open, url, tls)

    @staticmethod
    def _reconnecting(
        watched: Watched, event_at: float, budget: float | None
    ) -> asyncio.Future[Reconnect] | None:
        """The reconnection's timing under way, if the step asks for one."""
        return asyncio.ensure_future(watched.reconnect(event_at, budget)) if budget is not None else None

    async def _cause(self, argument: dict[str, Any], watched: Watched) -> LifecycleEvent:
        """Have the lab cause the step's event; a failure stops the traffic and fails the step."""
        assert self.cause_event is not None
        try:
            return await self.cause_event(argument["cause"], argument)
        except EventFailed as error:
            await watched.stop(0)
            raise StepFailed(str(error)) from None
        except BaseException:
            await watched.stop(0)
            raise

    def _url(self) -> tuple[str, dict[str, Any]]:
        """Where a new or reconnecting client goes (the ``connect`` step's path), and its TLS."""
        url = self.endpoint.ws_url(self._target(self.connect_path))
        return url, {"ssl": self.endpoint.tls} if self.endpoint.tls else {}

    async def _quiet_event(self, argument: dict[str, Any], watched: Watched) -> str:
        """Scale to zero: keep the WebSocket quiet past the idle time, then see whether it still
        echoes; close it, let the idle time pass again, and open a new one: a cold start lands
        on a new instance. A Chromium page that reconnected meanwhile is timed, then closed too."""
        await asyncio.sleep(float(argument.get("after", 1)))
        event_at = time.monotonic()
        event = await self._cause(argument, watched)
        idle = event.ends_after or 0
        past = idle + max(0.5, idle / 10)  # the autoscaler looks every idle/20 s, at most 0.1 s
        await watched.wait_closed(event_at + past - time.monotonic())
        await watched.start(float(argument.get("watch", 3)))
        await watched.wait_closed(float(argument.get("watch", 3)))
        await watched.stop(drain=self.step_timeout / 5)
        record = await watched.record(event, event_at)
        if watched.closed_at is not None:
            self.transcript.close = watched.close_seen()
            if argument.get("reconnect"):
                budget = float(argument.get("reconnect_within", 10))
                record.reconnect = await watched.reconnect(event_at, budget)
        await watched.close()
        url, tls = self._url()
        delay = time.monotonic() - event_at + past
        record.new_connection = await new_connection(
            url, event_at, delay, float(argument.get("watch", 3)), **tls
        )
        record.instance_after = _landed(record)
        self.transcript.lifecycle = record
        kept = "kept" if record.survived else f"closed {record.closed_after} s in, code {record.code}"
        return f"scale-to-zero: {kept}; the next client landed on instance {record.instance_after}"

    async def _idle(self, argument: float) -> str:
        try:
            await asyncio.wait_for(self._open.wait_closed(), float(argument) * self.time_scale)
        except TimeoutError:
            return ""
        self.transcript.close = self._close_record()
        raise StepFailed(f"connection closed while idle: {self.transcript.close}")

    async def _expect_close(self, argument: dict[str, Any]) -> str:
        await self._open.wait_closed()
        self.transcript.close = self._close_record()
        code = self.transcript.close.code
        if "code" in argument and code != argument["code"]:
            raise StepFailed(f"expected close code {argument['code']}, got {code}")
        return f"closed with {code}"

    async def _close(self, argument: dict[str, Any]) -> str:
        await self._open.close(argument.get("code", 1000), argument.get("reason", ""))
        self.transcript.close = self._close_record()
        return ""


class StepFailed(Exception):
    """A step ran but did not get what it needed."""


async def _within(step: Awaitable[str], seconds: float) -> str:
    """``step``'s result, or TimeoutError after ``seconds`` (as wait_for, without its task)."""
    async with asyncio.timeout(seconds):
        return await step


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """Bytes up to the end of a response head, or all there were when the connection closed."""
    data = b""
    while wire.split_head(data) is None:
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            break
        data += chunk
    return data
