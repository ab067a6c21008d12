"""How long a raw step waits for a proxy to relay the server's answer: the run's own relays set
it, so that "the proxy never relayed it" is told from "it was slow" by comparison, not by a
fixed guess (wslab.relay_patience)."""

from __future__ import annotations

import asyncio
import time

import pytest
from builders import connection, request, response

from wslab import relay_patience
from wslab.records import Connection
from wslab.relay_patience import NotRelayed, RelayPatience

pytestmark = pytest.mark.fast


class Server:
    """The server's reports, each given by hand at the UNIX time the test says it answered."""

    def __init__(self) -> None:
        self.reports: dict[str, asyncio.Future[Connection]] = {}

    def _report(self, cell: str) -> asyncio.Future[Connection]:
        return self.reports.setdefault(cell, asyncio.get_running_loop().create_future())

    async def answer(self, cell: str) -> Connection:
        return await asyncio.shield(self._report(cell))  # a step that stops waiting cancels only itself

    def answered(self, cell: str, at: float) -> None:
        answer = {"at": at, "response": response(101, "Switching Protocols")}
        self._report(cell).set_result(connection(request([]), 101).model_copy(update=answer))


async def _never() -> bytes:
    await asyncio.get_running_loop().create_future()
    return b""


async def _after(seconds: float, data: bytes) -> bytes:
    await asyncio.sleep(seconds)
    return data


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patience's figures a tenth of the lab's, so that the tests wait milliseconds."""
    monkeypatch.setattr(relay_patience, "FLOOR", 0.02)
    monkeypatch.setattr(relay_patience, "BEFORE_ANY", 0.05)
    monkeypatch.setattr(relay_patience, "RECHECK", 0.005)


def test_the_patience_is_the_floor_or_a_margin_over_the_slowest_relay() -> None:
    relays = RelayPatience(Server().answer)
    assert relays.seconds == relay_patience.BEFORE_ANY == 0.5  # nothing to compare with yet
    relays.slowest = 0.002
    assert relays.seconds == relay_patience.FLOOR == 0.2
    relays.slowest = 0.13  # two cold runs and two busy loops on two cores
    assert relays.seconds == pytest.approx(0.65)


def test_a_relayed_response_is_returned_and_measured_once_the_server_reports_it() -> None:
    async def scenario() -> tuple[bytes, RelayPatience]:
        server = Server()
        relays = RelayPatience(server.answer)
        got = await relays.response("c1", _after(0.0, b"HTTP/1.1 426 Upgrade Required\r\n\r\n"), time.time())
        assert relays.slowest is None  # the report comes after the response: measured then
        server.answered("c1", at=time.time() - 0.03)
        await asyncio.sleep(0.01)
        return got, relays

    got, relays = asyncio.run(scenario())
    assert got.startswith(b"HTTP/1.1 426")
    assert relays.relayed == 1 and 0.025 <= relays.slowest < 0.1  # type: ignore[operator]


def test_a_connection_closed_without_a_byte_is_no_relay() -> None:
    async def scenario() -> RelayPatience:
        server = Server()
        relays = RelayPatience(server.answer)
        assert await relays.response("c1", _after(0.0, b""), time.time()) == b""
        server.answered("c1", at=time.time())
        await asyncio.sleep(0.01)
        return relays

    assert asyncio.run(scenario()).relayed == 0


@pytest.mark.usefixtures("quick")
def test_nothing_after_the_server_answered_is_not_relayed_and_says_against_what() -> None:
    async def scenario() -> str:
        server = Server()
        relays = RelayPatience(server.answer)
        relays.relayed, relays.slowest = 40, 0.001
        sent = time.time()
        server.answered("c1", at=sent + 0.004)
        with pytest.raises(NotRelayed) as raised:
            await relays.response("c1", _never(), sent)
        return str(raised.value)

    said = asyncio.run(scenario())
    assert said == (
        "the server answered 101 Switching Protocols 0.004 s after the request; nothing reached the "
        "client within 0.02 s after that (the slowest of this run's 40 relayed responses took 0.001 s)"
    )


@pytest.mark.usefixtures("quick")
def test_a_slow_relay_seen_while_waiting_lengthens_the_wait() -> None:
    async def scenario() -> tuple[float, str]:
        server = Server()
        relays = RelayPatience(server.answer)
        relays.relayed, relays.slowest = 1, 0.001
        server.answered("apache", at=time.time())
        started = time.monotonic()
        waiting = asyncio.ensure_future(relays.response("apache", _never(), time.time()))
        await asyncio.sleep(0.01)
        # Meanwhile another cell's response took 20 ms to come through: the machine is busy.
        other = await relays.response("busy", _after(0.0, b"HTTP/1.1 101 \r\n\r\n"), time.time())
        server.answered("busy", at=time.time() - 0.02)
        with pytest.raises(NotRelayed) as raised:
            await waiting
        assert other
        return time.monotonic() - started, str(raised.value)

    waited, said = asyncio.run(scenario())
    assert waited >= 0.1 and "within 0.10 s after that" in said, said
    assert "the slowest of this run's 2 relayed responses took 0.02" in said


@pytest.mark.usefixtures("quick")
def test_before_any_relay_the_wait_is_the_longer_one_and_says_so() -> None:
    async def scenario() -> str:
        server = Server()
        relays = RelayPatience(server.answer)
        server.answered("c1", at=time.time())
        with pytest.raises(NotRelayed) as raised:
            await relays.response("c1", _never(), time.time())
        return str(raised.value)

    said = asyncio.run(scenario())
    assert "within 0.05 s after that (no response relayed in this run yet to compare with)" in said


@pytest.mark.usefixtures("quick")
def test_without_the_servers_answer_the_step_waits_for_the_response_alone() -> None:
    async def scenario() -> bytes:
        relays = RelayPatience(Server().answer)  # a proxy that answers itself: no report comes
        return await relays.response("c1", _after(0.1, b"HTTP/1.1 400 Bad Request\r\n\r\n"), time.time())

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 400")


def test_a_failed_read_is_the_steps_error() -> None:
    async def failing() -> bytes:
        raise ConnectionResetError("reset by peer")

    async def scenario() -> None:
        server = Server()
        relays = RelayPatience(server.answer)
        server.answered("c1", at=time.time())
        await relays.response("c1", failing(), time.time())

    with pytest.raises(ConnectionResetError):
        asyncio.run(scenario())
