"""The probe server as a deployable app: ``python -m wslab.probe.standalone [--public]``.

On a real platform (a Replit deployment, Cloud Run, any container host) only
one port reaches the server, so there is no control channel: what the server
received is reported through the WebSocket port itself.

- It listens on ``$PORT`` (default 8080), on 127.0.0.1, or on 0.0.0.0 with
  ``--public`` (what Replit deployments and Cloud Run require). One listener,
  named ``target``.
- It answers requests that do not ask for a WebSocket (health checks, browser
  tabs) with 200 unless ``--no-answer-plain-http``, and logs one line per
  connection, without tracebacks.
- **Report channel.** A WebSocket to ``/.wslab/report`` sends one text message,
  ``{"token": T, "cell": ID}`` (the connections whose request carried
  ``wslab-cell=ID``) or ``{"token": T, "since": SECONDS}`` (the connections
  without a cell id opened in the last SECONDS by the server's clock). The
  server answers with one text message,
  ``{"websockets": VERSION, "connections": [...]}``, each connection being the
  handshake record the control channel publishes (without ``"event"``) plus
  ``"closed"``: null or ``{"at", "code", "reason", "closed_by"}``; then it
  closes with 1000. A missing or wrong token closes with 4003 "forbidden" and
  no data; a valid token with neither question closes with 1008. The token is
  ``--token``, else ``$WSLAB_TOKEN``, else a random one printed at start-up.
  Report connections are never recorded; the last 1000 connections are kept.
- Secrets (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``Set-Cookie``, token-like query parameters) are redacted from every record
  before it is kept (``--no-redact`` keeps them).
- Limits: a request head over ``--max-header-bytes`` gets 431 and is closed; a
  message over ``--max-message-bytes`` closes the connection with 1009;
  beyond ``--max-connections`` WebSockets, upgrades get 503, and TCP
  connections beyond twice that number are closed at once.

Like the rest of ``wslab.probe``, it depends on websockets and the standard
library only (see docs/deploy.md for the recipes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import http
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from .redact import redact_record
from .server import (
    MAX_RECORDED_HEAD,
    SUBPROTOCOLS,
    ObservingConnection,
    json_object,
    make_handler,
    record_before_answering,
    select_subprotocol,
)
from .text import printable
from .wire import HEAD_END, parse_request_head

LISTENER = "target"
REPORT_PATH = "/.wslab/report"
MAX_RECORDS = 1000
REPORT_SLOTS = 32
"""Report connections allowed at once outside --max-connections (the runner runs 32 cells at
once); more take ordinary slots."""
REPORT_TIMEOUT = 10.0
"""Seconds a report connection has to send its question."""
DEFAULT_PORT = 8080
FORBIDDEN = 4003
CLOSED_KEYS = ("at", "code", "reason", "closed_by")

log = logging.getLogger("wslab.probe")


@dataclass
class DeployOptions:
    """Everything the deployable server needs; :func:`build_parser` fills it from the command line."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str = ""
    answer_plain_http: bool = True
    redact: bool = True
    max_header_bytes: int = 16384
    max_message_bytes: int = 1 << 20
    max_connections: int = 100
    ping_interval: float | None = 20.0


class Recorder:
    """The most recent connections, kept for the report channel."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self.connections: deque[dict[str, Any]] = deque(maxlen=limit)

    def publish(self, event: dict[str, Any]) -> None:
        """Take one event of the control channel's kinds: ``handshake`` or ``closed``."""
        if event.get("event") == "handshake":
            entry = {key: value for key, value in event.items() if key != "event"}
            entry["closed"] = None
            self.connections.append(entry)
            log.info("%s", describe(entry))
        elif event.get("event") == "closed":
            key = (event.get("listener"), event.get("conn"))
            for entry in reversed(self.connections):
                if (entry["listener"], entry["conn"]) == key:
                    entry["closed"] = {name: event.get(name) for name in CLOSED_KEYS}
                    break

    def tagged(self, cell: str) -> list[dict[str, Any]]:
        """Connections whose request carried ``wslab-cell=<cell>``."""
        return [entry for entry in self.connections if entry.get("cell") == cell]

    def since(self, seconds: float, now: float | None = None) -> list[dict[str, Any]]:
        """Connections without a cell id opened in the last ``seconds`` (server clock)."""
        start = (time.time() if now is None else now) - seconds
        return [
            entry
            for entry in self.connections
            if entry.get("cell") is None and entry.get("opened_at", 0) >= start
        ]


