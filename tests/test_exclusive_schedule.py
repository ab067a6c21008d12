"""When an exclusive cell (a TCP probe) may have its listener, and what its window claims."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from builders import connection

from wslab.observations import ObservationFeed, Observed
from wslab.runner import Places, exclusive_may_start, new_cell_id, quiet_once_seen
from wslab.scenario import Scenario, load_scenarios

pytestmark = pytest.mark.fast


def scenario(*steps: dict[str, Any], correlate: str = "query") -> Scenario:
    return Scenario(id="s", suite="t", title="t", steps=list(steps), expect={}, correlate=correlate)


RAW = {"raw": {"headers": []}}
CONNECT = {"connect": {}}


def test_a_cell_with_one_opening_step_first_is_quiet_once_its_connection_is_seen() -> None:
    assert quiet_once_seen(scenario(RAW))
    assert quiet_once_seen(scenario(CONNECT, {"send": "hi"}, {"expect_message": "hi"}))
    # A second connection may come after the first was seen, or a page's follow-ups.
    assert not quiet_once_seen(scenario(CONNECT, {"close": {}}, RAW))
    assert not quiet_once_seen(scenario({"browser_visit": {"path": "/"}}))


def test_the_default_matrix_s_http10_attempt_can_share_its_listener_with_the_tcp_probe() -> None:
    by_id = {s.id: s for s in load_scenarios()}
    assert quiet_once_seen(by_id["http10-upgrade"])
    assert by_id["tcp-probe"].exclusive and new_cell_id(by_id["tcp-probe"]) is None


def test_an_exclusive_cell_waits_for_every_other_cell_to_start_and_go_quiet() -> None:
    quiet, busy = scenario(RAW), scenario(CONNECT, RAW)
    assert exclusive_may_start(0, [])
    assert not exclusive_may_start(1, []), "a cell not started yet could open a connection in its window"
    assert not exclusive_may_start(0, [(quiet, False)]), "its connection may be on the way"
    assert not exclusive_may_start(0, [(busy, True)]), "it may open another"
    assert exclusive_may_start(0, [(quiet, True), (quiet, True)])
    assert not exclusive_may_start(0, [(quiet, True), (quiet, False)])


def seen(listener: str, number: int, cell: str | None, opened_at: float) -> Observed:
    fields = {"listener": listener, "conn": number, "cell": cell, "opened_at": opened_at}
    return Observed(connection(None).model_copy(update=fields))


def test_an_exclusive_window_claims_only_connections_that_carry_no_id() -> None:
    async def window() -> tuple[list[str | None], bool, bool]:
        feed = ObservationFeed()
        # A cell's connection opened in the window (a retry by the proxy): that cell's, not the probe's.
        feed.add(seen("l", 1, "c1", 10.0))
        feed.add(seen("l", 2, None, 10.0))
        feed.add(seen("other", 3, None, 10.0))
        feed.add(seen("l", 4, None, 5.0))
        claimed = await feed.in_window("l", 9.0, 0)
        return [c.cell for c in claimed], feed.seen("c1"), feed.seen("c2")

    claimed, seen_c1, seen_c2 = asyncio.run(window())
    assert claimed == [None]
    assert seen_c1 and not seen_c2


def test_a_waiting_exclusive_cell_is_served_before_the_queued_ones() -> None:
    async def order_served() -> list[str]:
        places = Places(1)
        await places.take()
        served: list[str] = []

        async def cell(name: str, exclusive: bool) -> None:
            await places.take(exclusive)
            served.append(name)
            places.give()

        queued = [asyncio.ensure_future(cell(f"cell {i}", False)) for i in range(3)]
        await asyncio.sleep(0)
        queued.append(asyncio.ensure_future(cell("exclusive", True)))
        await asyncio.sleep(0)
        places.give()
        await asyncio.gather(*queued)
        return served

    assert asyncio.run(order_served()) == ["exclusive", "cell 0", "cell 1", "cell 2"]


def test_a_cancelled_wait_for_a_place_loses_no_place() -> None:
    async def free_after() -> int:
        places = Places(1)
        await places.take()
        waiting = asyncio.ensure_future(places.take())
        await asyncio.sleep(0)
        places.give()  # handed to the waiter, which is cancelled before it runs
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return places.free

    assert asyncio.run(free_after()) == 1


def test_long_cells_asking_together_are_served_first_and_the_rest_in_order() -> None:
    async def order_served() -> list[str]:
        places = Places(2)
        served: list[str] = []

        async def cell(name: str, took: float) -> None:
            await places.take(expected=took)
            served.append(name)
            await asyncio.sleep(0.01)
            places.give()

        durations = {"quick": 0.01, "never seen": 0.0, "long": 0.3, "slower": 0.1, "longest": 0.5}
        await asyncio.gather(*(cell(name, took) for name, took in durations.items()))
        return served

    assert asyncio.run(order_served()) == ["longest", "long", "quick", "never seen", "slower"]
