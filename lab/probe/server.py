"""The observing WebSocket server.

It is an ordinary ``websockets`` asyncio server (the API behind
``from websockets.asyncio.server import serve``) whose connections remember
what reached them: the raw request head in arrival order and original case,
the peer, the response websockets sent and its exact error text. Connections
that fail before ``process_request`` runs (HEAD, HTTP/1.0, a TCP probe that
sends nothing) are recorded too, because the record is taken in
:meth:`ObservingConnection.handshake`, around websockets' own handshake.

Every record is redacted (:mod:`wslab.probe.redact`) before it leaves the
connection, unless the server runs with ``--no-redact``, and published as a
JSON event on a control WebSocket that the runner connects to directly, never
through a proxy under test. Over h2c, the requests inside the connection are
read here (:mod:`wslab.probe.h2c`), so that they are redacted too. The lab's
own readiness check (``GET /.wslab-ready``) is answered 200 and never recorded.

Nothing a client sends makes the server allocate without bound: a recorded
head is at most :data:`MAX_RECORDED_HEAD` bytes and :data:`MAX_RECORDED_HEADERS`
parsed headers, a ``send`` command at most ``max_send`` bytes, a ``silence``
at most :data:`MAX_SILENCE` seconds, and a connection keeps only its
correlation id and parsed request once its record is published.

This module depends on websockets and the standard library only, so that it
runs under any websockets release the lab is asked to reproduce.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import json
import re
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from .h2c import read_streams
from .redact import redact_record
from .wire import (
    READINESS_PATH,
    is_readiness_check,
    may_be_http2,
    parse_request_head,
    split_head,
    split_http2,
)

MAX_RECORDED_HEAD = 65536
MAX_RECORDED_HEADERS = 500
"""Header lines parsed into a record (websockets itself refuses more than 128); the raw head
keeps them all. Each parsed header costs ~200 bytes of Python objects for 4 on the wire."""
MAX_SEND = 16 << 20
"""The largest ``{"wslab": "send", "bytes": N}`` the lab's server honours (16 MiB)."""
MAX_SILENCE = 3600.0
"""The longest ``{"wslab": "silence", "seconds": S}``, in seconds."""
SUBPROTOCOLS = ["wslab.v1", "chat"]
TOO_BIG = 1009
POLICY = 1008

Publish = Callable[[dict[str, Any]], None]