def describe(entry: dict[str, Any]) -> str:
    """One log line for a handshake record: peer, request line, status, error."""
    peer = entry.get("peer")
    who = f"{peer[0]}:{peer[1]}" if peer else "-"
    request = entry.get("request")
    if request:
        path = request.get("path") or ""
        if len(path) > 200:
            path = path[:200] + "..."
        what = printable(f'"{request.get("method")} {path} {request.get("version")}"')
    else:
        what = f"(no request line, {entry.get('bytes_received', 0)} bytes)"
    response = entry.get("response")
    status = str(response["status"]) if response else "-"
    line = f"{who} {what} {status}"
    if entry.get("cell"):
        line += f" cell={entry['cell']}"
    error = entry.get("error")
    if error:
        line += printable(f" {error.get('type')}: {str(error.get('text'))[:200]}")
    return line


class Guard:
    """Counts connections: admitted WebSockets (the soft limit) and TCP connections (the hard one)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.hard_limit = max(2 * max_connections, max_connections + 10)
        self.live: set[Any] = set()
        self.admitted: set[Any] = set()
        self.reports: set[Any] = set()
        self.dropped = 0
        self._warned_at = 0.0

    def accept(self, connection: Any) -> bool:
        """A new TCP connection: False beyond the hard limit (it is closed before reading)."""
        if len(self.live) >= self.hard_limit:
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= 10:
                self._warned_at = now
                log.warning(
                    "%d TCP connections open: closing new ones at once (%d so far)",
                    len(self.live),
                    self.dropped,
                )
            return False
        self.live.add(connection)
        return True

    def admit(self, connection: Any) -> bool:
        """A WebSocket upgrade: False beyond --max-connections (it gets 503)."""
        if len(self.admitted) >= self.max_connections:
            return False
        self.admitted.add(connection)
        return True

    def admit_report(self, connection: Any) -> bool:
        if len(self.reports) >= REPORT_SLOTS:
            return False
        self.reports.add(connection)
        return True

    def release(self, connection: Any) -> None:
        self.live.discard(connection)
        self.admitted.discard(connection)
        self.reports.discard(connection)


def is_report_path(path: str) -> bool:
    return path.split("?", 1)[0] == REPORT_PATH


def _wants_websocket(request: Request) -> bool:
    return "websocket" in ",".join(request.headers.get_all("Upgrade")).lower()


class DeployConnection(ObservingConnection):
    """An ObservingConnection with limits, redaction, and no record of report connections."""

    guard: Guard
    redact: bool = True
    max_head_bytes: int = 16384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_overflow = False
        self.head_refusal: dict[str, str] | None = None
        self.limit_refusal: dict[str, str] | None = None
        self.dropped = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self.guard.accept(self):
            self.dropped = True
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.head_overflow:
            return
        if not self.head_complete:
            pending = self.raw_head + data
            end = pending.find(HEAD_END)
            size = end + len(HEAD_END) if end >= 0 else len(pending)
            if size > self.max_head_bytes:
                self._refuse_head(pending, size if end >= 0 else None)
                return
        super().data_received(data)

    def _refuse_head(self, pending: bytes, size: int | None) -> None:
        """Stop reading a request head over the limit; answer 431 unless websockets already failed."""
        self.head_overflow = True
        self.raw_head = pending[: self.max_head_bytes]
        if self.protocol.handshake_exc is not None or self.transport.is_closing():
            return
        limit = self.max_head_bytes
        self.head_refusal = {
            "type": "SecurityError",
            "text": f"request head larger than {limit} bytes",
            "cause": f"{size} bytes" if size else f"more than {limit} bytes and no end of head yet",
        }
        body = f"Request head larger than {self.max_head_bytes} bytes.\n".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Connection: close\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _is_report(self) -> bool:
        head = parse_request_head(self.raw_head) if self.raw_head else None
        return head is not None and is_report_path(head.target)

    def record(self, timed_out: bool = False) -> None:
        if self.dropped or self._is_report():
            self.observed = {"recorded": False}
            return
        super().record(timed_out)

    def _handshake_record(self, timed_out: bool) -> dict[str, Any]:
        record = super()._handshake_record(timed_out)
        if self.head_refusal is not None:
            record["error"] = self.head_refusal
            record["response"] = {
                "status": 431,
                "reason": "Request Header Fields Too Large",
                "headers": [["Connection", "close"], ["Content-Type", "text/plain; charset=utf-8"]],
            }
        elif self.limit_refusal is not None and record["error"] is None:
            record["error"] = self.limit_refusal
        return redact_record(record) if self.redact else record


def deploy_connection_class(options: DeployOptions, guard: Guard, publish: Any) -> type[DeployConnection]:
    return type(
        "DeployConnection",
        (DeployConnection,),
        {
            "listener": LISTENER,
            "publish": staticmethod(publish),
            "guard": guard,
            "redact": options.redact,
            "max_head_bytes": options.max_header_bytes,
        },
    )


def make_process_request(options: DeployOptions, guard: Guard) -> Any:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        assert isinstance(connection, DeployConnection)
        if _wants_websocket(request):
            if is_report_path(request.path):
                if guard.admit_report(connection) or guard.admit(connection):
                    return None
                log.warning("report refused: too many connections")
                refused = f"more than {REPORT_SLOTS} report connections at once"
            elif guard.admit(connection):
                return None
            else:
                refused = f"more than {options.max_connections} connections (--max-connections)"
            connection.limit_refusal = {"type": "ConnectionLimit", "text": refused, "cause": ""}
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.\n")
            response.headers["Retry-After"] = "1"
            return response
        if options.answer_plain_http:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    return process_request


def _authorized(question: dict[str, Any] | None, token: str) -> bool:
    given = question.get("token") if question else None
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def _since(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


async def answer_report(connection: ServerConnection, recorder: Recorder, token: str) -> None:
    """One question, one answer, then close (see the module docstring for the protocol)."""
    try:
        message: Any = await asyncio.wait_for(connection.recv(), REPORT_TIMEOUT)
    except (TimeoutError, websockets.ConnectionClosed):
        message = None
    question = json_object(message)
    if not _authorized(question, token):
        log.warning("report refused: missing or wrong token")
        await connection.close(FORBIDDEN, "forbidden")
        return
    assert question is not None
    if isinstance(question.get("cell"), str):
        connections = recorder.tagged(question["cell"])
        asked = f"cell={question['cell'][:64]}"
    elif (since := _since(question.get("since"))) is not None:
        connections = recorder.since(since)
        asked = f"since={since:g}s"
    else:
        await connection.close(1008, 'expected {"cell": ID} or {"since": SECONDS}')
        return
    log.info("report: %s, %d connection(s)", asked, len(connections))
    with contextlib.suppress(websockets.ConnectionClosed):
        await connection.send(json.dumps({"websockets": websockets.__version__, "connections": connections}))
        await connection.close(1000)


def make_deploy_handler(recorder: Recorder, token: str) -> Any:
    observe = make_handler(recorder.publish)

    async def handler(connection: ServerConnection) -> None:
        request = connection.request
        if request is not None and is_report_path(request.path):
            await answer_report(connection, recorder, token)
        else:
            await observe(connection)

    return handler


async def serve_deploy(options: DeployOptions, recorder: Recorder | None = None) -> Any:
    """Start the deployable server; returns websockets' Server object."""
    recorder = recorder or Recorder()
    guard = Guard(options.max_connections)
    return await serve(
        make_deploy_handler(recorder, options.token),
        options.host,
        options.port,
        create_connection=deploy_connection_class(options, guard, recorder.publish),
        process_request=make_process_request(options, guard),
        process_response=record_before_answering,
        subprotocols=SUBPROTOCOLS,
        select_subprotocol=select_subprotocol,
        ping_interval=options.ping_interval,
        max_size=options.max_message_bytes,
    )


