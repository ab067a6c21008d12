"""The probe server's ``settle`` barrier and the runner waits it shortens, on a real
``python -m wslab.probe`` process (a websockets listener and a tap) on 127.0.0.1.

A cell whose request a proxy refused itself used to wait the whole settle for a report that
never came, and a TCP probe its whole window: each now asks the server whether every record
is in. These tests give every wait a settle far longer than the test's own bound, so a wait
that ignores the barrier fails rather than passes slowly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from wslab.observations import ObservationFeed

HOST = "127.0.0.1"
LONG_SETTLE = 60.0
"""A settle no test waits out: each is bounded by BOUND."""
BOUND = 15.0


@asynccontextmanager
async def probe_server(log: Path, app_port: int) -> AsyncIterator[tuple[dict[str, int], ObservationFeed]]:
    """A probe server with listener ``ws`` and a tap ``tap`` to ``app_port``, and a feed of it."""
    argv = ["--listen", f"ws={HOST}:0", "--listen", f"tap={HOST}:0", "--forward", f"tap={HOST}:{app_port}"]
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wslab.probe", *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    feed = ObservationFeed()
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        await feed.start(*ready["control"], history=False)
        await feed.hello()
        yield {name: port for name, (_, port) in ready["listeners"].items()}, feed
    finally:
        await feed.stop()
        process.terminate()
        await process.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


Test = Callable[[dict[str, int], ObservationFeed], Awaitable[None]]


def scenario(test: Test, tmp_path: Path) -> None:
    app = socket.create_server((HOST, 0))
    with app:

        async def bounded() -> None:
            async with probe_server(tmp_path / "probe.log", app.getsockname()[1]) as (ports, feed):
                await asyncio.wait_for(test(ports, feed), BOUND)

        asyncio.run(bounded())


def test_the_barrier_waits_for_a_head_still_arriving_and_answers_after_its_record(tmp_path: Path) -> None:
    async def test(ports: dict[str, int], feed: ObservationFeed) -> None:
        _, writer = await asyncio.open_connection(HOST, ports["ws"])
        writer.write(b"GET /chat?wslab-cell=half HTTP/1.1\r\nHost: lab\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)  # the server has accepted it: an unrecorded connection
        barrier = asyncio.ensure_future(feed.settled("ws"))
        await asyncio.sleep(0.5)
        assert not barrier.done(), "the barrier answered while a head was still arriving"
        writer.write(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")  # no key: refused
        await writer.drain()
        assert await barrier is True
        # Answered after the record, on the same channel: the record is in already.
        assert feed.seen("half")
        writer.close()

    scenario(test, tmp_path)


def test_a_request_that_never_reached_the_server_is_known_at_once(tmp_path: Path) -> None:
    async def test(ports: dict[str, int], feed: ObservationFeed) -> None:
        assert await feed.wait_for_cell("refused-by-a-proxy", LONG_SETTLE, listener="ws") == []

    scenario(test, tmp_path)


def test_a_request_that_did_reach_it_is_found_through_the_barrier(tmp_path: Path) -> None:
    async def test(ports: dict[str, int], feed: ObservationFeed) -> None:
        reader, writer = await asyncio.open_connection(HOST, ports["ws"])
        writer.write(b"GET /?wslab-cell=plain HTTP/1.1\r\nHost: lab\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 426")
        # Two expected (a page and its favicon), one sent: only the barrier ends the wait.
        [connection] = await feed.wait_for_cell("plain", LONG_SETTLE, expected=2, listener="ws")
        assert connection.response is not None and connection.response.status == 426
        writer.close()

    scenario(test, tmp_path)


def test_a_tcp_probes_window_ends_at_the_barrier_with_its_connection_in_it(tmp_path: Path) -> None:
    async def test(ports: dict[str, int], feed: ObservationFeed) -> None:
        started = asyncio.get_running_loop().time()
        opened = time.time()
        reader, writer = await asyncio.open_connection(HOST, ports["ws"])
        writer.write_eof()
        assert await reader.read() == b""  # the server closed back
        writer.close()
        [connection] = await feed.in_window("ws", opened, LONG_SETTLE, closed_back=True)
        assert connection.request is None and connection.cell is None
        assert asyncio.get_running_loop().time() - started < BOUND

    scenario(test, tmp_path)


def test_a_tap_cannot_settle_so_its_waits_keep_their_window(tmp_path: Path) -> None:
    async def test(ports: dict[str, int], feed: ObservationFeed) -> None:
        assert await feed.settled("tap") is False
        assert await feed.settled("no-such-listener") is False
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(feed.wait_for_cell("never", LONG_SETTLE, listener="tap"), 1.0)

    scenario(test, tmp_path)


@pytest.mark.fast
def test_an_answer_read_while_the_barrier_is_still_being_sent_ends_the_wait() -> None:
    """The server may answer a barrier (and the feed read the answer) before the feed's send of it
    returns: the wait for a cell woke on the answer, saw the barrier not done yet, and slept out
    its whole settle (seen in CI: 1 run in 10 of the test above)."""

    class AnswersWhileSending:
        def __init__(self, feed: ObservationFeed) -> None:
            self.feed = feed

        async def send(self, message: str) -> None:
            self.feed._settled({"event": "settled", "id": json.loads(message)["id"], "settled": True})
            for _ in range(10):  # a send that yields a few times before it returns (a drain)
                await asyncio.sleep(0)

    async def test() -> list:
        feed = ObservationFeed()
        feed._connection = AnswersWhileSending(feed)  # type: ignore[assignment]
        return await asyncio.wait_for(feed.wait_for_cell("none", LONG_SETTLE, 2, "ws"), BOUND)

    assert asyncio.run(test()) == []
