"""Every time limit a topology imposes, scaled with the run: accelerated runs agree with the
limits each topology.yaml documents (or say 'not measured'), and faithful runs agree too.

Before, accelerated runs printed 'open 150s' where Varnish, lighttpd and Apache cut idle
WebSockets at 60 s, because those limits were built into the proxies and never scaled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wslab.backends import ACCELERATED, Deployment, StackOptions
from wslab.backends.local import LocalBackend
from wslab.records import DeploymentStatus, Outcome, Run
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import SCALE_TOLERANCE, Parameter, Topology, cutting_limit, load_topologies

HOLDS = {
    "idle-without-pings": (150, None),
    "idle-with-default-pings": (150, 20),
    "lifetime-with-pings": (400, 20),
}
"""Scenario -> (faithful seconds held, server ping interval): as scenarios/timeouts.yaml says."""


def timeouts_run(folder: Path, topologies: list[Topology], scale: float, scenario_ids: list[str]) -> Run:
    scenarios = [s for s in load_scenarios(suites=["timeouts"]) if s.id in scenario_ids]
    backend = LocalBackend(folder, StackOptions(time_scale=scale))
    return asyncio.run(run(backend, topologies, scenarios))


def check_against_the_documented_limits(result: Run, topologies: dict[str, Topology], scale: float) -> None:
    for cell in result.cells:
        topology = topologies[cell.topology]
        held, pings = HOLDS[cell.scenario]
        if cell.outcome == Outcome.UNAVAILABLE or (cell.client and not cell.client.upgraded):
            continue  # the WebSocket never opens there (the handshake tests say why): nothing to time
        if topology.unmeasurable(scale, held):
            assert cell.outcome == Outcome.NOT_MEASURED, (cell.topology, cell.scenario, cell.summary)
            assert "run with --faithful" in (cell.error or "")
            continue
        assert cell.client is not None and cell.client.hold is not None, (
            cell.topology,
            cell.scenario,
            cell.error,
        )
        hold = cell.client.hold
        expected = topology.predicted_cut(held, pings)
        where = (cell.topology, cell.scenario, hold.lived_faithful, expected)
        if expected is None:
            assert not hold.closed, where
        else:
            assert hold.closed and abs(hold.lived_faithful - expected) <= SCALE_TOLERANCE * expected, where


@pytest.fixture(scope="module")
def accelerated(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return timeouts_run(
        tmp_path_factory.mktemp("accelerated"), list(load_topologies().values()), ACCELERATED, list(HOLDS)
    )


def test_accelerated_runs_agree_with_every_documented_limit(accelerated: Run) -> None:
    check_against_the_documented_limits(accelerated, load_topologies(), ACCELERATED)


def test_the_built_in_limits_that_used_to_be_missed_now_cut(accelerated: Run) -> None:
    for topology, seconds in (
        ("varnish-websocket", 60),
        ("haproxy-default", 50),
        ("nginx-websocket-map", 60),
    ):
        hold = accelerated.cell(topology, "idle-without-pings").client.hold
        assert hold.closed and abs(hold.lived_faithful - seconds) <= 6, (topology, hold)
    lighttpd = accelerated.cell("lighttpd-websocket", "idle-without-pings")
    assert lighttpd.outcome == Outcome.NOT_MEASURED
    assert "max_read_idle (60 s) would be 1 s at ×0.02, not 1.2 s" in lighttpd.error


@pytest.mark.fast
@pytest.mark.parametrize(
    ("seconds", "granularity", "scale", "holds"),
    [
        (60, 0.001, 0.02, True),
        (60, 1, 0.02, False),
        (300, 1, 0.02, True),
        (360, 1, 0.02, True),
        (60, 1, 1.0, True),
    ],
)
def test_a_limit_holds_at_a_scale_when_the_proxy_can_be_given_it(
    seconds: float, granularity: float, scale: float, holds: bool
) -> None:
    assert Parameter("t", seconds, "s", "idle", granularity).holds_at(scale) is holds


@pytest.mark.fast
def test_predicted_cuts() -> None:
    topology = load_topologies()["envoy-websocket"]  # stream idle 300 s, delayed close 1 s
    assert topology.predicted_cut(400, None) == 301 and topology.predicted_cut(150, None) is None
    assert topology.predicted_cut(400, 20) is None
    cloudrun = load_topologies()["cloudrun"]  # request timeout 300 s: a lifetime cap
    assert cloudrun.predicted_cut(400, 20) == 300 and cloudrun.predicted_cut(150, 20) is None


@pytest.mark.fast
def test_a_run_records_each_limit_with_its_kind_and_predicts_the_same_cut() -> None:
    """`wslab compare` predicts cuts from the run's records: a lifetime cap recorded as an idle
    limit would be predicted never to cut a connection kept busy by pings."""
    for name in ("cloudrun", "envoy-websocket", "nginx-websocket"):
        topology = load_topologies()[name]
        recorded = Deployment(topology, DeploymentStatus.READY).record().parameters
        assert [(p.limit, p.granularity) for p in recorded] == [
            (p.limit, p.granularity) for p in topology.parameters
        ]
        for held, pings in HOLDS.values():
            cut = cutting_limit(recorded, held, pings)
            assert (cut[1] if cut else None) == topology.predicted_cut(held, pings), (name, held, pings)


@pytest.mark.slow
def test_faithful_runs_agree_too(tmp_path: Path) -> None:
    """Real seconds: a few topologies whose idle limit falls inside the 150 s hold."""
    names = ["haproxy-default", "varnish-websocket", "lighttpd-websocket", "nginx-websocket-map"]
    everything = load_topologies()
    result = timeouts_run(tmp_path, [everything[name] for name in names], 1.0, ["idle-without-pings"])
    check_against_the_documented_limits(result, everything, 1.0)
    assert {cell.outcome for cell in result.cells} == {Outcome.INFORMATIONAL}, "each is cut"