class QuietFilter(logging.Filter):
    """No tracebacks: websockets' "opening handshake failed" (15.x logs it at ERROR with the
    whole traceback for every health check or port scan) is dropped, since the server logs
    its own line per connection; any other record loses its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("websockets") and record.getMessage() == "opening handshake failed":
            return False
        if record.exc_info:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging() -> None:
    """One stderr handler for the server's lines and websockets' warnings; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(QuietFilter())
    handler.set_name("wslab-deploy")
    for name, level in (("wslab.probe", logging.INFO), ("websockets", logging.WARNING)):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "wslab-deploy"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def _positive(maximum: int | None = None) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"between 1 and {maximum}" if maximum else "at least 1"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text}")
        return value

    return parse


def build_parser(prog: str = "python -m wslab.probe.standalone") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The probe server as a deployable app: one port ($PORT), token-guarded reports "
        f"on {REPORT_PATH}. See docs/deploy.md.",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="bind 0.0.0.0 (Replit deployments, Cloud Run, containers) instead of 127.0.0.1",
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"port to listen on (default: $PORT, else {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the report channel's token (default: $WSLAB_TOKEN, else a random one printed at start-up)",
    )
    parser.add_argument(
        "--answer-plain-http",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer requests that do not ask for a WebSocket (health checks, browser tabs) with 200 "
        "(default: on)",
    )
    parser.add_argument(
        "--redact",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace Authorization, Cookie and token-like query values with [redacted] in every "
        "record (default: on)",
    )
    parser.add_argument(
        "--max-header-bytes",
        type=_positive(MAX_RECORDED_HEAD),
        default=16384,
        help="a request head larger than this gets 431 and is closed (default: 16384, at most 65536)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_positive(),
        default=1 << 20,
        help="a larger message closes the connection with 1009 (default: 1048576)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(),
        default=100,
        help="WebSocket connections at once; further upgrades get 503 (default: 100)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between server pings; 0 disables them (default: 20)",
    )
    return parser


