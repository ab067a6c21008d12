"""The recording tap (wslab.probe.tap): its framing reader on byte fixtures (fast), then the real
thing, ``python -m wslab.probe --forward``, in front of real apps and behind real proxies."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import RESULTS_SCHEMA
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Close, Frame, Opcode

from wslab import results
from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.observations import Closing as ClosingEvent
from wslab.observations import ObservationFeed, Observed, parse_event
from wslab.probe.__main__ import parse_args
from wslab.probe.http1 import (
    MAX_HEAD,
    MAX_PENDING,
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
from wslab.probe.wsframes import CloseFrame, CloseScanner
from wslab.processes import free_port
from wslab.proxies import REGISTRY
from wslab.records import Cell, Connection, Outcome
from wslab.topology import load_topologies

HOST = "127.0.0.1"


# The framing reader, on byte fixtures.


def in_pieces(feed: Callable[[bytes], list[Event]], data: bytes, size: int) -> list[Event]:
    """``data`` fed ``size`` bytes at a time: the events are the same as in one piece."""
    return [event for start in range(0, len(data), size) for event in feed(data[start : start + size])]


GET = b"GET /a?wslab-cell=aaa HTTP/1.1\r\nHost: app\r\nX-MiXeD-CaSe: 1\r\n\r\n"
POST = b"POST /b?wslab-cell=bbb HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /c?wslab-cell=ccc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n"
)
HEAD = b"HEAD /d HTTP/1.1\r\nHost: app\r\n\r\n"
UPGRADE = (
    b"GET /ws?wslab-cell=ddd HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
OK_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
OK_TO_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
REFUSED = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno"


def heads(events: list[Event]) -> list[tuple[str, int, Any]]:
    """The events as (kind, index, what): short enough to compare whole."""
    found: list[tuple[str, int, Any]] = []
    for event in events:
        if isinstance(event, RequestStarted):
            found.append(("started", event.index, None))
        elif isinstance(event, RequestHead):
            found.append(("request", event.index, event.method))
        elif isinstance(event, ResponseHead):
            found.append(("response", event.index, (event.status, event.final)))
        elif isinstance(event, Switched):
            found.append(("switched", event.index, event.websocket))
        elif isinstance(event, Closing):
            found.append(("close", int(event.from_client), (event.frame.code, event.frame.reason)))
        elif isinstance(event, GaveUp):
            found.append(("gave up", 0, (event.side, event.reason)))
        elif isinstance(event, Http2Preface):
            found.append(("http2", 0, None))
    return found


def frame(opcode: Opcode, data: bytes, masked: bool, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=masked)


def close_frame(code: int, reason: str, masked: bool) -> bytes:
    return frame(Opcode.CLOSE, Close(code, reason).serialize(), masked)


@pytest.mark.fast
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 20])
def test_each_request_and_response_on_a_kept_alive_connection_is_found(size: int) -> None:
    conversation = Conversation()
    requests = in_pieces(conversation.feed_request, GET + POST + CHUNKED + HEAD, size)
    answers = in_pieces(
        conversation.feed_response, OK_LENGTH + CONTINUE + OK_CHUNKED + OK_LENGTH + OK_TO_HEAD, size
    )
    assert heads(requests) == [
        ("started", 0, None),
        ("request", 0, "GET"),
        ("started", 1, None),
        ("request", 1, "POST"),
        ("started", 2, None),
        ("request", 2, "POST"),
        ("started", 3, None),
        ("request", 3, "HEAD"),
    ]
    assert heads(answers) == [
        ("response", 0, (200, True)),
        ("response", 1, (100, False)),
        ("response", 1, (200, True)),
        ("response", 2, (200, True)),
        ("response", 3, (200, True)),
    ], "a 100 is not the answer; a response to HEAD has no body whatever its Content-Length"
    assert [event.head for event in requests if isinstance(event, RequestHead)][0] == GET
    assert heads(conversation.feed_request(GET)) == [("started", 4, None), ("request", 4, "GET")]


@pytest.mark.fast
def test_bodiless_and_close_delimited_answers() -> None:
    conversation = Conversation()
    conversation.feed_request(GET + GET + GET)
    answers = conversation.feed_response(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
        b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n...until the server closes"
    )
    assert [item[1:] for item in heads(answers)] == [(0, (204, True)), (1, (304, True)), (2, (200, True))]


@pytest.mark.fast
@pytest.mark.parametrize("size", [1, 5, 1 << 20])
def test_an_upgrade_switches_both_directions_to_websocket_frames(size: int) -> None:
    conversation = Conversation()
    conversation.feed_request(UPGRADE)
    # A client may send a frame before the answer comes: it is held (bounded) until then.
    early = frame(Opcode.TEXT, b"early", masked=True)
    assert conversation.feed_request(early) == []
    client = b"".join(
        frame(Opcode.BINARY, bytes(length), masked=True) for length in (0, 1, 125, 126, 127, 65535, 65536)
    )
    client += frame(Opcode.TEXT, b"part", masked=True, fin=False) + frame(Opcode.CONT, b"s", masked=True)
    client += frame(Opcode.PING, b"p", masked=True) + close_frame(4001, "bye, client", masked=True)
    server = frame(Opcode.BINARY, bytes(70000), masked=False) + close_frame(4001, "bye, client", masked=False)
    answer = in_pieces(conversation.feed_response, SWITCHING + server, size)
    closes = in_pieces(conversation.feed_request, client + b"anything after the close", size)
    assert heads(answer) == [
        ("response", 0, (101, True)),
        ("switched", 0, True),
        ("close", 0, (4001, "bye, client")),
    ]
    assert heads(closes) == [("close", 1, (4001, "bye, client"))]


@pytest.mark.fast
def test_a_refused_upgrade_leaves_the_connection_to_http() -> None:
    conversation = Conversation()
    conversation.feed_request(UPGRADE)
    assert conversation.feed_request(GET) == [], "held until the answer says what it is"
    assert heads(conversation.feed_response(REFUSED)) == [
        ("response", 0, (426, True)),
        ("started", 1, None),
        ("request", 1, "GET"),
    ]


@pytest.mark.fast
def test_connect_and_an_unasked_switch_leave_http_unread() -> None:
    conversation = Conversation()
    conversation.feed_request(b"CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n")
    assert heads(conversation.feed_response(b"HTTP/1.1 200 Connection established\r\n\r\n")) == [
        ("response", 0, (200, True)),
        ("switched", 0, False),
    ]
    assert conversation.feed_request(GET) == conversation.feed_response(OK_LENGTH) == []


@pytest.mark.fast
def test_the_http2_preface_stops_reading_and_keeps_the_clients_bytes() -> None:
    conversation = Conversation(max_head=100)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    events = conversation.feed_request(preface + b"\x00" * 50) + conversation.feed_request(b"\x01" * 500)
    assert heads(events) == [("started", 0, None), ("http2", 0, None)]
    assert bytes(conversation.http2_data) == (preface + b"\x00" * 50 + b"\x01" * 500)[:100]
    assert conversation.feed_response(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") == []


@pytest.mark.fast
@pytest.mark.parametrize(
    ("requests", "answers", "gave_up"),
    [
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, b"", ("request", f"a head over {MAX_HEAD} bytes")),
        (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", b"", ("request", "a Content-Length of '1, 2'")),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"",
            ("request", "a request Transfer-Encoding of gzip"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"",
            ("request", "a chunk size line of b'zz'"),
        ),
        (
            GET,
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            ("response", "an answer that is not an HTTP/1.x response: 'SSH-2.0-OpenSSH_9.2'"),
        ),
        (b"", b"HTTP/1.1 200 OK\r\n\r\n", ("response", "the server sent 19 bytes no request asked for")),
        (GET * (MAX_PENDING + 1), b"", ("request", f"more than {MAX_PENDING} requests awaited an answer")),
        (
            UPGRADE,
            SWITCHING + b"\x88\x7e\x00\x80" + bytes(128),
            ("response", "a close frame of 128 bytes (at most 125)"),
        ),
    ],
)
def test_it_gives_up_rather_than_guess(requests: bytes, answers: bytes, gave_up: tuple[str, str]) -> None:
    conversation = Conversation()
    events = conversation.feed_request(requests) + conversation.feed_response(answers)
    assert [(e.side, e.reason) for e in events if isinstance(e, GaveUp)] == [gave_up]
    assert conversation.feed_request(b"\r\n\r\n" * 10) == [] or gave_up[0] == "response"


@pytest.mark.fast
def test_a_head_over_the_bound_is_kept_up_to_the_bound() -> None:
    conversation = Conversation()
    head = b"GET /?wslab-cell=big HTTP/1.1\r\nX: " + b"a" * 70000
    in_pieces(conversation.feed_request, head, 1000)
    assert conversation.request_head == head[:MAX_HEAD]
    assert conversation.request_head_size == len(head)


@pytest.mark.fast
def test_any_bytes_in_any_pieces_never_raise() -> None:
    """Random fragments of HTTP and frames, cut anywhere: events, never an exception."""
    rng = random.Random(12)
    pieces = [GET, POST, CHUNKED, HEAD, UPGRADE, OK_LENGTH, CONTINUE, OK_CHUNKED, SWITCHING, REFUSED]
    pieces += [close_frame(1000, "", True), b"\r\n", b"0\r\n\r\n", b"Content-Length: 9\r\n", b"\x88\x00"]
    for _ in range(300):
        conversation = Conversation(max_head=rng.choice([64, 4096]))
        for _ in range(20):
            data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.2:
                data = rng.randbytes(rng.randint(1, 200))
            cut = rng.randint(0, len(data))
            feed = conversation.feed_request if rng.random() < 0.5 else conversation.feed_response
            feed(data[:cut])
            feed(data[cut:])


@pytest.mark.fast
def test_the_close_scanner_reads_close_frames_of_every_shape() -> None:
    def scan(data: bytes) -> CloseFrame | None:
        scanner = CloseScanner()
        found = [scanner.feed(data[i : i + 1]) for i in range(len(data))]
        return next((item for item in found if item is not None), None)

    assert scan(frame(Opcode.CLOSE, b"", masked=True)) == CloseFrame(1005, "")
    assert scan(frame(Opcode.CLOSE, b"\x03", masked=False)) == CloseFrame(None, "")
    assert scan(close_frame(1001, "gone ☃", masked=True)) == CloseFrame(1001, "gone ☃")
    assert scan(frame(Opcode.BINARY, bytes(1 << 16), masked=True)) is None


# The runner's end: the tap's events as records.

TAP_HANDSHAKE: dict[str, Any] = {
    "event": "handshake",
    "listener": "app",
    "conn": 7,
    "cell": "c1",
    "opened_at": 1.0,
    "at": 1.2,
    "peer": ["127.0.0.1", 50000],
    "bytes_received": len(GET),
    "raw_head": GET.decode("latin-1"),
    "request": {
        "method": "GET",
        "target": "/a?wslab-cell=c1",
        "path": "/a",
        "version": "HTTP/1.1",
        "headers": [],
    },
    "response": {"version": "HTTP/1.1", "status": 101, "reason": "Switching Protocols", "headers": []},
    "upgraded": True,
    "error": None,
    "tap": {
        "connection": 3,
        "upstream": ["127.0.0.1", 8000],
        "bytes_to_app": 100,
        "bytes_from_app": 200,
        "ended_by": None,
        "upstream_local_port": 41000,
        "reused": 1,
        "request_forwarded_at": 1.1,
        "response_at": 1.15,
        "gave_up": None,
    },
}
TAP_CLOSED: dict[str, Any] = {
    "event": "closed",
    "listener": "app",
    "conn": 7,
    "cell": "c1",
    "at": 2.0,
    "code": 1000,
    "reason": "",
    "closed_by": "server",
    "tap": {
        "connection": 3,
        "upstream": ["127.0.0.1", 8000],
        "bytes_to_app": 150,
        "bytes_from_app": 250,
        "ended_by": "app",
        "app_code": 1011,
        "app_reason": "oops",
    },
}


@pytest.mark.fast
def test_the_runner_reads_the_tap_block_and_a_results_file_keeps_it() -> None:
    observed = parse_event(TAP_HANDSHAKE)
    closing = parse_event(TAP_CLOSED)
    assert isinstance(observed, Observed) and isinstance(closing, ClosingEvent)
    tap = observed.connection.tap
    assert tap is not None and (tap.reused, tap.upstream_local_port, tap.upstream) == (
        1,
        41000,
        ("127.0.0.1", 8000),
    )
    assert closing.closed.tap is not None and closing.closed.tap.app_code == 1011
    view = observed.view("c1", closing.closed)
    cell = Cell(topology="t", scenario="s", suite="core", outcome=Outcome.PASS, summary="101", server=[view])
    document = json.loads(cell.model_dump_json())
    assert Cell.model_validate(document) == cell
    cell_schema = {key: RESULTS_SCHEMA[key] for key in ("$schema", "$defs")} | {"$ref": "#/$defs/Cell"}
    jsonschema.validate(document, cell_schema)
    with pytest.raises(ValueError):
        parse_event({**TAP_HANDSHAKE, "tap": {**TAP_HANDSHAKE["tap"], "unknown": 1}})
    assert results.FORMAT == "wslab.results/2"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("forward", "message"),
    [
        ("t=10.0.0.1:80", "the app must be on a loopback address"),
        ("t=example.com:80", "the app must be on a loopback address"),
        ("u=127.0.0.1:80", "--forward names no --listen: u"),
        ("t=127.0.0.1:http", "expected NAME=HOST:PORT"),
    ],
)
def test_the_command_refuses_a_forward_it_cannot_serve(
    forward: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--listen", "t=127.0.0.1:0", "--forward", forward])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and error.startswith("python -m wslab.probe: error:")


@pytest.mark.fast
def test_the_command_takes_loopback_forwards() -> None:
    args = parse_args(["--listen", "a=127.0.0.1:0", "--listen", "b=127.0.0.1:0", "--forward", "a=[::1]:81"])
    assert args.forward == [("a", "::1", 81)]
    assert parse_args(["--listen", "a=:0", "--forward", "a=localhost:80"]).forward == [("a", "localhost", 80)]


# The real tap: python -m wslab.probe --forward, in front of real apps, behind real proxies.


@asynccontextmanager
async def tap_in_front_of(
    app_port: int, log: Path, *options: str
) -> AsyncIterator[tuple[tuple[str, int], ObservationFeed]]:
    """The tap process forwarding to ``app_port`` (a record after 1 s without head or answer),
    and the runner's feed of its records. Its stderr must stay free of tracebacks."""
    argv = ["--listen", f"t={HOST}:0", "--forward", f"t={HOST}:{app_port}", "--open-timeout", "1"]
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wslab.probe",
            *argv,
            *options,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    feed = ObservationFeed()
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        await feed.start(*ready["control"])
        await feed.hello()
        yield (ready["listeners"]["t"][0], ready["listeners"]["t"][1]), feed
    finally:
        await feed.stop()
        process.terminate()
        await process.wait()
    errors = log.read_text()
    assert "Traceback" not in errors and "Exception" not in errors and "Fatal" not in errors, errors


