"""Platform profiles, the timeouts suite and `wslab compare`, on real proxies."""

from __future__ import annotations

import asyncio
import re

import pytest

from wslab.backends import ACCELERATED, StackOptions
from wslab.backends.local import LocalBackend
from wslab.deployment_choice import compare
from wslab.records import Outcome, Run, header_value
from wslab.reports.deployment_choice import render_markdown
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies

SOURCE_TAG = re.compile(r"\[(DOC|DOC-2nd|3P|ISSUE|CODE|INFERRED|UNVERIFIED|VERIFIED)\]|assumption|https?://")
WEBSOCKET_CLIENTS = ["websockets-echo", "chrome-handshake", "firefox-keepalive-upgrade"]


@pytest.fixture(scope="session")
def timeouts(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The timeouts suite through every topology, accelerated."""
    backend = LocalBackend(tmp_path_factory.mktemp("timeouts"), StackOptions(time_scale=ACCELERATED))
    scenarios = load_scenarios(suites=["timeouts"])
    return asyncio.run(run(backend, list(load_topologies().values()), scenarios))


def hold(result: Run, topology: str, scenario: str) -> dict:
    return result.cell(topology, scenario).client.hold


def test_every_profile_parameter_and_behaviour_names_its_source() -> None:
    profiles = [t for t in load_topologies().values() if t.platform]
    assert {"cloudrun", "cloudrun-h2c", "replit-dev", "replit-autoscale", "replit-reserved-vm"} <= {
        t.name for t in profiles
    }
    for topology in profiles:
        assert topology.behaviours, topology.name
        for text in [p.source for p in topology.parameters] + list(topology.behaviours):
            assert SOURCE_TAG.search(text), f"{topology.name}: no source or 'assumption' in {text!r}"


def test_replit_dev_reproduces_the_seed(matrix: Run, healthcheck_matrix: Run) -> None:
    for scenario in ("browser-tab-get", "preview-pane-get"):
        cell = matrix.cell("replit-dev", scenario)
        request = cell.server[0].request
        assert header_value(request.headers, "Connection") is None
        assert header_value(request.headers, "X-Forwarded-Proto") == "https"
        assert header_value(request.headers, "X-Forwarded-For") == "127.0.0.1"
        assert header_value(request.headers, "Host").endswith(".picard.replit.dev")
        assert cell.server[0].error.text == "missing Connection header"
        assert cell.diagnosis.rule == "plain-http-through-keepalive-proxy"
        assert healthcheck_matrix.cell("replit-dev", scenario).outcome == Outcome.PASS
    for scenario in WEBSOCKET_CLIENTS:
        assert matrix.cell("replit-dev", scenario).client.received.status == 101


def test_cloudrun_headers_and_h2c(matrix: Run) -> None:
    request = matrix.cell("cloudrun", "websockets-echo").server[0].request
    assert re.fullmatch(r"[0-9a-f]{32}/\d+;o=1", header_value(request.headers, "X-Cloud-Trace-Context"))
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", header_value(request.headers, "traceparent"))
    assert header_value(request.headers, "X-Forwarded-Proto") == "https"
    for scenario in WEBSOCKET_CLIENTS:
        cell = matrix.cell("cloudrun-h2c", scenario)
        assert cell.outcome == Outcome.FAIL
        assert cell.diagnosis.rule == "upstream-speaks-http2"
        assert "no-use-http2" in cell.diagnosis.fix
        assert cell.server[0].request.method == "PRI"
        stream = cell.server[0].http2_request
        assert (stream.method, header_value(stream.headers, ":protocol")) == ("CONNECT", "websocket")
        assert stream.path == cell.client.sent.path, "each cell finds its own stream"
        assert f"stream {stream.stream}" in cell.diagnosis.cause
    browser = matrix.cell("cloudrun-h2c", "browser-tab-get").server[0].http2_request
    assert browser.method == "GET" and header_value(browser.headers, ":protocol") is None
    assert matrix.cell("cloudrun-h2c", "http10-upgrade").server == [], "Envoy answered HTTP/1.0 itself"


def test_lifetime_cap_cuts_even_with_pings(timeouts: Run) -> None:
    for topology in ("cloudrun", "replit-autoscale"):
        busy = hold(timeouts, topology, "lifetime-with-pings")
        assert busy.closed and 270 <= busy.lived_faithful <= 330, busy
        assert busy.since_last_byte < busy.lived / 5, "pings were flowing until the cut"
        cell = timeouts.cell(topology, "lifetime-with-pings")
        assert cell.diagnosis.rule == "lifetime-cap"
    assert not hold(timeouts, "replit-reserved-vm", "lifetime-with-pings").closed


@pytest.mark.parametrize(("topology", "configured"), [("nginx-websocket", 60), ("haproxy-default", 50)])
def test_idle_cutoffs_match_configuration(timeouts: Run, topology: str, configured: float) -> None:
    idle = hold(timeouts, topology, "idle-without-pings")
    assert idle.closed
    assert abs(idle.lived_faithful - configured) <= configured * 0.1, idle
    assert timeouts.cell(topology, "idle-without-pings").diagnosis.rule == "idle-timeout"
    # websockets' default 20 s pings keep the same proxy open.
    assert timeouts.cell(topology, "idle-with-default-pings").outcome == Outcome.PASS


def test_compare_recommends_reserved_vm_and_gives_the_fix(
    matrix: Run, healthcheck_matrix: Run, timeouts: Run
) -> None:
    merged = Run(**{**vars(matrix), "cells": matrix.cells + timeouts.cells})
    comparison = compare(merged, healthcheck_matrix)
    assert comparison.recommended.name == "replit-reserved-vm"
    page = render_markdown(comparison)
    assert "| **replit-dev** |" in page and "missing Connection header" in page
    assert "process_request" in page and "cut at" in page
    static = next(o for o in comparison.options if o.name == "replit-static")
    assert not static.carries_websockets
