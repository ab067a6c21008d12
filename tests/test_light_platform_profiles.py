"""Light platform profiles (heroku, aws-alb, cloudflare, fly, render, railway) on real proxies.

Each profile's time limit is measured, accelerated, against the probe server:
idle windows cut a silent WebSocket and websockets' 20 s pings keep it open;
lifetime caps cut it, pings or not. The emulated headers must reach the server.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.records import Run, header_value
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import INSTANCE_LIMITS, Topology, load_topologies

SCALE = 0.02
"""Time scale of this module's run (as accelerated runs): 55 s → 1.1 s; the 950 s hold lasts 19 s."""
TOLERANCE = 0.1

IDLE_PROFILES = ("heroku", "aws-alb", "cloudflare", "fly")
LIFETIME_PROFILES = ("render", "railway")
SOURCE_TAG = re.compile(r"\[(DOC|DOC-2nd|3P|ISSUE|CODE|INFERRED|UNVERIFIED|VERIFIED)\]|assumption")

SCENARIOS = """\
suite: light-profiles
scenarios:
  - id: light-headers
    title: websockets client, headers as the server saw them
    steps:
      - connect: {path: /headers}
      - close: {code: 1000}
    expect: {status: 101, upgraded: true}
  - id: light-idle
    title: silent connection held past every idle window
    steps:
      - connect: {path: /idle, server_ping: null}
      - hold: {seconds: 150}
    expect: {survives: false}
  - id: light-pinged
    title: server pings every 20 s, held past every idle window
    steps:
      - connect: {path: /pinged, server_ping: 20}
      - hold: {seconds: 150}
    expect: {survives: true}
  - id: light-pinged-long
    title: server pings every 20 s, held past every lifetime cap
    steps:
      - connect: {path: /long, server_ping: 20}
      - hold: {seconds: 950}
    expect: {survives: false}
"""

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
EXPECTED_HEADERS: dict[str, dict[str, str]] = {
    "heroku": {
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        "X-Request-Id": UUID,
    },
    "aws-alb": {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"},
    "cloudflare": {
        "CF-Connecting-IP": "127.0.0.1",
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Proto": "https",
        "CF-Ray": r"[0-9a-f]{16}-[A-Z]{3}",
    },
    "fly": {
        "Fly-Client-IP": "127.0.0.1",
        "X-Forwarded-For": r"127\.0\.0\.1, 127\.0\.0\.1",
        "X-Forwarded-Proto": "https",
        "Fly-Forwarded-Port": "443",
    },
    "render": {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"},
    "railway": {
        "X-Real-IP": "127.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": r"127\.0\.0\.1:\d+",
        "X-Railway-Edge": r"\S+",
        "X-Request-Start": r"\d{13}",
        "X-Railway-Request-Id": UUID,
    },
}


@pytest.fixture(scope="module")
def profiles() -> dict[str, Topology]:
    topologies = load_topologies()
    return {name: topologies[name] for name in IDLE_PROFILES + LIFETIME_PROFILES}


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory, profiles: dict[str, Topology]) -> Run:
    """Every light profile through this module's scenarios, accelerated, cells concurrently."""
    folder = tmp_path_factory.mktemp("light")
    path = Path(folder, "light.yaml")
    path.write_text(SCENARIOS)
    backend = LocalBackend(folder, StackOptions(time_scale=SCALE))
    return asyncio.run(run(backend, list(profiles.values()), load_scenarios([path])))


def parameter(topology: Topology, name: str) -> float:
    return next(p.seconds for p in topology.parameters if p.name == name)


def hold(result: Run, topology: str, scenario: str) -> dict:
    cell = result.cell(topology, scenario)
    assert cell.client and cell.client.hold, (topology, scenario, cell.error, cell.summary)
    return cell.client.hold


def test_profiles_name_their_sources(profiles: dict[str, Topology]) -> None:
    for topology in profiles.values():
        assert topology.platform and topology.websocket_fix and topology.behaviours, topology.name
        for text in [p.source for p in topology.parameters] + list(topology.behaviours):
            assert SOURCE_TAG.search(text), f"{topology.name}: no source tag or 'assumption' in {text!r}"
        # Limits on a connection, besides how the platform ends an instance (lifecycle suite).
        names = {p.name for p in topology.parameters if p.limit not in INSTANCE_LIMITS}
        assert names == ({"idle_timeout"} if topology.name in IDLE_PROFILES else {"lifetime"})


@pytest.mark.parametrize("name", IDLE_PROFILES + LIFETIME_PROFILES)
def test_emulated_headers_reach_the_server(light: Run, name: str) -> None:
    cell = light.cell(name, "light-headers")
    assert cell.client.received.status == 101, cell.summary
    request = cell.server[0].request
    assert request.version == "HTTP/1.1"
    for key, pattern in EXPECTED_HEADERS[name].items():
        value = header_value(request.headers, key)
        assert value is not None and re.fullmatch(pattern, value), (name, key, value)
    if name == "railway":
        # Railway does not document X-Forwarded-For any more; nothing is added.
        assert header_value(request.headers, "X-Forwarded-For") is None
    # No proxy-specific headers leak to the app.
    assert not [key for key, _ in request.headers if key.lower().startswith("x-envoy-")]


@pytest.mark.parametrize("name", IDLE_PROFILES)
def test_idle_window_cuts_silence_and_pings_keep_it_open(
    light: Run, profiles: dict[str, Topology], name: str
) -> None:
    configured = parameter(profiles[name], "idle_timeout")
    idle = hold(light, name, "light-idle")
    assert idle.closed, idle
    assert abs(idle.lived_faithful - configured) <= configured * TOLERANCE, (configured, idle)
    for scenario in ("light-pinged", "light-pinged-long"):
        busy = hold(light, name, scenario)
        assert not busy.closed, (scenario, busy)


@pytest.mark.parametrize("name", LIFETIME_PROFILES)
def test_lifetime_cap_cuts_even_with_pings(light: Run, profiles: dict[str, Topology], name: str) -> None:
    configured = parameter(profiles[name], "lifetime")
    busy = hold(light, name, "light-pinged-long")
    assert busy.closed, busy
    assert abs(busy.lived_faithful - configured) <= configured * TOLERANCE, (configured, busy)
    assert busy.since_last_byte < busy.lived / 5, "pings were flowing until the cut"
    # No idle limit: silent and pinged connections outlive every idle window of the other profiles.
    for scenario in ("light-idle", "light-pinged"):
        assert not hold(light, name, scenario).closed, scenario
