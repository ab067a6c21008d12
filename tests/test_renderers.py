"""Every renderer on a run built by hand: they show what the records say and decide nothing.

No proxy and no Docker: the cells below are the seed's (a browser tab through a
keep-alive proxy) and a pass, as records.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ElementTree

import pytest
from builders import CHROME_TAB, UPGRADE, connection, request, run_of, topology, transcript, without
from markdown_it import MarkdownIt
from rich.console import Console

from wslab import fixes, results
from wslab.deployment_choice import Choice, Reason
from wslab.diagnosis import diagnose
from wslab.evidence import Evidence
from wslab.records import STYLES, Cell, Outcome, Run, ScenarioRecord
from wslab.reports import terminal
from wslab.reports.html import _distinct_reasons, render_html
from wslab.reports.junit import render_junit
from wslab.reports.markdown import render_markdown
from wslab.verdict import judge_run

pytestmark = pytest.mark.fast

SCENARIOS = [
    ScenarioRecord(id="websockets-echo", short="echo", suite="handshake", title="echo"),
    ScenarioRecord(
        id="browser-tab-get", short="tab", suite="platform-traffic", title="tab", tier="deployment"
    ),
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
    assert f"{STYLES[Outcome.PASS].symbol}101" in text and f"{STYLES[Outcome.FAIL].symbol}426" in text
    assert "plain-http-through-keepalive-proxy · 1 cell" in text
    assert text.count("server logged 'missing Connection header'") == 1
    assert "1 pass · 1 fail" in text
    assert "Carry WebSockets (1 of 1): haproxy-default." in text


def wide_run(topologies: int) -> Run:
    """The seed run's two scenarios through many topologies, plus one more cause with the same fix."""
    names = [f"proxy-number-{n:02d}" for n in range(topologies)]
    base = seed_run().cells
    cells = [cell.model_copy(update={"topology": name}) for name in names for cell in base]
    direct = Evidence(
        transcript(request(CHROME_TAB), 426),
        [connection(request(CHROME_TAB), 426, "invalid Connection header: keep-alive")],
    )
    cells[1] = cells[1].model_copy(
        update={"diagnosis": diagnose(direct, topology(), []), "server": direct.connections}
    )
    scenarios = SCENARIOS + [
        ScenarioRecord(id=f"extra-{n}", short=f"x{n}", suite="handshake", title=f"extra {n}")
        for n in range(12)
    ]
    for name in names:
        cells += [
            cell.model_copy(update={"topology": name, "scenario": f"extra-{n}"})
            for n, cell in enumerate([base[0]] * 12)
        ]
    return run_of(cells, names, scenarios)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_matrix_fits_the_width_and_wraps_into_blocks(width: int) -> None:
    console = Console(record=True, width=width)
    terminal.render(wide_run(20), console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    assert all(any(f"proxy-number-{n:02d}" in line for line in lines) for n in range(20)), "every name, whole"
    codes = {"echo", "tab", *(f"x{n}" for n in range(12))}
    headers = [line for line in lines if line.split() and set(line.split()) <= codes]
    assert len(headers) == (1 if width >= 100 else 2), (width, headers)


def test_a_fix_shared_by_two_causes_is_printed_once() -> None:
    console = Console(record=True, width=100)
    terminal.render(wide_run(3), console)
    text = console.export_text()
    assert text.count("def process_request") == 1
    assert (
        "fix: as for plain-http-through-keepalive-proxy above" in text
        or "fix: as for client-sent-no-upgrade above" in text
    )


@pytest.mark.parametrize("width", [80, 120])
def test_a_fix_program_copied_from_the_terminal_is_the_program(width: int) -> None:
    """Prose is wrapped to the width; a program's lines are not (a wrapped comment would not
    run), and at 80 columns they fit."""
    console = Console(record=True, width=width)
    terminal.render(seed_run(), console)
    lines = console.export_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip() == "import asyncio")
    end = next(n for n, line in enumerate(lines) if line.strip() == "asyncio.run(main())")
    copied = textwrap.dedent("\n".join(lines[start : end + 1])) + "\n"
    assert copied == fixes.ASYNCIO_PROGRAM
    compile(copied, "fix.py", "exec")
    assert max(len(line) for line in lines) <= width


def test_a_fix_written_over_several_lines_is_reflowed_and_its_code_kept() -> None:
    """A topology's fix is written with line ends of its YAML file (replit-static's): at 80
    columns its prose is one paragraph, not the file's lines each wrapped; code stays whole."""
    fix = (
        "fix: Static deployments run no server process: WebSockets are impossible there. Deploy the\n"
        "WebSocket server as Autoscale (most likely capped at Cloud Run's request timeout) or as a\n"
        "Reserved VM, with:\n"
        "    proxy_http_version 1.1;\n"
        "\n"
        "Then deploy\n"
        "again."
    )
    lines = [line.plain for line in terminal._code(fix, 80, "", "    ")]
    assert lines == [
        "    fix: Static deployments run no server process: WebSockets are impossible",
        "      there. Deploy the WebSocket server as Autoscale (most likely capped at",
        "      Cloud Run's request timeout) or as a Reserved VM, with:",
        "          proxy_http_version 1.1;",
        "",
        "      Then deploy again.",
    ]


def test_markdown_is_one_table_with_the_legend_and_causes() -> None:
    page = render_markdown(seed_run())
    assert MarkdownIt("commonmark").enable("table").render(page).count("<table>") == 1
    assert "✗426" in page and "**plain-http-through-keepalive-proxy**" in page
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


@pytest.mark.fast
def test_a_run_of_other_suites_makes_no_claim_about_carrying_websockets() -> None:
    """A faults or timeouts run plays no WebSocket client cell: the verdict says nothing rather
    than 'Carry WebSockets (0 of 0): none.'"""
    run = run_of([], ["direct"], [ScenarioRecord(id="stall-proxy-server", suite="faults", title="stall")])
    assert judge_run(run).sentences() == []


@pytest.mark.fast
def test_the_recommendation_band_gives_each_app_a_reason_of_its_own() -> None:
    same = Reason(text="real WebSocket clients pass (7/7)", rows=("real WebSocket clients",))
    billed = Reason(text="you pay for use, not while idle", rows=("cost",))
    choices = [
        Choice(app="a long-lived WebSocket app", option="replit-reserved-vm", label="VM", reasons=(same,)),
        Choice(app="a request/response app", option="replit-autoscale", label="AS", reasons=(same, billed)),
    ]
    assert _distinct_reasons(choices) == [
        "a long-lived WebSocket app: real WebSocket clients pass (7/7)",
        "a request/response app: you pay for use, not while idle",
    ]