def _describe_error(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    cause = exc.__cause__ or exc.__context__
    return {
        "type": type(exc).__name__,
        "text": str(exc),
        "cause": f"{type(cause).__name__}: {cause}" if cause else "",
    }


class ObservingConnection(ServerConnection):
    """A ServerConnection that records its handshake and publishes it."""

    listener: str = ""
    instance: int = 1
    """Which instance of the listener's app accepted it: a redeploy or a scale from zero starts
    the next one on the same port (wslab.probe.__main__)."""
    publish: Publish = staticmethod(lambda event: None)
    redact: bool = True
    unrecorded: set[ObservingConnection] = set()
    """The listener's connections whose record is not published yet (the ``settle`` barrier of
    wslab.probe.__main__ waits for them): one set per listener, kept across its instances."""
    _serial = itertools.count(1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unrecorded.add(self)
        self.serial = next(self._serial)
        self.opened_at = time.time()
        self.raw_head = b""
        self.head_complete = False
        self.observed: dict[str, Any] = {}

    def data_received(self, data: bytes) -> None:
        if not self.head_complete and not self.observed and len(self.raw_head) < MAX_RECORDED_HEAD:
            self.raw_head += data
            # An h2c front end multiplexes many requests on one connection; its frames
            # (each stream's HEADERS) are the only evidence of which requests it carried.
            if may_be_http2(self.raw_head):
                self.raw_head = self.raw_head[:MAX_RECORDED_HEAD]
            elif split_head(self.raw_head) is not None:
                self.raw_head = split_head(self.raw_head)[0] + b"\r\n\r\n"
                self.head_complete = True
        super().data_received(data)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        timed_out = False
        try:
            await super().handshake(*args, **kwargs)
        except asyncio.CancelledError:
            timed_out = True
            raise
        finally:
            if not self.observed:
                self.record(timed_out)

    def record(self, timed_out: bool = False) -> None:
        """Publish what this connection's handshake received and answered (redacted unless
        the server runs with --no-redact), then let go of the raw head: an open connection
        keeps only its correlation id and its parsed request (for the ``handshake`` command).
        The lab's own readiness check is never published."""
        self.unrecorded.discard(self)
        if is_readiness_check(self.raw_head):
            self.observed = {"recorded": False}
            self.raw_head = b""
            return
        record = self._handshake_record(timed_out)
        if self.redact:
            record = redact_record(record)
        self.raw_head = b""
        self.observed = {"recorded": True, "cell": record["cell"], "request": record["request"]}
        self.publish(record)

    def _handshake_record(self, timed_out: bool) -> dict[str, Any]:
        raw, frames = split_http2(self.raw_head) or (self.raw_head, b"")
        head = parse_request_head(raw, MAX_RECORDED_HEADERS) if raw else None
        response = getattr(self, "response", None)
        error = _describe_error(self.protocol.handshake_exc)
        if timed_out and error is None:
            error = {
                "type": "TimeoutError",
                "text": "opening handshake timed out",
                "cause": f"{len(self.raw_head)} bytes received, no complete request",
            }
        peer = self.transport.get_extra_info("peername")
        record = {
            "event": "handshake",
            "listener": self.listener,
            "conn": self.serial,
            "cell": head.cell if head else None,
            "opened_at": self.opened_at,
            "at": time.time(),
            "peer": list(peer[:2]) if peer else None,
            "bytes_received": len(self.raw_head),
            "raw_head": raw.decode("latin-1"),
            "request": head.to_dict() if head else None,
            "response": _response_record(response),
            "upgraded": response is not None and response.status_code == 101,
            "error": error,
        }
        if frames:
            # The requests an h2c front end multiplexed on this connection, read from their
            # HEADERS frames here, so that redaction reaches them.
            record["http2_streams"] = read_streams(frames)
        return record


def _response_record(response: Response | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": [list(pair) for pair in response.headers.raw_items()],
    }


def select_subprotocol(connection: ServerConnection, offered: Any) -> str | None:
    """Pick the first of :data:`SUBPROTOCOLS` the client offers; go on without one otherwise."""
    return next((name for name in SUBPROTOCOLS if name in offered), None)


INSTANCE_HEADER = "X-Wslab-Instance"
"""On every upgrade: the number of the app instance that accepted the connection, so that a client
knows where it was and where its reconnection landed (the lifecycle suite's redeploy)."""


def record_before_answering(connection: ServerConnection, request: Request, response: Response) -> None:
    """Name the instance on an upgrade, then publish the record before the response leaves, so
    it reaches the runner first."""
    assert isinstance(connection, ObservingConnection)
    if response.status_code == 101:
        response.headers[INSTANCE_HEADER] = str(connection.instance)
    connection.record()


def answer_readiness(connection: ServerConnection, request: Request) -> Response | None:
    """Answer the lab's readiness check (GET /.wslab-ready) with 200: a proxy that passes it on
    is up. The answer is the server's own, whether or not it answers plain HTTP otherwise."""
    if request.path == READINESS_PATH:
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


def answer_plain_http(connection: ServerConnection, request: Request) -> Response | None:
    """Answer any request without a Sec-WebSocket-Key with 200: the fix the lab prints
    (wslab/fixes.py), for health checks, preview panes and browser tabs that reach a WebSocket
    port. A client whose upgrade a proxy stripped keeps its key, so it still gets 426."""
    if "Sec-WebSocket-Key" not in request.headers:
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


def _number(command: dict[str, Any], key: str, kind: type) -> Any:
    """``command[key]`` as a finite, non-negative ``kind``; None if it is not one."""
    value = command.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        return None
    return kind(value)


async def obey(connection: ServerConnection, max_send: int = MAX_SEND) -> None:
    """Echo every message, except JSON commands of the form ``{"wslab": ...}``.

    Commands: ``handshake`` (report the request as the server saw it),
    ``send`` with ``bytes`` (send a binary message of that size, at most
    ``max_send``: a larger one closes the connection with 1009 before anything
    is allocated), ``silence`` with ``seconds`` (stop answering for a while, at
    most :data:`MAX_SILENCE`; longer closes with 1008), ``close`` with ``code``
    and ``reason``. A command whose number is not one closes with 1008.
    """
    async for message in connection:
        command = _command(message)
        if command is None:
            await connection.send(message)
        elif command["wslab"] == "handshake":
            observed = getattr(connection, "observed", {})
            await connection.send(
                json.dumps(
                    {
                        "request": observed.get("request"),
                        "websockets": websockets.__version__,
                        "subprotocol": connection.subprotocol,
                    }
                )
            )
        elif command["wslab"] == "send":
            size = _number(command, "bytes", int)
            if size is None or size > max_send:
                code = POLICY if size is None else TOO_BIG
                await connection.close(code, f"send: expected a byte count up to {max_send}")
                return
            await connection.send(b"\0" * size)
        elif command["wslab"] == "silence":
            seconds = _number(command, "seconds", float)
            if seconds is None or seconds > MAX_SILENCE:
                await connection.close(POLICY, f"silence: expected seconds up to {MAX_SILENCE:g}")
                return
            await asyncio.sleep(seconds)
        elif command["wslab"] == "close":
            await connection.close(int(command.get("code", 1000)), str(command.get("reason", "")))
            return


def json_object(message: str | bytes) -> dict[str, Any] | None:
    """A text message holding a JSON object, as a dict; None for anything else."""
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _command(message: str | bytes) -> dict[str, Any] | None:
    return json_object(message) if isinstance(message, str) and message.startswith('{"wslab"') else None


def _closed_record(connection: ObservingConnection) -> dict[str, Any]:
    protocol = connection.protocol
    if protocol.close_rcvd is None and protocol.close_sent is None:
        closed_by = "abnormal"
    elif protocol.close_rcvd_then_sent is False:
        closed_by = "server"
    else:
        closed_by = "client"
    return {
        "event": "closed",
        "listener": connection.listener,
        "conn": connection.serial,
        "cell": connection.observed.get("cell"),
        "at": time.time(),
        "code": connection.close_code,
        "reason": connection.close_reason,
        "closed_by": closed_by,
    }


PING_PARAM = re.compile(r"[?&]wslab-ping=(off|[0-9.]+)")


def _apply_ping_request(connection: ServerConnection, time_scale: float) -> None:
    """Honour a ``wslab-ping=off|SECONDS`` query parameter: this connection's own keepalive."""
    request = connection.request
    match = PING_PARAM.search(request.path) if request is not None else None
    if match is None:
        return
    if connection.keepalive_task is not None:
        connection.keepalive_task.cancel()
    if match.group(1) != "off":
        connection.ping_interval = float(match.group(1)) * time_scale
        connection.start_keepalive()


def make_handler(
    publish: Publish, time_scale: float = 1.0, max_send: int = MAX_SEND
) -> Callable[[ServerConnection], Any]:
    async def handler(connection: ServerConnection) -> None:
        _apply_ping_request(connection, time_scale)
        try:
            await obey(connection, max_send)
        finally:
            await connection.wait_closed()
            assert isinstance(connection, ObservingConnection)
            publish(_closed_record(connection))

    return handler


def connection_class(
    listener: str,
    publish: Publish,
    redact: bool = True,
    instance: int = 1,
    unrecorded: set[ObservingConnection] | None = None,
) -> type[ObservingConnection]:
    """A connection class bound to one named listener and one instance of it."""
    attributes = {"listener": listener, "publish": staticmethod(publish), "redact": redact}
    attributes |= {"instance": instance, "unrecorded": set() if unrecorded is None else unrecorded}
    return type("ObservingConnection", (ObservingConnection,), attributes)


async def serve_listener(
    listener: str,
    host: str,
    port: int,
    publish: Publish,
    *,
    plain_http_ok: bool = False,
    ping_interval: float | None = 20,
    time_scale: float = 1.0,
    redact: bool = True,
    instance: int = 1,
    unrecorded: set[ObservingConnection] | None = None,
) -> Any:
    """Start one observing server (``instance``: which instance of the app it stands for;
    ``unrecorded``: the listener's set of connections not recorded yet, shared by its instances);
    returns websockets' Server object."""
    return await serve(
        make_handler(publish, time_scale),
        host,
        port,
        create_connection=connection_class(listener, publish, redact, instance, unrecorded),
        process_request=answer_plain_http if plain_http_ok else answer_readiness,
        process_response=record_before_answering,
        subprotocols=SUBPROTOCOLS,
        select_subprotocol=select_subprotocol,
        ping_interval=ping_interval,
    )
