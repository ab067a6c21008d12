"""Topology containers started through testcontainers, scenarios played against them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from wslab.backends import StackOptions
from wslab.backends.containers import ContainersBackend
from wslab.records import Outcome
from wslab.runner import RunOptions, run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent


def test_containers_backend_reproduces_the_seed_and_removes_everything(engine: None) -> None:
    before = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout
    topologies = [load_topologies()[name] for name in ("direct", "haproxy-default", "varnish-default")]
    scenarios = [s for s in load_scenarios() if s.id in ("websockets-echo", "browser-tab-get", "tcp-probe")]
    result = asyncio.run(run(ContainersBackend(StackOptions()), topologies, scenarios, RunOptions()))

    browser = result.cell("haproxy-default", "browser-tab-get")
    assert browser.outcome == Outcome.FAIL
    assert browser.server[0].error.text == "missing Connection header"
    assert browser.diagnosis.rule == "plain-http-through-keepalive-proxy"
    assert result.cell("haproxy-default", "websockets-echo").outcome == Outcome.PASS
    assert result.cell("varnish-default", "websockets-echo").diagnosis.rule == "proxy-removed-upgrade"
    assert result.cell("direct", "tcp-probe").server[0].bytes_received == 0
    assert result.components.proxies["haproxy"].startswith("2.6")
    assert subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout == before


def test_containers_backend_reloads_restarts_and_resets_in_its_containers(engine: None) -> None:
    """The lifecycle events and faults reach the containers testcontainers started: HAProxy's
    old worker keeps the WebSocket over a reload, the server's 1001 comes through, a TCP reset
    on the client-proxy hop (in the proxy's container) ends the connection with 1006, and a
    bandwidth limit there is put on (through the ifb device it adds in that container)."""
    before = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout
    topologies = [load_topologies()["haproxy-default"]]
    faults = load_scenarios([ROOT / "scenarios" / "faults.yaml"])
    scenarios = [
        *load_scenarios(suites=["lifecycle"]),
        *(s for s in faults if s.id in ("reset-client-proxy", "bandwidth-client-proxy")),
    ]
    result = asyncio.run(run(ContainersBackend(StackOptions()), topologies, scenarios, RunOptions()))

    reload = result.cell("haproxy-default", "proxy-reload")
    assert reload.outcome == Outcome.PASS, reload.checks
    restart = result.cell("haproxy-default", "server-restart")
    assert restart.outcome == Outcome.PASS and restart.client.lifecycle.code == 1001
    reset = result.cell("haproxy-default", "reset-client-proxy")
    assert reset.outcome == Outcome.PASS and reset.client.close.code == 1006
    assert reset.client.faults[0].commands[0].startswith("nsenter --target ")
    shaped = result.cell("haproxy-default", "bandwidth-client-proxy")
    assert shaped.outcome == Outcome.PASS, (shaped.checks, shaped.error)
    assert any(c.endswith("ip link add wslab-eth0 up type ifb") for c in shaped.client.faults[0].commands)
    assert subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout == before


def test_containers_backend_reloads_traefik_by_a_file_written_in_its_container(engine: None) -> None:
    """The changed file goes into the directory Traefik watches inside its container (docker exec,
    the container's own shell), and the reload ends once Traefik answers with it, as locally."""
    topologies = [load_topologies()["traefik-default"]]
    scenarios = [s for s in load_scenarios(suites=["lifecycle"]) if s.id == "proxy-reload"]
    result = asyncio.run(run(ContainersBackend(StackOptions()), topologies, scenarios, RunOptions()))

    reload = result.cell("traefik-default", "proxy-reload")
    assert reload.outcome == Outcome.PASS, (reload.checks, reload.error)
    life = reload.client.lifecycle
    assert life is not None and life.survived
    assert "the proxy answered with the changed config" in life.event.detail
