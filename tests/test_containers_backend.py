"""Topology containers started through testcontainers, scenarios played against them."""

from __future__ import annotations

import asyncio
import subprocess

from wslab.backends import StackOptions
from wslab.backends.containers import ContainersBackend
from wslab.records import Outcome
from wslab.runner import RunOptions, run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies


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
