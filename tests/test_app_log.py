"""Tying what a user's app logged to the cells: pure logic, no processes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from wslab.app_log import AppLog, HandshakeGate, Turn, attribute, handshake_error
from wslab.records import AppLogLine

pytestmark = pytest.mark.fast

WEBSOCKETS_REFUSAL = """\
opening handshake failed
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/websockets/asyncio/server.py", line 356, in conn_handler
    await connection.handshake(
  File "/usr/lib/python3/dist-packages/websockets/asyncio/server.py", line 207, in handshake
    raise self.protocol.handshake_exc
  File "/usr/lib/python3/dist-packages/websockets/server.py", line 138, in accept
    ) = self.process_request(request)
  File "/usr/lib/python3/dist-packages/websockets/server.py", line 233, in process_request
    raise InvalidUpgrade(
websockets.exceptions.InvalidUpgrade: missing Connection header"""

HANDLER_FAILED = """\
ERROR websockets.server connection handler failed
Traceback (most recent call last):
  File "/root/.cache/wslab/websockets-15.0.1/websockets/asyncio/server.py", line 376, in conn_handler
    await self.handler(connection)
  File "/app/app.py", line 15, in echo
    async for message in websocket:
  File "/root/.cache/wslab/websockets-15.0.1/websockets/asyncio/connection.py", line 322, in recv
    raise self.protocol.close_exc from self.recv_exc
websockets.exceptions.ConnectionClosedError: no close frame received or sent"""
"""What websockets logs when an upgraded connection drops (a raw handshake's client closes)."""

CHAINED = """\
opening handshake failed
Traceback (most recent call last):
  File "x.py", line 1, in parse
EOFError: connection closed while reading HTTP request line

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in handshake
websockets.exceptions.InvalidMessage: did not receive a valid HTTP request"""


def test_a_traceback_is_one_entry_and_the_next_record_a_new_one() -> None:
    log = AppLog()
    log.add("stderr", [*WEBSOCKETS_REFUSAL.splitlines(), "connection open"], at=10.0)
    log.add("stderr", ["INFO:     127.0.0.1:5000 - 'GET /' 200"], at=10.001)
    assert [e.text for e in log.entries] == [
        WEBSOCKETS_REFUSAL,
        "connection open",
        "INFO:     127.0.0.1:5000 - 'GET /' 200",
    ]


def test_a_traceback_read_in_two_chunks_stays_whole_but_not_across_streams_or_time() -> None:
    lines = CHAINED.splitlines()
    log = AppLog()
    log.add("stderr", lines[:5], at=1.0)
    log.add("stderr", lines[5:], at=1.01)
    assert [e.text for e in log.entries] == [CHAINED]
    log.add("stdout", ["  indented, but another stream"], at=1.02)
    log.add("stderr", ["  indented, much later"], at=9.0)
    assert len(log.entries) == 3


def test_the_log_stays_bounded() -> None:
    log = AppLog(max_lines=3)
    log.add("stdout", [f"line {n}" for n in range(10)], at=1.0)
    assert [e.text for e in log.entries] == ["line 7", "line 8", "line 9"]
    log.add("stdout", ["x" * 100_000], at=2.0)
    assert len(log.entries[-1].text) == 8_000


def entry(text: str, at: float = 5.0) -> AppLogLine:
    return AppLogLine(at=at, stream="stderr", text=text)


def test_an_entry_goes_to_the_cell_it_names_then_its_port_then_its_turn() -> None:
    turns = [Turn(start=4.0, end=6.0)]
    named = entry('INFO: "GET /?wslab-cell=abc123 HTTP/1.1" 404', at=50.0)
    other = entry('INFO: "GET /?wslab-cell=zzz999 HTTP/1.1" 404', at=5.0)
    by_port = entry("INFO:     ('127.0.0.1', 41234) - \"WebSocket /chat\" 403", at=90.0)
    timed = entry(WEBSOCKETS_REFUSAL, at=5.5)
    late = entry("connection closed", at=7.0)
    mine = attribute([named, other, by_port, timed, late], "abc123", {41234}, turns)
    assert [(e.text[:20], e.attributed_by) for e in mine] == [
        ('INFO: "GET /?wslab-c', "request id"),
        ("INFO:     ('127.0.0.", "connection port"),
        ("opening handshake fa", "timing"),
    ], "another cell's id is never taken by time; after the turn, nothing is"
    assert attribute([entry("peer 127.0.0.1:41234 gone")], None, {41234}, [])[0].attributed_by == (
        "connection port"
    )


def test_the_websockets_error_is_read_as_the_server_would_report_it() -> None:
    error = handshake_error([entry("connection open"), entry(WEBSOCKETS_REFUSAL)])
    assert error is not None
    assert (error.type, error.text, error.cause, error.source) == (
        "InvalidUpgrade",
        "missing Connection header",
        "",
        "app log",
    )
    chained = handshake_error([entry(CHAINED)])
    assert chained is not None
    assert (chained.type, chained.text) == ("InvalidMessage", "did not receive a valid HTTP request")
    assert chained.cause == "EOFError: connection closed while reading HTTP request line"
    assert handshake_error([entry("ValueError: not from websockets at all")]) is None
    assert handshake_error([entry("ERROR:    Exception in ASGI application")]) is None


def test_a_dropped_connection_is_never_a_refused_handshakes_error() -> None:
    assert handshake_error([entry(HANDLER_FAILED)]) is None
    after = handshake_error([entry(HANDLER_FAILED), entry(WEBSOCKETS_REFUSAL)])
    assert after is not None and after.type == "InvalidUpgrade"


def test_the_gate_lets_go_once_the_app_has_said_its_piece() -> None:
    """After an end the gate waits for the app's lines: once they came and the app has been quiet
    a moment, the next cell need not wait out the whole settle; an app that writes nothing gets
    all of it."""

    async def held(writes: list[float]) -> float:
        log = AppLog()
        gate = HandshakeGate(log, settle=1.0, quiet=0.02)

        async def app() -> None:
            for delay in writes:
                await asyncio.sleep(delay)
                log.add("stderr", ["opening handshake failed"])

        async with gate.turn() as turn:
            turn.ended = True
            writing = asyncio.ensure_future(app())
        await writing
        return turn.end - turn.start

    async def failed() -> float:
        gate = HandshakeGate(AppLog(), settle=0.2)
        with contextlib.suppress(TimeoutError):
            async with gate.turn() as turn:
                turn.ended = True
                raise TimeoutError("no relay within the patience")
        return turn.end - turn.start

    async def scenario() -> tuple[float, float, float, float]:
        return await held([0.01]), await held([0.01, 0.01, 0.01]), await held([]), await failed()

    once, thrice, silent, raised = asyncio.run(scenario())
    assert 0.03 <= once < 0.8, once
    assert 0.05 <= thrice < 0.8, ("each line keeps it a moment longer", thrice)
    assert silent >= 1.0
    assert raised >= 0.2, "a step that raised settles too"


def test_the_gate_lets_one_handshake_through_at_a_time_and_waits_after_an_end() -> None:
    async def scenario() -> list[Turn]:
        gate = HandshakeGate(settle=0.05)
        turns: list[Turn] = []

        async def cell(ended: bool) -> None:
            async with gate.turn() as turn:
                await asyncio.sleep(0.01)
                turn.ended = ended
            turns.append(turn)

        await asyncio.gather(cell(True), cell(False), cell(False))
        return turns

    turns = asyncio.run(scenario())
    spans = sorted((t.start, t.end) for t in turns)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    ended = next(t for t in turns if t.ended)
    assert ended.end - ended.start >= 0.055, "held for the settle after the connection ended"