def options_from(args: argparse.Namespace, environ: Any = None) -> tuple[DeployOptions, bool]:
    """The options, and whether the token was generated (so that it must be printed)."""
    environ = os.environ if environ is None else environ
    port = args.port
    if port is None:
        text = environ.get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"$PORT is not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    token = args.token or environ.get("WSLAB_TOKEN") or ""
    generated = not token
    options = DeployOptions(
        host="0.0.0.0" if args.public else "127.0.0.1",
        port=port,
        token=token or secrets.token_urlsafe(24),
        answer_plain_http=args.answer_plain_http,
        redact=args.redact,
        max_header_bytes=args.max_header_bytes,
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        ping_interval=args.ping_interval or None,
    )
    return options, generated


async def run(options: DeployOptions, announce_token: bool = False) -> int:
    """Serve until SIGINT or SIGTERM; 0 on SIGTERM, 130 on SIGINT, 3 if the port cannot be bound."""
    try:
        server = await serve_deploy(options)
    except OSError as error:
        print(f"cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
        return 3
    if announce_token:
        print(f"report token: {options.token}", flush=True)
    host, port = server.sockets[0].getsockname()[:2]
    print(
        f"wslab probe server (websockets {websockets.__version__}) listening on {host}:{port}; "
        f"reports on {REPORT_PATH}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        loop.add_signal_handler(signum, lambda code=code: stopped.done() or stopped.set_result(code))
    try:
        code = await stopped
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 10)
    log.info("stopped")
    return code


def main(argv: list[str] | None = None, *, prog: str = "python -m wslab.probe.standalone") -> int:
    """``python -m wslab.probe.standalone``; also ``wslab probe-server`` (which may pass its ``prog``)."""
    args = build_parser(prog).parse_args(argv)
    try:
        options, generated = options_from(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        return asyncio.run(run(options, announce_token=generated))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