@asynccontextmanager
async def behind(topology: str, tap: tuple[str, int], folder: Path) -> AsyncIterator[tuple[str, int]]:
    """A real proxy, started from the topology's config as `wslab run` does, in front of the tap."""
    topology_ = load_topologies()[topology]
    if REGISTRY[topology_.proxy].locate() is None:
        pytest.skip(f"{topology_.proxy} is not installed")
    backend = LocalBackend(folder, StackOptions(), forward_to=tap)
    try:
        deployment = (await backend.start([topology_]))[topology]
        assert deployment.endpoint is not None, deployment.detail
        yield deployment.endpoint.host, deployment.endpoint.port
    finally:
        await backend.stop()


@asynccontextmanager
async def chain(
    app_port: int, folder: Path, topology: str | None = None, *options: str
) -> AsyncIterator[tuple[tuple[str, int], ObservationFeed]]:
    """The tap in front of the app on ``app_port``, with ``topology``'s proxy in front of the tap:
    (where a client connects, the runner's feed of the tap's records)."""
    async with tap_in_front_of(app_port, folder / "tap.log", *options) as (tap, feed):
        if topology is None:
            yield tap, feed
            return
        async with behind(topology, tap, folder / "proxy") as proxy:
            yield proxy, feed


@asynccontextmanager
async def websocket_app(
    handler: Callable[[ServerConnection], Awaitable[None]] | None = None,
) -> AsyncIterator[int]:
    """A websockets app (the new asyncio API) that echoes, on a free port."""

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with serve(handler or echo, HOST, 0, compression=None, max_size=None, ping_interval=None) as server:
        yield server.sockets[0].getsockname()[1]


