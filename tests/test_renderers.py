"""Every renderer on a run built by hand: they show what the records say and decide nothing.

No proxy and no Docker: the cells below are the seed's (a browser tab through a
keep-alive proxy) and a pass, as records.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest
from builders import CHROME_TAB, UPGRADE, connection, request, run_of, topology, transcript, without
from markdown_it import MarkdownIt
from rich.console import Console

from wslab import results
from wslab.diagnosis import diagnose
from wslab.evidence import Evidence
from wslab.records import STYLES, Cell, Outcome, Run, ScenarioRecord
from wslab.reports import terminal
from wslab.reports.html import render_html
from wslab.reports.junit import render_junit
from wslab.reports.markdown import render_markdown

pytestmark = pytest.mark.fast

SCENARIOS = [
    ScenarioRecord(id="websockets-echo", suite="handshake", title="echo"),
    ScenarioRecord(id="browser-tab-get", suite="platform-traffic", title="tab", tier="deployment"),
]


def seed_run() -> Run:
    tab = Evidence(
        transcript(request(CHROME_TAB), 426),
        [connection(request(without(CHROME_TAB, "Connection")), 426, "missing Connection header")],
    )
    echo = Evidence(transcript(request(UPGRADE), 101), [connection(request(UPGRADE), 101)])
    cells = [
        Cell(
            topology="haproxy-default",
            scenario="websockets-echo",
            suite="handshake",
            outcome=Outcome.PASS,
            summary="101",
            cell_id="c0",
            client=echo.transcript,
            server=echo.connections,
        ),
        Cell(
            topology="haproxy-default",
            scenario="browser-tab-get",
            suite="platform-traffic",
            outcome=Outcome.FAIL,
            summary="426",
            cell_id="c1",
            client=tab.transcript,
            server=tab.connections,
            diagnosis=diagnose(tab, topology(), []),
            proxy_log=['127.0.0.1 "GET /?wslab-cell=c1 HTTP/1.1" 426'],
        ),
    ]
    return run_of(cells, ["haproxy-default"], SCENARIOS)


def test_terminal_shows_each_cell_with_the_shared_symbols_and_the_cause_once() -> None:
    console = Console(record=True, width=120)
    terminal.render(seed_run(), console)
    text = console.export_text()
    assert f"{STYLES[Outcome.PASS].symbol} 101" in text and f"{STYLES[Outcome.FAIL].symbol} 426" in text
    assert "plain-http-through-keepalive-proxy" in text
    assert text.count("server error: missing Connection header") == 1
    assert "1 pass, 1 fail" in text


def test_markdown_is_one_table_with_the_legend_and_causes() -> None:
    page = render_markdown(seed_run())
    assert MarkdownIt("commonmark").enable("table").render(page).count("<table>") == 1
    assert "✗ 426" in page and "**plain-http-through-keepalive-proxy**" in page
    assert all(style.symbol in page for style in STYLES.values()), "the legend lists every outcome"


def test_junit_has_a_failure_per_failed_cell() -> None:
    root = ElementTree.fromstring(render_junit(seed_run()))
    cases = root.findall(".//testcase")
    assert [case.get("name") for case in cases] == [
        "handshake.websockets-echo",
        "platform-traffic.browser-tab-get",
    ]
    failure = cases[1].find("failure")
    assert failure is not None and "not a WebSocket client" in failure.get("message", "")
    assert "server error: InvalidUpgrade: missing Connection header" in (failure.text or "")


def test_html_carries_the_config_and_log_lines_from_the_records() -> None:
    html = render_html(seed_run())
    assert "events {}" in html
    assert "wslab-cell=c1" in html and '"proxy_log"' in html


def test_results_round_trip_through_json(tmp_path) -> None:
    run = seed_run()
    path = tmp_path / "r.json"
    results.write(run, path)
    assert results.load(path) == run
    assert json.loads(path.read_text())["format"] == "wslab.results/2"
