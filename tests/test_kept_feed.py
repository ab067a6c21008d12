"""A kept lab's own feed of the probe server (``wslab up``) keeps nothing, on a real
``python -m wslab.probe`` process on 127.0.0.1.

It used to keep every report like a run's feed: a warm lab's ``wslab up`` process grew by about
2.7 MB and spent about 0.08 s of CPU for each default-matrix run played on it (84 MB to 128 MB
over 16 runs), reports nobody would read again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from websockets.asyncio.client import connect

from wslab.observations import Event, ObservationFeed

HOST = "127.0.0.1"


async def _probe(log: Path) -> tuple[asyncio.subprocess.Process, int, tuple[str, int]]:
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wslab.probe", "--listen", f"ws={HOST}:0",
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    assert process.stdout is not None
    ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
    return process, ready["listeners"]["ws"][1], (ready["control"][0], ready["control"][1])


async def _connections(port: int, cells: list[str]) -> None:
    for cell in cells:
        async with connect(f"ws://{HOST}:{port}/?wslab-cell={cell}", proxy=None) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"


def test_the_lab_feed_passes_reports_on_and_keeps_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        run = ObservationFeed()
        printing, silent = ObservationFeed(retain=False), ObservationFeed(retain=False)
        printed: list[Event] = []
        printing.subscribers.append(printed.append)
        process, port, control = await _probe(tmp_path / "probe.log")
        try:
            for feed in (run, printing, silent):
                await feed.start(*control, history=False)
                await feed.hello()
            cells = ["a1b2c3d4e5f6", "0a0b0c0d0e0f", "f6e5d4c3b2a1"]
            await _connections(port, cells)
            found = await asyncio.gather(*(run.wait_for_cell(cell, 5.0, 1, "ws") for cell in cells))
            assert [len(connections) for connections in found] == [1, 1, 1]
            assert all(connections[0].closed for connections in found), "the run's feed waits for closes"
            # The lab's feed has passed on what the run's has, and kept none of it.
            seen = {cell for event in printed for cell in getattr(event, "cells", ())}
            assert seen >= set(cells), printed
            for feed in (printing, silent):
                assert (feed.observed, feed.by_cell, feed.closings) == ([], {}, {})
                assert feed.hello_event is not None and feed.lost is None
            process.terminate()
            await process.wait()
            # Not reading the reports still tells the lab its probe server is gone.
            await asyncio.wait_for(asyncio.gather(printing.closed(), silent.closed()), 10)
            assert printing.lost and silent.lost
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
            for feed in (run, printing, silent):
                await feed.stop()

    asyncio.run(scenario())