class RawApp:
    """An HTTP/1.1 app written on asyncio streams: it keeps connections alive, answers each
    request with its target (chunked when the target asks, no body to HEAD) and remembers
    exactly what arrived on each connection, by the peer port it came from."""

    def __init__(self, answer: bool = True, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.received: dict[int, bytes] = {}
        self.heads: list[tuple[int, bytes]] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self.serve, HOST, 0)
        async with server:
            yield server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        self.received[port] = b""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.received[port] += head
                self.heads.append((port, head))
                if self.close:
                    break
                if not self.answer:
                    self.received[port] += await reader.read()
                    break
                method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
                body = target
                if b"chunked" in target:
                    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3], body[3:]))
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
                    )
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                    if method != b"HEAD":
                        writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        writer.close()


def play(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))  # type: ignore[arg-type]


async def one_record(feed: ObservationFeed, cell: str, settle: float = 5.0) -> Connection:
    connections = await feed.wait_for_cell(cell, settle)
    assert len(connections) == 1, connections
    return connections[0]


async def raw_exchange(address: tuple[str, int], data: bytes, wait: float = 3.0) -> bytes:
    """Send ``data`` on a new connection: what came back before it closed or ``wait`` passed
    (a proxy may keep its side open after the answer)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    received = b""
    deadline = asyncio.get_running_loop().time() + wait
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(
            reader.read(65536), deadline - asyncio.get_running_loop().time()
        ):
            received += chunk
    writer.close()
    return received


def http_requests(address: tuple[str, int], requests: list[tuple[str, str]]) -> list[tuple[int, bytes]]:
    """Requests one after another on one kept-alive client connection: (status, body) of each."""
    client = http.client.HTTPConnection(*address, timeout=10)
    answers = []
    for method, target in requests:
        client.request(method, target, headers={"X-MiXeD-CaSe": "kept"})
        response = client.getresponse()
        answers.append((response.status, response.read()))
    client.close()
    return answers


@pytest.mark.parametrize("topology", ["haproxy-default", "nginx-websocket-map"])
def test_the_record_holds_the_head_exactly_as_the_app_received_it(topology: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = RawApp()
        async with app.running() as port, chain(port, tmp_path, topology) as (proxy, feed):
            answers = await asyncio.to_thread(http_requests, proxy, [("GET", "/x?wslab-cell=exact1")])
            assert answers == [(200, b"/x?wslab-cell=exact1")]
            record = await one_record(feed, "exact1")
        ((local_port, head),) = app.heads
        assert record.raw_head == head.decode("latin-1"), "byte for byte: order, case and spacing"
        lines = head.decode("latin-1").split("\r\n")[1:-2]
        assert record.request is not None
        assert record.request.headers == [tuple(line.split(": ", 1)) for line in lines]
        # What the proxy sent, not what the client did: HAProxy writes header names in lower case.
        name = "x-mixed-case" if topology == "haproxy-default" else "X-MiXeD-CaSe"
        assert (name, "kept") in record.request.headers
        assert record.response is not None and (record.response.status, record.response.version) == (
            200,
            "HTTP/1.1",
        )
        assert record.error is None and record.tap is not None
        assert record.tap.upstream_local_port == local_port, "the port the app saw its peer on"
        assert record.tap.request_forwarded_at is not None and record.tap.response_at is not None
        assert record.opened_at <= record.tap.request_forwarded_at <= record.tap.response_at <= record.at

    play(scenario())


def test_each_request_on_a_kept_alive_connection_gets_its_own_record(tmp_path: Path) -> None:
    """HAProxy keeps its connection to the app alive: four requests of one client, one upstream
    connection, four records, each with its own cell."""
    targets = [
        ("GET", "/a?wslab-cell=keep1"),
        ("HEAD", "/b?wslab-cell=keep2"),
        ("GET", "/chunked?wslab-cell=keep3"),
    ]
    targets.append(("GET", "/d?wslab-cell=keep4"))

    async def scenario() -> None:
        app = RawApp()
        async with app.running() as port, chain(port, tmp_path, "haproxy-default") as (proxy, feed):
            answers = await asyncio.to_thread(http_requests, proxy, targets)
            records = [await one_record(feed, f"keep{n}") for n in range(1, 5)]
        assert [status for status, _ in answers] == [200] * 4
        assert answers[2][1] == b"/chunked?wslab-cell=keep3"
        assert len(app.received) == 1, "one connection to the app"
        taps = [record.tap for record in records]
        assert all(tap is not None for tap in taps)
        assert [tap.reused for tap in taps if tap] == [0, 1, 2, 3]
        assert len({record.conn for record in records}) == 4
        assert {(tap.connection, tap.upstream_local_port) for tap in taps if tap} == {
            (taps[0].connection, next(iter(app.received)))  # type: ignore[union-attr]
        }
        assert [record.request.method for record in records if record.request] == [
            "GET",
            "HEAD",
            "GET",
            "GET",
        ]
        assert all(
            record.response and record.response.status == 200 and not record.error for record in records
        )
        assert all(record.tap and record.tap.gave_up is None for record in records)

    play(scenario())


def test_a_plain_get_records_the_apps_426(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with websocket_app() as port, chain(port, tmp_path, "haproxy-default") as (proxy, feed):
            answer = await raw_exchange(
                proxy, b"GET /?wslab-cell=plain1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", 5
            )
            record = await one_record(feed, "plain1")
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert record.response is not None and record.response.status == 426
        assert ("Upgrade", "websocket") in record.response.headers
        assert not record.upgraded and record.error is None and record.closed is None

    play(scenario())


def test_an_upgrade_records_its_101_and_how_it_closed(tmp_path: Path) -> None:
    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        message = await connection.recv()
        if connection.request.path.startswith("/app-closes"):
            await connection.close(4002, "the app says bye")
        else:
            await connection.send(message)
            await connection.wait_closed()

    async def scenario() -> None:
        async with (
            websocket_app(handler) as port,
            chain(port, tmp_path, "nginx-websocket-map") as (proxy, feed),
        ):
            url = f"ws://{proxy[0]}:{proxy[1]}"
            async with connect(f"{url}/client-closes?wslab-cell=up1") as websocket:
                await websocket.send("hello")
                assert await websocket.recv() == "hello"
                await websocket.close(4001, "the client says bye")
            async with connect(f"{url}/app-closes?wslab-cell=up2") as websocket:
                await websocket.send("hello")
                await websocket.wait_closed()
            by_client, by_app = await one_record(feed, "up1"), await one_record(feed, "up2")
        assert by_client.upgraded and by_client.response and by_client.response.status == 101
        assert by_client.closed is not None and by_client.closed.tap is not None
        assert (by_client.closed.code, by_client.closed.reason, by_client.closed.closed_by) == (
            4001,
            "the client says bye",
            "client",
        )
        assert by_client.closed.tap.app_code == 4001, "the app echoed the client's code"
        assert by_app.closed is not None and by_app.closed.tap is not None
        assert (by_app.closed.closed_by, by_app.closed.tap.app_code, by_app.closed.tap.app_reason) == (
            "server",
            4002,
            "the app says bye",
        )
        assert by_app.closed.tap.ended_by == "app", "the server closes TCP first (RFC 6455 §7.1.1)"

    play(scenario())


@pytest.mark.parametrize("topology", [None, "nginx-websocket-map"])
def test_frames_of_every_size_pass_byte_exact(topology: str | None, tmp_path: Path) -> None:
    rng = random.Random(6455)
    messages = [rng.randbytes(size) for size in (0, 1, 125, 126, 127, 65535, 65536, 65537, (1 << 20) + 3)]

    async def scenario() -> None:
        async with websocket_app() as port, chain(port, tmp_path, topology) as (address, feed):
            url = f"ws://{address[0]}:{address[1]}/?wslab-cell=exact"
            async with connect(url, compression=None, max_size=None) as websocket:
                for message in messages:
                    await websocket.send(message)
                    assert await websocket.recv() == message
                await websocket.send("text ☃")
                assert await websocket.recv() == "text ☃"
            record = await one_record(feed, "exact")
        assert record.closed is not None and record.closed.tap is not None
        assert record.closed.tap.bytes_to_app > sum(map(len, messages)) < record.closed.tap.bytes_from_app
        assert (record.closed.code, record.closed.closed_by) == (1000, "client")

    play(scenario())


def test_bytes_that_are_not_http_still_pass_byte_exact(tmp_path: Path) -> None:
    """Random bytes to a TCP echo app: the tap gives up on both directions, forwards every byte,
    and records what it could."""
    data = random.Random(1).randbytes(1 << 20)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def scenario() -> list[Connection]:
        server = await asyncio.start_server(echo, HOST, 0)
        async with (
            server,
            tap_in_front_of(server.sockets[0].getsockname()[1], tmp_path / "tap.log") as (tap, feed),
        ):
            started = time.time()
            reader, writer = await asyncio.open_connection(*tap)
            writer.write(data)
            echoed = await reader.readexactly(len(data))
            writer.close()
            assert echoed == data
            return await feed.in_window("t", started, 1.0)

    (record,) = asyncio.run(scenario())
    assert record.raw_head == data[:MAX_HEAD].decode("latin-1")
    assert record.request is None and record.response is None
    assert record.error is not None and record.error.type == "InvalidResponse"
    assert record.tap is not None and record.tap.gave_up is not None
    assert record.tap.gave_up.startswith(f"request: a head over {MAX_HEAD} bytes; response: ")
    assert record.tap.bytes_to_app == record.tap.bytes_from_app == len(data)
    assert record.bytes_received == len(data)


def test_an_app_that_closes_without_answering(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = RawApp(close=True)
        async with app.running() as port, chain(port, tmp_path, "haproxy-default") as (proxy, feed):
            answer = await raw_exchange(
                proxy, b"GET /?wslab-cell=silent1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", 5
            )
            record = await one_record(feed, "silent1")
        assert answer.startswith(b"HTTP/1.1 502 "), "what HAProxy makes of it"
        assert record.response is None and record.error is not None
        assert (record.error.type, record.error.text) == (
            "NoResponse",
            "the app closed the connection without answering",
        )
        assert record.tap is not None and record.tap.ended_by == "app" and record.tap.request_forwarded_at

    play(scenario())


def test_an_app_that_never_answers_is_recorded_after_the_open_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = RawApp(answer=False)
        async with app.running() as port, tap_in_front_of(port, tmp_path / "tap.log") as (tap, feed):
            reader, writer = await asyncio.open_connection(*tap)
            writer.write(b"GET /?wslab-cell=never1 HTTP/1.1\r\nHost: app\r\n\r\n")
            record = await one_record(feed, "never1", settle=5)
            assert record.error is not None and record.error.type == "TimeoutError"
            assert record.error.text == "the app did not answer within 1 s"
            assert record.tap is not None and record.tap.ended_by is None, (
                "still open: the tap closes nothing"
            )
            writer.write(b"more")
            writer.write_eof()
            await asyncio.sleep(0.3)
            writer.close()
            await asyncio.sleep(0.3)
        assert list(app.received.values()) == [b"GET /?wslab-cell=never1 HTTP/1.1\r\nHost: app\r\n\r\nmore"]
        first, more = (seen.connection for seen in feed.observed)
        assert first.cell == "never1" and first.error is not None and first.error.type == "TimeoutError"
        assert more.raw_head == "more" and more.tap is not None and more.tap.reused == 1
        assert more.error is not None and more.error.type == "IncompleteRequest", "a second request began"

    play(scenario())


def test_a_slowloris_head_is_recorded_and_still_forwarded(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = RawApp(answer=False)
        async with app.running() as port, tap_in_front_of(port, tmp_path / "tap.log") as (tap, feed):
            reader, writer = await asyncio.open_connection(*tap)
            writer.write(b"GET /?wslab-cell=slow1 HTTP/1.1\r\nHost: app\r\n")
            record = await one_record(feed, "slow1", settle=5)
            writer.write(b"X-Late: 1\r\n\r\n")
            writer.write_eof()
            await asyncio.sleep(0.3)
            writer.close()
        assert record.error is not None
        assert (record.error.type, record.error.text) == (
            "TimeoutError",
            "no complete request head within 1 s",
        )
        assert record.raw_head == "GET /?wslab-cell=slow1 HTTP/1.1\r\nHost: app\r\n"
        assert list(app.received.values()) == [
            b"GET /?wslab-cell=slow1 HTTP/1.1\r\nHost: app\r\nX-Late: 1\r\n\r\n"
        ]

    play(scenario())


def test_a_head_over_the_bound_is_recorded_up_to_the_bound(tmp_path: Path) -> None:
    head = b"GET /?wslab-cell=big1 HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"

    async def scenario() -> None:
        async with websocket_app() as port, tap_in_front_of(port, tmp_path / "tap.log") as (tap, feed):
            answer = await raw_exchange(tap, head)
            record = await one_record(feed, "big1")
        assert answer.startswith(b"HTTP/1.1 431 "), "websockets' own answer"
        assert record.raw_head == head[:MAX_HEAD].decode("latin-1") and record.bytes_received == len(head)
        assert record.response is not None and record.response.status == 431 and record.error is None
        assert record.tap is not None and record.tap.gave_up == f"request: a head over {MAX_HEAD} bytes"

    play(scenario())


def test_garbage_and_silence_are_recorded(tmp_path: Path) -> None:
    async def scenario() -> list[Connection]:
        async with websocket_app() as port, tap_in_front_of(port, tmp_path / "tap.log") as (tap, feed):
            started = time.time()
            await raw_exchange(tap, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
            await raw_exchange(tap, b"", wait=0.2)
            return await feed.in_window("t", started, 1.0)

    garbage, silence = sorted(asyncio.run(scenario()), key=lambda record: record.opened_at)
    assert garbage.request is None and garbage.raw_head.startswith("\x16\x03\x01")
    assert garbage.error is not None and garbage.error.type == "NoResponse"
    assert silence.raw_head == "" and silence.error is not None and silence.error.type == "NoRequest"
    assert silence.tap is not None and silence.tap.ended_by == "client"


def test_an_app_the_tap_cannot_reach(tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, Connection]:
        async with tap_in_front_of(free_port(HOST), tmp_path / "tap.log") as (tap, feed):
            answer = await raw_exchange(tap, b"GET /?wslab-cell=gone1 HTTP/1.1\r\nHost: app\r\n\r\n")
            return answer, await one_record(feed, "gone1")

    answer, record = asyncio.run(scenario())
    assert answer == b"", "closed, as an absent app's port would"
    assert record.error is not None and record.error.type == "ConnectionRefusedError"
    assert record.tap is not None and (record.tap.ended_by, record.tap.upstream_local_port) == ("tap", None)


@pytest.mark.parametrize("redact", [True, False])
def test_records_are_redacted_unless_told_not_to(redact: bool, tmp_path: Path) -> None:
    secret = "Bearer s3cret-tap-token-0123456789"

    async def scenario() -> Connection:
        options = () if redact else ("--no-redact",)
        async with (
            websocket_app() as port,
            tap_in_front_of(port, tmp_path / "tap.log", *options) as (tap, feed),
        ):
            await raw_exchange(
                tap, f"GET /?wslab-cell=sec1 HTTP/1.1\r\nAuthorization: {secret}\r\n\r\n".encode()
            )
            return await one_record(feed, "sec1")

    record = asyncio.run(scenario())
    assert ("s3cret-tap-token" in record.raw_head) is not redact
    assert record.request is not None and ("s3cret-tap-token" in str(record.request.headers)) is not redact


def test_h2c_is_recorded_like_the_probe_server_records_it(tmp_path: Path) -> None:
    """cloudrun-h2c's Envoy speaks h2c to the app: one record, the requests read from its frames."""

    async def scenario() -> Connection:
        async with websocket_app() as port, chain(port, tmp_path, "cloudrun-h2c") as (proxy, feed):
            await raw_exchange(
                proxy, b"GET /page?wslab-cell=h2c1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", 5
            )
            return await one_record(feed, "h2c1")

    record = asyncio.run(scenario())
    assert record.raw_head == "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert record.http2_request is not None and record.http2_request.path == "/page"
    assert record.http2_request.version == "HTTP/2"


def test_the_labs_readiness_check_is_answered_by_the_tap_and_reaches_nothing(tmp_path: Path) -> None:
    app = RawApp()

    async def scenario() -> tuple[bytes, list[Connection], bytes]:
        async with app.running() as port, tap_in_front_of(port, tmp_path / "tap.log") as (tap, feed):
            started = time.time()
            ready = await raw_exchange(tap, b"GET /.wslab-ready HTTP/1.1\r\nHost: ready\r\n\r\n")
            # A connection that sends nothing still reaches the app, as without the tap.
            await raw_exchange(tap, b"", wait=0.3)
            return ready, await feed.in_window("t", started, 0.5), b"".join(app.received.values())

    ready, records, received = asyncio.run(scenario())
    assert ready.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(app.received) == 1 and received == b"", "only the silent connection reached the app"
    assert [record.error.type for record in records if record.error] == ["NoRequest"]
