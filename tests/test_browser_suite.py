"""The browser suite: real headless Chromium through real proxies, not requests shaped like it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import RESULTS_SCHEMA, holders
from test_html_report import embedded_data

from wslab import browser
from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.records import Cell, Outcome, Run, header_value
from wslab.reports.html import render_html
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies


def run_browser_suite(tmp: Path, topologies: list[str], **probe: object) -> Run:
    backend = LocalBackend(tmp, StackOptions(**probe))  # type: ignore[arg-type]
    scenarios = load_scenarios(suites=["browser"])
    return asyncio.run(run(backend, [load_topologies()[name] for name in topologies], scenarios))


OUTSIDE = ["http://example.com/", "http://192.0.2.1/"]
"""A name and an address (TEST-NET-1) that a lab browser must not reach."""
IMITATIONS = {"chromium-page-visit": "browser-tab-get", "chromium-websocket": "chrome-handshake"}
"""Each browser scenario and the raw scenario that copies Chromium's request head."""


@pytest.fixture(scope="module")
def browser_matrix(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_browser_suite(tmp_path_factory.mktemp("browser"), list(load_topologies()))


def chromium_processes() -> list[str]:
    """Command lines of processes started with a lab Chromium profile."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "wslab-chromium-" in command:
                found.append(command[:120])
    return found


def test_chromium_tab_reproduces_the_seed_through_a_keepalive_proxy(browser_matrix: Run) -> None:
    cell = browser_matrix.cell("haproxy-default", "chromium-page-visit")
    assert cell.client.kind == "browser"
    assert cell.client.browser.product.startswith(("Chrome/", "HeadlessChrome/"))
    assert header_value(cell.client.sent.headers, "Connection") == "keep-alive"
    assert header_value(cell.client.sent.headers, "Sec-Fetch-Mode") == "navigate"
    page, favicon = cell.server
    assert header_value(page.request.headers, "Connection") is None
    assert page.error.text == "missing Connection header"
    assert cell.outcome == Outcome.FAIL and cell.diagnosis.rule == "plain-http-through-keepalive-proxy"
    # One visit, two handshake errors: Chromium's own /favicon.ico follows, tied to the cell by its Referer.
    assert favicon.request.path == "/favicon.ico"
    assert favicon.error.text == "missing Connection header"
    assert [r.sent.path for r in cell.client.browser.requests] == ["/", "/favicon.ico"]
    assert cell.client.received.status == 426


def test_chromium_websocket_passes_where_the_upgrade_is_carried(browser_matrix: Run) -> None:
    for topology in ("direct", "haproxy-default", "nginx-websocket"):
        cell = browser_matrix.cell(topology, "chromium-websocket")
        assert cell.outcome == Outcome.PASS, cell
        assert cell.client.close.code == 1000
        assert header_value(cell.server[0].request.headers, "Origin").startswith("http://127.0.0.1:")
        assert "1 of 1 messages echoed" in cell.client.steps[0].detail


def test_chromium_websocket_failures_carry_chromiums_own_words(browser_matrix: Run) -> None:
    envoy = browser_matrix.cell("envoy-default", "chromium-websocket")
    assert envoy.outcome == Outcome.FAIL and envoy.server == []
    assert envoy.client.received.status == 403
    assert "Error during WebSocket handshake: Unexpected response code: 403" in envoy.client.error
    assert envoy.diagnosis.rule == "proxy-rejected-upgrade"
    varnish = browser_matrix.cell("varnish-default", "chromium-websocket")
    assert varnish.server[0].error.text == "missing Connection header"
    assert varnish.diagnosis.rule == "proxy-removed-upgrade"
    h2c = browser_matrix.cell("cloudrun-h2c", "chromium-websocket")
    assert h2c.diagnosis.rule == "upstream-speaks-http2"
    assert header_value(h2c.server[0].http2_request.headers, ":protocol") == "websocket"


def test_raw_imitations_predict_real_chromium_everywhere(browser_matrix: Run, matrix: Run) -> None:
    """The default suites' raw requests are shaped after Chromium's (browser-headers.md); real
    Chromium checks them on every topology: same outcome, same status, same server error."""

    def seen(cell: Cell) -> tuple:
        errors = [c.error.text if c.error else None for c in cell.server[:1]]
        return cell.outcome, cell.summary, errors

    differ = [
        (
            cell.topology,
            cell.scenario,
            seen(cell),
            seen(matrix.cell(cell.topology, IMITATIONS[cell.scenario])),
        )
        for cell in browser_matrix.cells
        if seen(cell) != seen(matrix.cell(cell.topology, IMITATIONS[cell.scenario]))
    ]
    assert len(browser_matrix.cells) == 2 * len(load_topologies())
    assert differ == []


def test_html_pairs_each_connection_with_its_own_browser_request(browser_matrix: Run) -> None:
    cells = embedded_data(render_html(browser_matrix))["cells"]
    cell = next(
        c for c in cells if (c["topology"], c["scenario"]) == ("haproxy-default", "chromium-page-visit")
    )
    page, favicon = cell["server"]
    assert page["client_sent"]["path"] == "/" and favicon["client_sent"]["path"] == "/favicon.ico"
    assert favicon["client_received"]["status"] == 426
    removed = [d["name"] for d in favicon["header_diff"] if d["status"] == "removed"]
    assert removed == ["Connection"], "the favicon request is compared with its own request"


def test_results_match_the_schema(browser_matrix: Run) -> None:
    jsonschema.validate(browser_matrix.model_dump(mode="json"), RESULTS_SCHEMA)
    assert browser_matrix.components.browser.startswith(("Chrome/", "HeadlessChrome/"))
    assert chromium_processes() == [], "Chromium outlived the run"


def test_health_check_fix_answers_the_tab(tmp_path: Path) -> None:
    result = run_browser_suite(tmp_path, ["haproxy-default"], answer_plain_http=True)
    cell = result.cell("haproxy-default", "chromium-page-visit")
    assert cell.outcome == Outcome.PASS and cell.client.received.status == 200
    assert result.cell("haproxy-default", "chromium-websocket").outcome == Outcome.PASS


def test_missing_chromium_makes_cells_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    result = run_browser_suite(tmp_path, ["direct"])
    for cell in result.cells:
        assert cell.outcome == Outcome.UNAVAILABLE
        assert "apt-get install -y chromium" in cell.error


def test_ctrl_c_during_the_browser_suite_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "wslab", "run", "--suite", "browser", "--run-dir", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not chromium_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chromium_processes(), "Chromium never started"
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    assert chromium_processes() == []
    assert holders(run_dir) == []


def test_chromium_reaches_nothing_beyond_loopback() -> None:
    """Principle 6: a page (or Chromium itself) cannot resolve a name or reach an address outside."""

    async def visit_outside() -> list[str | None]:
        chromium = browser.Chromium()
        try:
            return [(await browser.visit(chromium, url, 5)).error for url in OUTSIDE]
        finally:
            await chromium.stop()

    # Everything not loopback goes to a proxy on 127.0.0.1:9, where nothing listens.
    assert asyncio.run(visit_outside()) == ["Chromium: net::ERR_PROXY_CONNECTION_FAILED"] * len(OUTSIDE)
    flags = browser.loopback_only({"app.example.org"})
    assert "EXCLUDE app.example.org" in flags[0] and flags[-1] == "--proxy-bypass-list=app.example.org"
