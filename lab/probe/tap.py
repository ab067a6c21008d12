"""The recording tap: a transparent TCP hop in front of the user's own server.

``python -m wslab.probe --listen NAME=HOST:PORT --forward NAME=127.0.0.1:APP``
puts a tap, instead of the observing websockets server, behind a topology's
proxy: every byte the proxy sends goes to the app unchanged, every byte the
app answers goes back unchanged, and the tap publishes on the control channel
the same records the probe server does, so that checks, diagnosis and reports
read an app's cells as they read the probe server's:

- one ``handshake`` event per request, also for each request a proxy sends on
  a kept-alive connection (each carries its own ``wslab-cell``): the request
  head byte for byte as the proxy delivered it, parsed leniently, and the
  app's response head (status, reason, headers, HTTP version). ``error`` is
  null when the app answered; otherwise it says what happened instead:
  ``NoResponse`` (the head went to the app, the connection ended without an
  answer), ``IncompleteRequest``, ``NoRequest`` (a connection that carried no
  request), ``InvalidResponse`` (the app's answer is not HTTP/1.x),
  ``TimeoutError`` (``--open-timeout``, :data:`OPEN_TIMEOUT` seconds by
  default, without a complete head or an answer: the record is published
  then, and forwarding goes on; a later answer is forwarded, not recorded),
  or the ``OSError`` of an app the tap could not reach;
- a ``closed`` event for each upgraded connection, from the WebSocket close
  frames that passed: ``code`` and ``reason`` of the close frame the app
  received (1006 when none did, as websockets reports it), ``closed_by``
  ``client`` or ``server`` (the app) for whichever sent the first close
  frame, ``abnormal`` when neither did;
- both with a ``tap`` object: the tap's own connection number, the app's
  address, the tap's source port toward the app (``upstream_local_port``,
  which is the peer port an app logs, so its log lines can be tied to a
  request), the index of the request on its kept-alive connection
  (``reused``), when the head was forwarded and the answer came, the bytes
  each way so far, whose side ended first (``client``, ``app``,
  ``client-reset``, ``app-reset``, or ``tap`` when the app could not be
  reached; null while both are open) and why the tap stopped following the
  HTTP framing, if it did (``gave_up``). The ``closed`` event's adds the code
  and reason of the app's own close frame.

A request's ``opened_at`` is when the connection was accepted for its first
request, and when the request's first byte arrived for a later one on a
kept-alive connection, so that a time window finds it. Over h2c (the proxy
sends the HTTP/2 preface) the connection gets one record, like the probe
server's, with the requests read from the frames that arrived before the
app's first answer (``http2_streams``, bounded by the head bound).

The hop is built on asyncio protocols: a chunk is written on before it is
read, the HTTP/1.x framing is followed by :mod:`wslab.probe.http1` without
buffering a body, and a record costs one JSON document per request, made
once the app's response head has gone on to the proxy (the probe server
publishes before it answers; the runner waits for records either way).
Records are redacted as the probe server's are (:mod:`wslab.probe.redact`)
unless the process runs with ``--no-redact``. Memory per connection is
bounded by the head bound (:data:`~wslab.probe.server.MAX_RECORDED_HEAD`)
for each request awaiting its answer (at most
:data:`~wslab.probe.http1.MAX_PENDING`) and by the framing reader's own
bounds. The tap never closes a connection on its own, except one whose app
it cannot reach, once the request head (or :data:`OPEN_TIMEOUT`) has come.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from .h2c import read_streams
from .http1 import (
    Closing,
    Conversation,
    Event,
    GaveUp,
    Http2Preface,
    RequestHead,
    RequestStarted,
    ResponseHead,
    Switched,
)
from .redact import redact_record
from .server import MAX_RECORDED_HEAD, MAX_RECORDED_HEADERS, Publish
from .wire import READINESS_REQUEST, parse_request_head, parse_response_head, split_http2
from .wsframes import CloseFrame

READY_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
FIRST_BYTE_WAIT = 0.05
"""Seconds the tap waits for a connection's first byte before it opens its own to the app: a
proxy writes its request at once, and a connection that sends nothing (a TCP probe) still
reaches the app, as it would without the tap."""
OPEN_TIMEOUT = 10.0
"""Seconds after a request's first byte when its record is published even without a complete
head or an answer (websockets' own ``open_timeout``, which the probe server records with)."""
ABNORMAL = 1006

_records = itertools.count(1)
"""Record numbers (``conn``): one per request, so that each names one exchange."""
_connections = itertools.count(1)


@dataclass(frozen=True)
class Tap:
    """One tapped listener: its name, the app it forwards to, and where its records go."""

    listener: str
    upstream: tuple[str, int]
    publish: Publish
    redact: bool = True
    open_timeout: float = OPEN_TIMEOUT


@dataclass
class _Exchange:
    """One request on a tapped connection, until its record is published."""

    conn: int
    index: int
    started_at: float
    head: bytes = b""
    head_size: int = 0
    complete: bool = False
    forwarded_at: float | None = None
    response: dict[str, Any] | None = None
    response_at: float | None = None
    published: bool = False
    cell: str | None = None
    """As published (the ``closed`` event names it too)."""
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class TapConnection(asyncio.Protocol):
    """The proxy's connection to the tap, and the tap's own to the app."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self.number = next(_connections)
        self.opened_at = time.time()
        self.conversation = Conversation(MAX_RECORDED_HEAD)
        self.client: asyncio.Transport
        self.peer: list[Any] | None = None
        self.app: asyncio.Transport | None = None
        self.local_port: int | None = None
        self.unreachable: dict[str, str] | None = None
        self.exchanges: dict[int, _Exchange] = {}
        """The requests without a final answer yet, by index (published or not)."""
        self.current: _Exchange | None = None
        self.answered: _Exchange | None = None
        self.requests = 0
        self.http2: _Exchange | None = None
        self.upgrade: _Exchange | None = None
        """The request whose answer switched protocols."""
        self.first_close: str | None = None
        self.client_close: CloseFrame | None = None
        self.app_close: CloseFrame | None = None
        self.bytes_to_app = 0
        self.bytes_from_app = 0
        self.ended_by: str | None = None
        self.gave_up: dict[str, str] = {}
        """Why the tap stopped following each side ("request", "response"), if it did."""
        self.answers_lost = False
        self.client_open = True
        self.app_open = False
        self.connecting = True
        self.client_eof = False
        self.app_eof_seen = False
        self.finished = False
        self.early = bytearray()
        """What the proxy sent while the app's connection was being made."""
        self.dialling: asyncio.TimerHandle | None = None
        """Until the app's connection is started: when it starts without a first byte."""

    # The proxy's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        peer = transport.get_extra_info("peername")
        self.peer = list(peer[:2]) if peer else None
        self.dialling = asyncio.get_running_loop().call_later(FIRST_BYTE_WAIT, self._dial)

    def _dial(self) -> None:
        """Open the tap's own connection to the app, once."""
        if self.dialling is None:
            return
        self.dialling.cancel()
        self.dialling = None
        asyncio.get_running_loop().create_task(self._connect())

    def _readiness_check(self) -> bool:
        """Whether the first bytes are (or may still become) the lab's readiness request; answer
        it when they are, so that it never reaches the app (which would log it) nor a record."""
        early = bytes(self.early[: len(READINESS_REQUEST)])
        if not READINESS_REQUEST.startswith(early):
            return False
        if len(early) == len(READINESS_REQUEST):
            assert self.dialling is not None
            self.dialling.cancel()
            self.dialling = None
            self.connecting, self.finished = False, True
            self.client.write(READY_ANSWER)
            self.client.close()
        return True

    async def _connect(self) -> None:
        host, port = self.tap.upstream
        try:
            transport, _ = await asyncio.get_running_loop().create_connection(
                lambda: _AppSide(self), host, port
            )
        except OSError as error:
            self.connecting = False
            self._unreachable(error)
            return
        assert isinstance(transport, asyncio.Transport)
        self.connecting = False
        self.app, self.app_open = transport, True
        self.local_port = transport.get_extra_info("sockname")[1]
        self._flush_early()
        # What the proxy did meanwhile, the app gets too: its end of the stream, or the close.
        if not self.client_open:
            _end(transport)
        elif self.client_eof:
            transport.write_eof()

    def _flush_early(self) -> None:
        early, self.early = bytes(self.early), bytearray()
        if early:
            self.data_received(early)
        if self.client_open:
            self.client.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        if self.connecting:
            # Held (bounded) until the app's connection exists, rather than a round trip later.
            self.early += data
            if self.dialling is not None and not self._readiness_check():
                self._dial()
            if len(self.early) >= MAX_RECORDED_HEAD:
                self.client.pause_reading()
            return
        if self.app_open:
            self.app.write(data)  # type: ignore[union-attr]
            self.bytes_to_app += len(data)
        events = self.conversation.feed_request(data)
        if events:
            self._handle(events)

    def eof_received(self) -> bool:
        if self.finished:
            return False
        self._dial()
        self.ended_by = self.ended_by or "client"
        self.client_eof = True
        if self.app is not None and self.app_open:
            self.app.write_eof()
        elif self.unreachable is not None:
            self._close_unreachable()
        self._close_if_both_ended()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_open = False
        if self.finished:
            return
        self._dial()
        self.ended_by = self.ended_by or ("client-reset" if exc else "client")
        if self.app is not None and self.app_open:
            _end(self.app, reset=exc is not None)
        self._finish_if_done()

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_reading()

    def resume_writing(self) -> None:
        if self.app is not None and self.app_open:
            self.app.resume_reading()

    # The app's side (called by _AppSide).

    def app_data(self, data: bytes) -> None:
        if self.client_open:
            self.client.write(data)
        self.bytes_from_app += len(data)
        events = self.conversation.feed_response(data)
        if events:
            self._handle(events)
        elif self.http2 is not None and not self.http2.published:
            self._http2_answered(data)

    def app_eof(self) -> None:
        self.ended_by = self.ended_by or "app"
        self.app_eof_seen = True
        if self.client_open:
            self.client.write_eof()
        self._close_if_both_ended()

    def app_lost(self, exc: Exception | None) -> None:
        self.app_open = False
        self.ended_by = self.ended_by or ("app-reset" if exc else "app")
        if self.client_open:
            _end(self.client, reset=exc is not None)
        self._finish_if_done()

    def app_pause(self) -> None:
        self.client.pause_reading()

    def app_resume(self) -> None:
        if self.client_open:
            self.client.resume_reading()

    # What the bytes said.

    def _handle(self, events: list[Event]) -> None:
        now = time.time()
        for event in events:
            if isinstance(event, RequestStarted):
                self._started(event.index, now)
            elif isinstance(event, RequestHead):
                self._head(event, now)
            elif isinstance(event, ResponseHead):
                if event.final:
                    self._answered(event, now)
            elif isinstance(event, Switched):
                self.upgrade = self.answered
            elif isinstance(event, Closing):
                self._closing(event)
            elif isinstance(event, GaveUp):
                self._gave_up(event)
            elif isinstance(event, Http2Preface) and self.current is not None:
                self.http2 = self.current

    def _started(self, index: int, now: float) -> None:
        exchange = _Exchange(next(_records), index, now)
        self.exchanges[index] = exchange
        self.current = exchange
        self.requests += 1
        exchange.timer = asyncio.get_running_loop().call_later(
            self.tap.open_timeout, self._timed_out, exchange
        )

    def _head(self, event: RequestHead, now: float) -> None:
        exchange = self.exchanges.get(event.index)
        if exchange is None or exchange.published:
            return
        exchange.head, exchange.head_size, exchange.complete = event.head, len(event.head), True
        if self.app is not None:
            exchange.forwarded_at = now
        if self.unreachable is not None:
            self._close_unreachable()
            self._publish(exchange, self.unreachable)
        elif self.answers_lost:
            self._publish(exchange, self._lost_error())

    def _answered(self, event: ResponseHead, now: float) -> None:
        exchange = self.answered = self.exchanges.pop(event.index, None)
        if exchange is None or exchange.published:
            return  # recorded already, as timed out: its late answer is forwarded, not recorded
        response = parse_response_head(event.head)
        exchange.response = response.to_dict() if response else None
        exchange.response_at = now
        self._publish(exchange)

    def _closing(self, event: Closing) -> None:
        side = "client" if event.from_client else "server"
        self.first_close = self.first_close or side
        if event.from_client:
            self.client_close = self.client_close or event.frame
        else:
            self.app_close = self.app_close or event.frame

    def _gave_up(self, event: GaveUp) -> None:
        self.gave_up.setdefault(event.side, event.reason)
        if event.side != "response" or self.upgrade is not None:
            return
        # No later answer can be tied to its request: what waits now is published as it is.
        self.answers_lost = True
        for exchange in list(self.exchanges.values()):
            if exchange.complete:
                self._publish(exchange, self._lost_error())

    def _http2_answered(self, data: bytes) -> None:
        assert self.http2 is not None
        response = parse_response_head(data) if data.startswith(b"HTTP/") else None
        self.http2.response = response.to_dict() if response else None
        self.http2.response_at = time.time()
        self._publish(self.http2)

    def _timed_out(self, exchange: _Exchange) -> None:
        exchange.timer = None
        if self.unreachable is not None:
            self._close_unreachable()
        self._publish(exchange, self._missing(exchange, timed_out=True))

    # The end.

    def _unreachable(self, error: OSError) -> None:
        host, port = self.tap.upstream
        self.unreachable = _error(type(error).__name__, str(error), f"the tap could not reach {host}:{port}")
        # Read the request, for its cell id, then close: the proxy sees what an absent app gives.
        self._flush_early()
        if self.client_open and not self.client_eof:
            asyncio.get_running_loop().call_later(self.tap.open_timeout, self._close_unreachable)
        else:
            self._close_unreachable()
            self._finish_if_done()

    def _close_unreachable(self) -> None:
        if self.client_open:
            self.ended_by = self.ended_by or "tap"
            _end(self.client)

    def _close_if_both_ended(self) -> None:
        if self.client_eof and self.app_eof_seen:
            self.client.close()
            if self.app is not None:
                self.app.close()

    def _finish_if_done(self) -> None:
        if self.client_open or self.app_open or self.connecting or self.finished:
            return
        self.finished = True
        for exchange in list(self.exchanges.values()):
            self._publish(exchange, self._missing(exchange))
        if not self.requests:
            nothing = _error("NoRequest", "the connection ended before any request", self._traffic())
            self._publish(_Exchange(next(_records), 0, self.opened_at), self.unreachable or nothing)
        if self.upgrade is not None:
            self._publish_closed()

    def _missing(self, exchange: _Exchange, timed_out: bool = False) -> dict[str, str] | None:
        """The error of a request recorded without the app's answer: why there is none."""
        if self.unreachable is not None:
            return self.unreachable
        if self.answers_lost:
            return self._lost_error()
        if exchange is self.http2 and self.bytes_from_app:
            return None
        complete = exchange.complete or exchange is self.http2
        if timed_out:
            seconds = f"{self.tap.open_timeout:g} s"
            if complete:
                return _error("TimeoutError", f"the app did not answer within {seconds}", self._traffic())
            head = f"{self._head_of(exchange)[1]} bytes of it received"
            return _error("TimeoutError", f"no complete request head within {seconds}", head)
        if not complete:
            head = f"{self._head_of(exchange)[1]} bytes of it received"
            return _error("IncompleteRequest", f"{self._ending()} before the request head was complete", head)
        if self.ended_by in ("app", "app-reset"):
            return _error("NoResponse", f"{self._ending()} without answering", self._traffic())
        return _error("NoResponse", f"{self._ending()} before the app answered", self._traffic())

    def _ending(self) -> str:
        return {
            "client": "the client closed the connection",
            "app": "the app closed the connection",
            "client-reset": "the client reset the connection",
            "app-reset": "the app reset the connection",
            "tap": "the tap closed the connection",
        }.get(self.ended_by or "", "the connection ended")

    def _lost_error(self) -> dict[str, str]:
        reason = self.gave_up.get("response", "")
        return _error("InvalidResponse", "the app's answer could not be read as HTTP/1.x", reason)

    def _traffic(self) -> str:
        return f"{self.bytes_to_app} bytes sent to the app, {self.bytes_from_app} received from it"

    # Records.

    def _head_of(self, exchange: _Exchange) -> tuple[bytes, int]:
        """The request head to record and its size: the part that arrived if it is not complete."""
        if exchange is self.http2:
            data = bytes(self.conversation.http2_data)
            return data, len(data)
        if exchange.complete or exchange is not self.current:
            return exchange.head, exchange.head_size
        return self.conversation.request_head, self.conversation.request_head_size

    def _publish(self, exchange: _Exchange, error: dict[str, str] | None = None) -> None:
        if exchange.published:
            return
        exchange.published = True
        if exchange.timer is not None:
            exchange.timer.cancel()
        record = self._handshake_record(exchange, error)
        if self.tap.redact:
            record = redact_record(record)
        exchange.cell, exchange.head = record["cell"], b""
        self.tap.publish(record)

    def _handshake_record(self, exchange: _Exchange, error: dict[str, str] | None) -> dict[str, Any]:
        data, size = self._head_of(exchange)
        raw, frames = split_http2(data) or (data, b"")
        head = parse_request_head(raw, MAX_RECORDED_HEADERS) if raw else None
        response = exchange.response
        record = {
            "event": "handshake",
            "listener": self.tap.listener,
            "conn": exchange.conn,
            "cell": head.cell if head else None,
            "opened_at": self.opened_at if exchange.index == 0 else exchange.started_at,
            "at": time.time(),
            "peer": self.peer,
            "bytes_received": size,
            "raw_head": raw.decode("latin-1"),
            "request": head.to_dict() if head else None,
            "response": response,
            "upgraded": response is not None and response["status"] == 101,
            "error": None if response is not None else error,
            "tap": {
                **self._tap_common(),
                "upstream_local_port": self.local_port,
                "reused": exchange.index,
                "request_forwarded_at": exchange.forwarded_at,
                "response_at": exchange.response_at,
                "gave_up": "; ".join(f"{side}: {why}" for side, why in self.gave_up.items()) or None,
            },
        }
        if frames:
            record["http2_streams"] = read_streams(frames)
        return record

    def _tap_common(self) -> dict[str, Any]:
        return {
            "connection": self.number,
            "upstream": list(self.tap.upstream),
            "bytes_to_app": self.bytes_to_app,
            "bytes_from_app": self.bytes_from_app,
            "ended_by": self.ended_by,
        }

    def _publish_closed(self) -> None:
        assert self.upgrade is not None
        received = self.client_close
        self.tap.publish(
            {
                "event": "closed",
                "listener": self.tap.listener,
                "conn": self.upgrade.conn,
                "cell": self.upgrade.cell,
                "at": time.time(),
                "code": received.code if received else ABNORMAL,
                "reason": received.reason if received else "",
                "closed_by": self.first_close or "abnormal",
                "tap": {
                    **self._tap_common(),
                    "app_code": self.app_close.code if self.app_close else None,
                    "app_reason": self.app_close.reason if self.app_close else "",
                },
            }
        )


class _AppSide(asyncio.Protocol):
    """The tap's connection to the app: everything goes to its :class:`TapConnection`."""

    def __init__(self, connection: TapConnection) -> None:
        self.connection = connection

    def data_received(self, data: bytes) -> None:
        self.connection.app_data(data)

    def eof_received(self) -> bool:
        self.connection.app_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.app_lost(exc)

    def pause_writing(self) -> None:
        self.connection.app_pause()

    def resume_writing(self) -> None:
        self.connection.app_resume()


def _error(kind: str, text: str, cause: str = "") -> dict[str, str]:
    return {"type": kind, "text": text, "cause": cause}


def _end(transport: asyncio.BaseTransport, reset: bool = False) -> None:
    """Close a transport once its buffer is written; for a reset, pass the reset on (RST)."""
    if not reset:
        transport.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def serve_tap(
    listener: str,
    host: str,
    port: int,
    upstream: tuple[str, int],
    publish: Publish,
    *,
    redact: bool = True,
    open_timeout: float = OPEN_TIMEOUT,
) -> asyncio.Server:
    """Start one tap listener forwarding to ``upstream``; returns the asyncio server."""
    tap = Tap(listener, upstream, publish, redact, open_timeout)
    return await asyncio.get_running_loop().create_server(lambda: TapConnection(tap), host, port)
