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
  Report connections are never recorded, nor is the lab's own readiness check
  (``GET /.wslab-ready``, answered 200 whatever the options); the last ``--max-records``
  connections are kept, as compact JSON, within ``--max-records-bytes``.
- Secrets (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``Set-Cookie``, ``X-Api-Key``, ``X-Auth-Token`` and any header named with a
  word like token, secret, key, auth or session, credentials in
  ``Sec-WebSocket-Protocol``, token-like query parameters) are redacted from
  every record before it is kept (``--no-redact`` keeps them).
- Limits: a request head over ``--max-header-bytes`` or ``--max-headers``
  header lines gets 431 and is closed; a head not complete within
  ``--head-timeout`` seconds is closed; a message over
  ``--max-message-bytes`` closes the connection with 1009, and so does a
  ``send`` command asking for more; beyond ``--max-connections`` WebSockets,
  upgrades get 503; at twice that many TCP connections, a new one first
  evicts the oldest connection that has not finished sending its head (a
  slowloris cannot starve health checks), else it is closed at once.

Like the rest of ``wslab.probe``, it depends on websockets and the standard
library only (see docs/deploy.md for the recipes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from .server import (
    MAX_RECORDED_HEAD,
    MAX_SILENCE,
    SUBPROTOCOLS,
    ObservingConnection,
    answer_readiness,
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
MAX_RECORDS_BYTES = 16 << 20
"""The records kept, as JSON text, stay within this many bytes (16 MiB) as well as MAX_RECORDS."""
TRIM_EVERY = 2.0
"""Seconds between two returns of freed memory to the system (glibc's malloc_trim)."""
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
    max_headers: int = 100
    head_timeout: float = 10.0
    max_message_bytes: int = 1 << 20
    max_connections: int = 100
    max_records: int = MAX_RECORDS
    max_records_bytes: int = MAX_RECORDS_BYTES
    ping_interval: float | None = 20.0


@dataclass
class Kept:
    """One recorded connection: what the report channel searches by, and the record as JSON
    text (a parsed record takes several times its JSON size in Python objects)."""

    key: tuple[Any, Any]
    cell: str | None
    opened_at: float
    text: str
    closed: dict[str, Any] | None = None
    size: int = 0
    """What ``text`` takes in memory."""

    def entry(self) -> dict[str, Any]:
        return {**json.loads(self.text), "closed": self.closed}


class Recorder:
    """The most recent connections, kept for the report channel: at most ``limit`` of them
    and ``max_bytes`` of JSON text, the oldest dropped first."""

    def __init__(self, limit: int = MAX_RECORDS, max_bytes: int = MAX_RECORDS_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.kept: deque[Kept] = deque()
        self.bytes = 0

    @property
    def connections(self) -> list[dict[str, Any]]:
        """Every kept record, oldest first."""
        return [kept.entry() for kept in self.kept]

    def publish(self, event: dict[str, Any]) -> None:
        """Take one event of the control channel's kinds: ``handshake`` or ``closed``."""
        if event.get("event") == "handshake":
            entry = {key: value for key, value in event.items() if key != "event"}
            log.info("%s", describe(entry))
            # Not ASCII-escaped: a raw head of binary garbage stays one byte per byte, not six.
            kept = Kept(
                (entry.get("listener"), entry.get("conn")),
                entry.get("cell"),
                entry.get("opened_at") or 0,
                json.dumps(entry, separators=(",", ":"), ensure_ascii=False),
            )
            kept.size = sys.getsizeof(kept.text)
            self.kept.append(kept)
            self.bytes += kept.size
            while self.kept and (len(self.kept) > self.limit or self.bytes > self.max_bytes):
                self.bytes -= self.kept.popleft().size
        elif event.get("event") == "closed":
            key = (event.get("listener"), event.get("conn"))
            for kept in reversed(self.kept):
                if kept.key == key:
                    kept.closed = {name: event.get(name) for name in CLOSED_KEYS}
                    break

    def tagged(self, cell: str) -> list[dict[str, Any]]:
        """Connections whose request carried ``wslab-cell=<cell>``."""
        return [kept.entry() for kept in self.kept if kept.cell == cell]

    def since(self, seconds: float, now: float | None = None) -> list[dict[str, Any]]:
        """Connections without a cell id opened in the last ``seconds`` (server clock)."""
        start = (time.time() if now is None else now) - seconds
        return [kept.entry() for kept in self.kept if kept.cell is None and kept.opened_at >= start]


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
        self.live: dict[Any, None] = {}
        """Open TCP connections, oldest first."""
        self.admitted: set[Any] = set()
        self.reports: set[Any] = set()
        self.dropped = 0
        self.evicted = 0
        self.closed = 0
        """TCP connections closed so far (see MemoryTrimmer)."""
        self._warned_at = 0.0

    def accept(self, connection: Any) -> bool:
        """A new TCP connection. At the hard limit, the oldest connection still sending its
        request head is closed to make room (slow heads cannot hold every slot); if there is
        none, the new one is refused (False: it is closed before reading)."""
        if len(self.live) >= self.hard_limit:
            victim = next((c for c in self.live if c.evictable()), None)
            if victim is not None:
                self.evicted += 1
                self.release(victim)
                victim.evict()
            else:
                self.dropped += 1
                self._warn()
                return False
        self.live[connection] = None
        return True

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10:
            self._warned_at = now
            log.warning(
                "%d TCP connections open: closing new ones at once (%d so far)", len(self.live), self.dropped
            )

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
        if self.live.pop(connection, ...) is None:
            self.closed += 1
        self.admitted.discard(connection)
        self.reports.discard(connection)


def is_report_path(path: str) -> bool:
    return path.split("?", 1)[0] == REPORT_PATH


def _wants_websocket(request: Request) -> bool:
    return "websocket" in ",".join(request.headers.get_all("Upgrade")).lower()


class DeployConnection(ObservingConnection):
    """An ObservingConnection with limits, redaction, and no record of report connections."""

    guard: Guard
    max_head_bytes: int = 16384
    max_headers: int = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_overflow = False
        self.head_refusal: dict[str, str] | None = None
        self.limit_refusal: dict[str, str] | None = None
        self.dropped = False
        self.evicted = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self.guard.accept(self):
            self.dropped = True
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def evictable(self) -> bool:
        """Still sending its request head (a slow client, or a slowloris)."""
        return not self.head_complete and not self.head_overflow and not self.observed

    def evict(self) -> None:
        """Closed to make room for a new connection (see Guard.accept)."""
        self.evicted = True
        self.head_overflow = True
        self.head_refusal = {
            "type": "ConnectionLimit",
            "text": "request head still incomplete when the server needed the slot",
            "cause": f"{len(self.raw_head)} bytes received",
        }
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.head_overflow:
            return
        if not self.head_complete:
            pending = self.raw_head + data
            end = pending.find(HEAD_END)
            size = end + len(HEAD_END) if end >= 0 else len(pending)
            if size > self.max_head_bytes:
                self._refuse_head(pending, f"request head larger than {self.max_head_bytes} bytes", size)
                return
            lines = pending.count(b"\n", 0, end if end >= 0 else len(pending))
            if lines > self.max_headers:
                # Recorded: the request line and the first --max-headers header lines.
                cut = 0
                for _ in range(self.max_headers + 1):
                    cut = pending.index(b"\n", cut) + 1
                self._refuse_head(pending[:cut], f"more than {self.max_headers} header lines", None)
                return
        super().data_received(data)

    def _refuse_head(self, pending: bytes, text: str, size: int | None) -> None:
        """Stop reading a request head over a limit; answer 431 unless websockets already failed."""
        self.head_overflow = True
        self.raw_head = pending[: self.max_head_bytes]
        if self.protocol.handshake_exc is not None or self.transport.is_closing():
            return
        limit = self.max_head_bytes
        if size is None and text.startswith("request head larger"):
            cause = f"more than {limit} bytes and no end of head yet"
        else:
            cause = f"{size} bytes" if size else f"{len(pending)} bytes recorded"
        self.head_refusal = {"type": "SecurityError", "text": text, "cause": cause}
        body = f"{text[0].upper()}{text[1:]}.\n".encode()
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
            self.raw_head = b""
            return
        super().record(timed_out)

    def _handshake_record(self, timed_out: bool) -> dict[str, Any]:
        record = super()._handshake_record(timed_out)
        if self.head_refusal is not None:
            record["error"] = self.head_refusal
        if self.head_refusal is not None and not self.evicted:
            record["response"] = {
                "status": 431,
                "reason": "Request Header Fields Too Large",
                "headers": [["Connection", "close"], ["Content-Type", "text/plain; charset=utf-8"]],
            }
        elif self.limit_refusal is not None and record["error"] is None:
            record["error"] = self.limit_refusal
        return record


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
            "max_headers": options.max_headers,
        },
    )


def make_process_request(options: DeployOptions, guard: Guard) -> Any:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        assert isinstance(connection, DeployConnection)
        if (ready := answer_readiness(connection, request)) is not None:
            return ready
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


def make_deploy_handler(recorder: Recorder, token: str, max_send: int = 1 << 20) -> Any:
    observe = make_handler(recorder.publish, max_send=max_send)

    async def handler(connection: ServerConnection) -> None:
        request = connection.request
        if request is not None and is_report_path(request.path):
            await answer_report(connection, recorder, token)
        else:
            await observe(connection)

    return handler


async def serve_deploy(options: DeployOptions, recorder: Recorder | None = None) -> Any:
    """Start the deployable server; returns websockets' Server object (with its
    :class:`MemoryTrimmer` running, as ``server.trimmer``)."""
    recorder = recorder or Recorder(options.max_records, options.max_records_bytes)
    guard = Guard(options.max_connections)
    server = await serve(
        make_deploy_handler(recorder, options.token, options.max_message_bytes),
        options.host,
        options.port,
        create_connection=deploy_connection_class(options, guard, recorder.publish),
        process_request=make_process_request(options, guard),
        process_response=record_before_answering,
        subprotocols=SUBPROTOCOLS,
        select_subprotocol=select_subprotocol,
        ping_interval=options.ping_interval,
        max_size=options.max_message_bytes,
        open_timeout=options.head_timeout,
    )
    server.trimmer = MemoryTrimmer(lambda: guard.closed)
    server.trimmer.start()
    return server


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class MemoryTrimmer:
    """Gives freed memory back to the system after a burst of connections.

    Each connection's buffers (a 16 KiB head, a 1 MiB message) are freed when it
    closes, but glibc keeps freed heap pages and whole per-thread arenas for
    reuse, so the resident size stays at the burst's peak. Every
    :data:`TRIM_EVERY` seconds in which ``activity()`` (a count: connections
    closed, records published) moved, ``malloc_trim(0)`` returns the free pages
    (it takes about a millisecond)."""

    def __init__(self, activity: Callable[[], int], every: float = TRIM_EVERY) -> None:
        self.activity = activity
        self.every = every
        self.trim = _malloc_trim()
        self.trims = 0
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.trim is not None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        assert self.trim is not None
        while True:
            await asyncio.sleep(self.every)
            if self.activity() != self._seen:
                self._seen = self.activity()
                self.trim()
                self.trims += 1


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


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_SILENCE:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and {MAX_SILENCE:g}, got {text}")
    return value


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
        help="replace secrets (Authorization, cookies, API keys, token-like query values and "
        "subprotocols) with [redacted len=N sha256:XXXXXXXX] in every record (default: on)",
    )
    parser.add_argument(
        "--max-header-bytes",
        type=_positive(MAX_RECORDED_HEAD),
        default=16384,
        help="a request head larger than this gets 431 and is closed (default: 16384, at most 65536)",
    )
    parser.add_argument(
        "--max-headers",
        type=_positive(1000),
        default=100,
        help="a request head with more header lines gets 431 and is closed (default: 100)",
    )
    parser.add_argument(
        "--head-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a connection has to send its whole request head (and finish its handshake) "
        "before it is closed (default: 10)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_positive(),
        default=1 << 20,
        help="a larger message closes the connection with 1009, and so does a send command asking "
        "for more (default: 1048576)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(),
        default=100,
        help="WebSocket connections at once; further upgrades get 503 (default: 100)",
    )
    parser.add_argument(
        "--max-records",
        type=_positive(),
        default=MAX_RECORDS,
        help=f"connections kept for the report channel, the oldest dropped first (default: {MAX_RECORDS})",
    )
    parser.add_argument(
        "--max-records-bytes",
        type=_positive(),
        default=MAX_RECORDS_BYTES,
        help=f"and at most this much of them, as JSON text (default: {MAX_RECORDS_BYTES})",
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
        max_headers=args.max_headers,
        head_timeout=args.head_timeout,
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        max_records=args.max_records,
        max_records_bytes=args.max_records_bytes,
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
        server.trimmer.stop()
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
