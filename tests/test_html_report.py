"""The HTML report: the answer first, a matrix that fits, self-contained, escaped, and its
drill-down works in a real (headless) Chromium.

The browser tests drive Debian's chromium through wslab.browser (the DevTools
protocol over the websockets library, no selenium or playwright) and save
screenshots under reports/screenshots/: the drill-down (html-drilldown.png,
1440x1200) and the first screen of a full run at 1280x800 (html-summary.png).
The fast tests read what html.py hands the template, on runs built by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from builders import CHROME_TAB, UPGRADE, connection, run_of, transcript, without
from builders import request as head

from wslab.browser import CHROMIUM, INSTALL_HINT, Chromium
from wslab.records import Cell, Diagnosis, Outcome, RequestHead, Run, ScenarioRecord
from wslab.reports.html import Marks, header_diff, matrix_layout, render_html, request_line_diff, summary_band
from wslab.verdict import GROUPS, judge_run

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "reports" / "screenshots"
SCREENSHOT = SCREENSHOTS / "html-drilldown.png"
VIEWPORT = {"width": 1440, "height": 1200, "deviceScaleFactor": 1, "mobile": False}
LAPTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}


class Page(HTMLParser):
    """Collects what the self-containment test needs from a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def find(self, tag: str, attribute: str) -> list[str]:
        return [attrs[attribute] for name, attrs in self.tags if name == tag and attribute in attrs]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def embedded_data(html: str) -> dict[str, Any]:
    start = html.index('<script type="application/json" id="wslab-data">')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


# 1. Self-contained, and every topology and scenario is in the matrix.


def test_html_is_self_contained(matrix: Run) -> None:
    html = render_html(matrix)
    page = parse(html)
    references = [
        (tag, name, value)
        for tag, attrs in page.tags
        for name, value in attrs.items()
        if name in ("src", "href", "action", "srcset", "poster", "data", "formaction", "xlink:href")
    ]
    remote = [ref for ref in references if "//" in ref[2] or ref[2].lower().startswith(("http:", "https:"))]
    assert not remote, f"references to external resources: {remote}"
    assert not [tag for tag, attrs in page.tags if tag == "script" and "src" in attrs]
    assert not [tag for tag, _ in page.tags if tag in ("link", "img", "iframe", "object", "embed")]
    css = "".join(page.styles)
    assert css.strip() and "url(" not in css and "@import" not in css

    rows = page.find("tr", "data-topology")
    assert rows == [topology.name for topology in judge_run(matrix).topologies], "grouped by role"
    assert sorted(rows) == sorted(topology.name for topology in matrix.topologies)
    assert page.find("th", "data-scenario") == [scenario.id for scenario in matrix.scenarios]
    assert len(page.find("button", "data-cell")) == len(matrix.cells)
    for name in rows + [scenario.id for scenario in matrix.scenarios]:
        assert name in html

    data = embedded_data(html)
    assert len(data["cells"]) == len(matrix.cells)
    assert set(data["topologies"]) == set(rows)


# 2. The drill-down in headless Chromium, over the DevTools protocol.


DRILL_STATE = """(() => {
  const drill = document.getElementById("drill");
  const rect = drill.getBoundingClientRect();
  const removed = [...drill.querySelectorAll(".hdr.removed")].filter((e) => e.offsetHeight > 0);
  const shown = !drill.hidden && getComputedStyle(drill).display !== "none";
  return {
    visible: shown && rect.width > 400 && rect.height > 400,
    text: drill.innerText,
    removed: removed.map((e) => e.querySelector(".hn").textContent),
    removedColour: removed.length ? getComputedStyle(removed[0]).backgroundColor : null,
    added: [...drill.querySelectorAll(".hdr.added .hn")].map((e) => e.textContent),
    hash: location.hash,
  };
})()"""

ROW_HIDDEN = """(() => {
  const tr = document.querySelector('#matrix tbody tr[data-topology="haproxy-default"]');
  const td = document.querySelector('#matrix td[data-topology="haproxy-default"]');
  return [tr.hidden && td.offsetParent === null, document.getElementById("topology-count").textContent];
})()"""


def test_drilldown_in_chromium(matrix: Run, tmp_path: Path) -> None:
    topology, scenario = "haproxy-default", "browser-tab-get"
    cell = matrix.cell(topology, scenario)
    assert cell.outcome == "fail" and cell.diagnosis, cell
    report = tmp_path / "report.html"
    report.write_text(render_html(matrix), encoding="utf-8")
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed ({CHROMIUM} missing): {INSTALL_HINT}")
    state, png, errors = asyncio.run(_drill_down(report, topology, scenario, len(matrix.topologies)))

    assert not errors, errors
    assert state["visible"], "the drill-down did not open"
    assert "missing Connection header" in state["text"]
    assert cell.diagnosis.cause in state["text"]
    assert cell.diagnosis.fix.splitlines()[1].strip() in state["text"]
    assert "Connection" in state["removed"], state["removed"]
    assert state["removedColour"] not in (None, "rgba(0, 0, 0, 0)")
    assert state["hash"] == f"#cell={topology}/{scenario}"
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000, f"screenshot only {len(png)} bytes"


async def _drill_down(report: Path, topology: str, scenario: str, n: int) -> tuple[dict, bytes, list]:
    """Open the report in the lab's own Chromium, try the filters, click the cell, take a screenshot."""
    browser = Chromium()
    try:
        async with browser.tab() as tab:
            await tab.call("Emulation.setDeviceMetricsOverride", VIEWPORT)
            await tab.call("Page.navigate", {"url": report.as_uri()})
            loaded = "location.protocol === 'file:' && document.readyState === 'complete'"
            deadline = time.monotonic() + 10
            while not await tab.evaluate(loaded):
                assert time.monotonic() < deadline, "the report did not load"
                await asyncio.sleep(0.05)

            # The topology filter hides a row and shows it again.
            toggle = f"document.querySelector('.f-topology[value=\"{topology}\"]').click()"
            await tab.evaluate(toggle)
            assert await tab.evaluate(ROW_HIDDEN) == [True, f"{n - 1}/{n}"]
            await tab.evaluate(toggle)
            assert await tab.evaluate(ROW_HIDDEN) == [False, f"{n}/{n}"]

            # Click the cell; the drill-down opens on its evidence.
            selector = f'td[data-topology="{topology}"][data-scenario="{scenario}"] button'
            assert await tab.evaluate(f"!!document.querySelector('{selector}')"), selector
            await tab.evaluate(f"document.querySelector('{selector}').click()")
            state = await tab.evaluate(DRILL_STATE)
            shot = await tab.call("Page.captureScreenshot", {"format": "png"})
            png = base64.b64decode(shot["data"])
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.write_bytes(png)
            await tab.wait_for(lambda events: False, 0.2)
            errors = tab.named("Runtime.exceptionThrown")
    finally:
        await browser.stop()
    return state, png, errors


# 3. A full run on a laptop's screen: the answer first, every topology without scrolling sideways.


FIRST_SCREEN = """(() => {
  const rect = (e) => e.getBoundingClientRect().toJSON();
  const rows = [...document.querySelectorAll("#matrix tbody tr[data-topology]")];
  const wrap = document.querySelector(".matrix-wrap");
  return {
    viewport: [document.documentElement.clientWidth, window.innerHeight],
    pageWidth: document.documentElement.scrollWidth,
    matrixOverflow: wrap.scrollWidth - wrap.clientWidth,
    rows: rows.map((tr) => ({
      name: tr.getAttribute("data-topology"),
      shown: tr.offsetParent !== null,
      left: tr.cells[0].getBoundingClientRect().left,
      right: tr.cells[tr.cells.length - 1].getBoundingClientRect().right,
      nameWidth: tr.cells[0].getBoundingClientRect().width,
      cellWidth: tr.cells[1].getBoundingClientRect().width,
    })),
    band: rect(document.getElementById("summary")),
    verdict: rect(document.querySelector("#verdict .headline")),
    firstCause: rect(document.querySelector("#causes .cause")),
    matrix: rect(document.getElementById("matrix")),
    details: [document.getElementById("run-details").open, rect(document.getElementById("run-details")).top],
    verdictText: document.getElementById("verdict").innerText,
  };
})()"""

MARKED = """(() => ({
  hits: document.querySelectorAll("#matrix td.hit").length,
  marking: document.getElementById("matrix").classList.contains("marking"),
  status: document.getElementById("mark-status").hidden ? null
    : document.getElementById("mark-label").textContent,
  rows: [...document.querySelectorAll("#matrix tbody tr[data-topology]")].filter((tr) => !tr.hidden).length,
}))()"""


def test_first_screen_at_1280_shows_the_answer_and_every_topology(matrix: Run, tmp_path: Path) -> None:
    """At 1280x800 the band opens the page, the run's metadata is folded away, and every
    topology's row fits the width: the page and the matrix never scroll sideways."""
    report = tmp_path / "report.html"
    report.write_text(render_html(matrix), encoding="utf-8")
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed ({CHROMIUM} missing): {INSTALL_HINT}")
    verdict = judge_run(matrix)
    cause = verdict.causes[0]
    layout, marked, png, errors = asyncio.run(_first_screen(report))

    assert not errors, errors
    width, height = layout["viewport"]
    assert width <= 1280 and height == 800
    assert layout["pageWidth"] <= width, "the page scrolls sideways"
    assert layout["matrixOverflow"] <= 0, "the matrix scrolls sideways"
    rows = layout["rows"]
    assert [row["name"] for row in rows] == [t.name for t in verdict.topologies]
    outside = [row for row in rows if not row["shown"] or row["left"] < 0 or row["right"] > width]
    assert not outside, outside
    assert layout["band"]["top"] < 800 and layout["band"]["top"] == 0, "the band comes first"
    assert layout["verdict"]["bottom"] <= 800 and layout["firstCause"]["bottom"] <= 800
    ran = [t for t in verdict.topologies if t.carries is not None]
    assert f"{len(verdict.carrying())} of {len(ran)}" in layout["verdictText"]
    assert layout["matrix"]["top"] < 800, "the matrix starts on the first screen"
    assert layout["details"][0] is False and layout["details"][1] > 800, "run details folded, further down"

    # A click on the first cause highlights its cells; a second click clears them.
    assert marked["on"]["hits"] == cause.count and marked["on"]["marking"]
    assert marked["on"]["status"].startswith(cause.rule)
    assert marked["only"]["rows"] == len(cause.cells), "hide the other topologies"
    assert marked["off"] == {"hits": 0, "marking": False, "status": None, "rows": len(rows)}
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


async def _first_screen(report: Path) -> tuple[dict, dict, bytes, list]:
    browser = Chromium()
    try:
        async with browser.tab() as tab:
            await tab.call("Emulation.setDeviceMetricsOverride", LAPTOP)
            await tab.call("Page.navigate", {"url": report.as_uri()})
            deadline = time.monotonic() + 10
            while not await tab.evaluate(
                "location.protocol === 'file:' && document.readyState === 'complete'"
            ):
                assert time.monotonic() < deadline, "the report did not load"
                await asyncio.sleep(0.05)
            layout = await tab.evaluate(FIRST_SCREEN)
            shot = await tab.call("Page.captureScreenshot", {"format": "png"})
            png = base64.b64decode(shot["data"])
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / "html-summary.png").write_bytes(png)
            size = await tab.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            whole = await tab.call(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
                },
            )
            (SCREENSHOTS / "html-report-1280.png").write_bytes(base64.b64decode(whole["data"]))

            button = "document.querySelector('#causes .cause .mark-btn')"
            await tab.evaluate(f"{button}.click()")
            marked = {"on": await tab.evaluate(MARKED)}
            await tab.evaluate("document.getElementById('f-marked').click()")
            marked["only"] = await tab.evaluate(MARKED)
            await tab.evaluate("document.getElementById('f-marked').click()")
            await tab.evaluate(f"{button}.click()")
            marked["off"] = await tab.evaluate(MARKED)
            await tab.wait_for(lambda events: False, 0.2)
            errors = tab.named("Runtime.exceptionThrown")
    finally:
        await browser.stop()
    return layout, marked, png, errors


# 4. The header diff, and escaping of hostile evidence.


@pytest.mark.fast
def test_header_diff_marks_added_removed_rewritten() -> None:
    sent = [
        ["Host", "example.test"],
        ["Connection", "Upgrade"],
        ["Upgrade", "websocket"],
        ["X-Twice", "1"],
        ["X-Twice", "2"],
        ["Sec-WebSocket-Version", "13"],
    ]
    received = [
        ["host", "example.test"],
        ["upgrade", "WebSocket"],
        ["X-Forwarded-For", "127.0.0.1"],
        ["x-twice", "1, 2"],
        ["SEC-WEBSOCKET-VERSION", "13"],
    ]
    rows = [(row["name"], row["status"], row["was"]) for row in header_diff(sent, received)]
    assert rows == [
        ("host", "same", None),
        ("upgrade", "rewritten", "websocket"),
        ("X-Forwarded-For", "added", None),
        ("x-twice", "same", None),
        ("SEC-WEBSOCKET-VERSION", "same", None),
        ("Connection", "removed", None),
    ]
    assert [row["value"] for row in header_diff(sent, received)][-1] == "Upgrade"
    assert [row["status"] for row in header_diff(sent, [])] == ["removed"] * len(sent)
    assert [row["status"] for row in header_diff(None, received)] == ["added"] * len(received)
    assert header_diff([], None) == []

    client = RequestHead(method="GET", target="/?a=1", path="/?a=1", version="HTTP/1.1")
    downgraded = client.model_copy(update={"version": "HTTP/1.0"})
    assert request_line_diff(client, downgraded) == {"version": "HTTP/1.1"}
    assert request_line_diff(client, client.model_copy()) == {}
    assert request_line_diff(client, None) == {}


HOSTILE = '</script><script>alert("x")</script><!--'


def _hostile_run() -> Run:
    sent = {
        "method": "GET",
        "target": "/",
        "path": "/",
        "version": "HTTP/1.1",
        "headers": [["X-Evil", HOSTILE]],
    }
    request = {**sent, "headers": [["x-evil", HOSTILE + "&amp;"]]}
    server = [
        {
            "listener": "t",
            "conn": 1,
            "cell": "abc",
            "opened_at": 1.0,
            "at": 1.0,
            "peer": ["127.0.0.1", 1],
            "bytes_received": 10,
            "raw_head": f"GET / HTTP/1.1\r\nx-evil: {HOSTILE}\r\n\r\n",
            "request": request,
            "response": None,
            "upgraded": False,
            "error": {"type": "InvalidUpgrade", "text": "<b>bold</b>", "cause": ""},
            "closed": None,
        }
    ]
    cells = [
        {
            "topology": "t",
            "scenario": "s1",
            "suite": "suite-a",
            "outcome": "fail",
            "summary": "<i>426</i>",
            "client": {"kind": "raw", "sent": sent},
            "server": server,
            "proxy_log": [f"GET /?wslab-cell=abc {HOSTILE}"],
        },
        {"topology": "t", "scenario": "s2", "suite": "suite-b", "outcome": "blocked", "summary": "blocked"},
        {"topology": "t", "scenario": "s3", "suite": "suite-b", "outcome": "informational", "summary": "?!"},
    ]
    return Run.model_validate(
        {
            "started_at": "2026-01-01T00:00:00+00:00",
            "duration": 1.0,
            "backend": "local",
            "options": {
                "concurrency": 1,
                "step_timeout": 5,
                "cell_timeout": 30,
                "settle": 1,
                "time_scale": 0.02,
            },
            "components": {
                "websockets_server": "17.4",
                "websockets_client": "17.4",
                "python": "3.11",
                "proxies": {},
            },
            "topologies": [{"name": "t", "title": "<t>", "status": "ready", "config": HOSTILE}],
            "scenarios": [
                {"id": "s1", "suite": "suite-a", "title": "one", "tier": "required"},
                {"id": "s2", "suite": "suite-b", "title": "two"},
                {"id": "s3", "suite": "suite-b", "title": "three", "tier": "informational"},
            ],
            "cells": cells,
        }
    )


@pytest.mark.fast
def test_hostile_evidence_is_escaped() -> None:
    html = render_html(_hostile_run())
    assert 'alert("x")' not in html and "<!--" not in html.split("<body>", 1)[1]
    assert html.count("<script") == 2 and "<b>bold</b>" not in html and "<i>426</i>" not in html
    assert "&lt;i&gt;426&lt;/i&gt;" in html
    data = embedded_data(html)
    cell = data["cells"][0]
    assert cell["client"]["sent"]["headers"] == [["X-Evil", HOSTILE]]
    assert [(r["status"], r["was"]) for r in cell["server"][0]["header_diff"]] == [("rewritten", HOSTILE)]
    assert data["topologies"]["t"]["config"] == HOSTILE
    assert cell["proxy_log"] == [f"GET /?wslab-cell=abc {HOSTILE}"]
    page = parse(html)
    outcomes = {attrs.get("data-outcome"): attrs["class"] for tag, attrs in page.tags if tag == "td"}
    assert outcomes == {"fail": "cell o-fail", "blocked": "cell o-blocked", "informational": "cell o-info"}
    assert "⊘" in html and "ℹ" in html
    tiers = ["required", "deployment", "informational"]
    assert page.find("input", "value") == ["suite-a", "suite-b", *tiers, "t"]


# 5. What html.py hands the template, on a run built by hand.

PLAIN_FIX = "Answer plain HTTP in process_request."
SCENARIOS = [
    ScenarioRecord(id="websockets-echo", short="echo", suite="handshake", title="echo"),
    ScenarioRecord(id="chrome-handshake", suite="handshake", title="no short code"),
    ScenarioRecord(id="browser-tab-get", short="tab", suite="platform-traffic", title="a tab"),
    ScenarioRecord(id="tcp-probe", short="tcp", suite="platform-traffic", tier="informational"),
    ScenarioRecord(id="subprotocol", short="sub", suite="handshake", tier="required"),
]
ROLES = {
    "cloudrun": "platform",
    "apache-default": "bare",
    "replit-static": "platform",
    "direct": "direct",
    "nginx-websocket": "websocket",
}


def _cell(topology: str, scenario: str, outcome: Outcome, summary: str, **fields: Any) -> Cell:
    suite = next(s.suite for s in SCENARIOS if s.id == scenario)
    return Cell(topology=topology, scenario=scenario, suite=suite, outcome=outcome, summary=summary, **fields)


def _upgrade(topology: str, scenario: str) -> Cell:
    sent = head(UPGRADE)
    return _cell(
        topology,
        scenario,
        Outcome.PASS,
        "101",
        client=transcript(sent, 101),
        server=[connection(sent, 101)],
    )


def _failed(topology: str, scenario: str, rule: str, fix: str, error: str | None, plain: bool) -> Cell:
    """A failed cell: a plain browser GET (``plain``) or an upgrade, with the server's error."""
    sent = head(CHROME_TAB if plain else UPGRADE)
    server = [connection(head(without(sent.headers, "Connection")), 426, error)] if error else []
    return _cell(
        topology,
        scenario,
        Outcome.FAIL,
        "426" if error else "404",
        client=transcript(sent, 426 if error else 404),
        server=server,
        diagnosis=Diagnosis(rule=rule, cause=f"{rule} in {topology}", fix=fix),
    )


def hand_run() -> Run:
    """Five topologies out of role order: two carry WebSockets, two do not, one cell each
    of a lab error, not measured, blocked and not run."""
    tab, echo, chr_, tcp = "browser-tab-get", "websockets-echo", "chrome-handshake", "tcp-probe"
    keep_alive, plain = "invalid Connection header: Keep-Alive", "plain-http-through-keepalive-proxy"
    direct_keep_alive = "invalid Connection header: keep-alive"  # the browser's own, not Apache's
    rewrote, no_upgrade = "proxy-rewrote-connection", "missing Upgrade header"
    cells = [
        _upgrade("direct", echo),
        _upgrade("direct", chr_),
        _failed("direct", tab, "client-sent-no-upgrade", PLAIN_FIX, direct_keep_alive, True),
        _cell("direct", tcp, Outcome.PASS, "open"),
        _failed("apache-default", echo, "proxy-removed-upgrade", "ProxyPass upgrade=ws", keep_alive, False),
        _cell("apache-default", chr_, Outcome.BLOCKED, "426"),
        _failed("apache-default", tab, "proxy-rewrote-connection", PLAIN_FIX, keep_alive, True),
        _cell("apache-default", tcp, Outcome.PASS, "open"),
        _upgrade("nginx-websocket", echo),
        _upgrade("nginx-websocket", chr_),
        _failed("nginx-websocket", tab, rewrote, PLAIN_FIX, no_upgrade, True),
        _cell("nginx-websocket", tcp, Outcome.PASS, "open 150s"),
        _failed("replit-static", echo, "proxy-rejected-upgrade", "Not on Static.", None, False),
        _failed("replit-static", chr_, "proxy-rejected-upgrade", "Not on Static.", None, False),
        _cell("replit-static", tab, Outcome.PASS, "200"),
        _cell("replit-static", tcp, Outcome.ERROR, "error", error="the probe <b>died</b>"),
        _upgrade("cloudrun", echo),
        _upgrade("cloudrun", chr_),
        _failed("cloudrun", tab, plain, PLAIN_FIX, "missing Connection header", True),
        _cell("cloudrun", tcp, Outcome.NOT_MEASURED, "not measured", error="a 3600 s limit"),
    ]
    run = run_of(cells, list(ROLES), SCENARIOS)
    for topology in run.topologies:
        topology.role = ROLES[topology.name]  # type: ignore[assignment]
    return run


def _marked(run: Run, marks: Marks, number: int | None) -> set[tuple[str, str]]:
    assert number is not None
    return {(run.cells[i].topology, run.cells[i].scenario) for i in marks.sets[number]}


@pytest.mark.fast
def test_band_gives_the_verdict_in_parts_with_the_cells_to_highlight() -> None:
    run = hand_run()
    marks = Marks(run)
    band = summary_band(run, judge_run(run), marks)
    assert (band["ran"], band["carrying"]["count"], band["not_carrying"]) == (5, 3, 2)
    assert [(g["role"], g["names"], g["of"]) for g in band["carrying"]["groups"]] == [
        ("direct", ["direct"], 1),
        ("websocket", ["nginx-websocket"], 1),
        ("platform", ["cloudrun"], 2),
    ], "by role, in GROUPS' order, with how many of the role were judged"
    assert [g["title"] for g in band["carrying"]["groups"]] == [
        GROUPS["direct"],
        GROUPS["websocket"],
        GROUPS["platform"],
    ]
    carrying = {
        (t, s)
        for t in ("direct", "nginx-websocket", "cloudrun")
        for s in ("websockets-echo", "chrome-handshake")
    }
    assert _marked(run, marks, band["carrying"]["mark"]) == carrying, "their WebSocket clients' cells"
    assert [(w["how"], w["names"]) for w in band["failing"]] == [
        ("strip the upgrade", ["apache-default"]),
        ("refuse the upgrade themselves", ["replit-static"]),
    ]
    plain = {item["error"]: item for item in band["plain_http"]}
    assert plain["invalid Connection header: Keep-Alive"]["names"] == ["apache-default"]
    assert _marked(run, marks, plain["invalid Connection header: Keep-Alive"]["mark"]) == {
        ("apache-default", "browser-tab-get")
    }, "the plain request only, not the upgrade that got the same error"
    assert set(plain) == {
        "invalid Connection header: keep-alive",
        "invalid Connection header: Keep-Alive",
        "missing Upgrade header",
        "missing Connection header",
    }
    assert band["not_judged"] == []
    assert band["sentences"][0].startswith("Carry WebSockets (3 of 5)")


@pytest.mark.fast
def test_band_folds_causes_with_counts_and_gives_a_shared_fix_once() -> None:
    run = hand_run()
    marks = Marks(run)
    causes = summary_band(run, judge_run(run), marks)["causes"]
    by_rule = {cause["rule"]: cause for cause in causes}
    rewrote = by_rule["proxy-rewrote-connection"]
    assert (rewrote["count"], rewrote["topologies"], rewrote["kind"], rewrote["symbol"]) == (
        2,
        2,
        "fail",
        "✗",
    )
    assert rewrote["server_errors"] == ["invalid Connection header: Keep-Alive", "missing Upgrade header"]
    assert rewrote["where"] == [
        {"topology": "apache-default", "scenarios": ["tab"]},
        {"topology": "nginx-websocket", "scenarios": ["tab"]},
    ], "scenarios by their short code"
    assert by_rule["proxy-rejected-upgrade"]["where"] == [
        {"topology": "replit-static", "scenarios": ["echo", "chrome-handshake"]}
    ], "the id when a scenario has no short code"
    assert _marked(run, marks, rewrote["mark"]) == {
        ("apache-default", "browser-tab-get"),
        ("nginx-websocket", "browser-tab-get"),
    }
    shared = [cause for cause in causes if cause["fix"] == PLAIN_FIX]
    assert len(shared) == 3 and shared[0] is rewrote, "the most cells first"
    assert shared[0]["fix_as"] is None
    assert [cause["fix_as"] for cause in shared[1:]] == [rewrote["rule"]] * 2
    lab, unmeasured = causes[-2:]
    assert (lab["kind"], lab["rule"], lab["cause"], lab["count"]) == (
        "error",
        "lab-error",
        "the probe <b>died</b>",
        1,
    )
    assert (unmeasured["kind"], unmeasured["count"], unmeasured["cause"]) == (
        "not-measured",
        1,
        "a 3600 s limit",
    )
    assert _marked(run, marks, unmeasured["mark"]) == {("cloudrun", "tcp-probe")}


@pytest.mark.fast
def test_matrix_puts_topologies_down_by_role_and_scenarios_across_by_short_code() -> None:
    run = hand_run()
    run.cells = [c for c in run.cells if (c.topology, c.scenario) != ("direct", "tcp-probe")]
    layout = matrix_layout(run, judge_run(run))
    assert [(g["role"], [r["topology"]["name"] for r in g["rows"]]) for g in layout["groups"]] == [
        ("direct", ["direct"]),
        ("bare", ["apache-default"]),
        ("websocket", ["nginx-websocket"]),
        ("platform", ["cloudrun", "replit-static"]),
    ]
    assert [g["title"] for g in layout["groups"]] == list(GROUPS.values())
    assert [c["short"] for c in layout["columns"]] == ["echo", "chrome-handshake", "tab", "tcp", "sub"]
    assert layout["suites"] == [
        {"suite": "handshake", "span": 2},
        {"suite": "platform-traffic", "span": 2},
        {"suite": "handshake", "span": 1},
    ], "consecutive runs of a suite, as the columns come"
    assert [c["band"] for c in layout["columns"]] == [0, 0, 1, 1, 2]
    rows = {r["topology"]["name"]: r for g in layout["groups"] for r in g["rows"]}
    assert [rows[n]["carries"] for n in ("direct", "apache-default", "replit-static")] == [True, False, False]
    nginx = rows["nginx-websocket"]["cells"]
    assert (nginx[3]["summary"], nginx[3]["short"], nginx[3]["symbol"]) == ("open 150s", "open", "✓")
    assert run.cells[nginx[3]["index"]].scenario == "tcp-probe"
    assert rows["direct"]["cells"][3] == {"index": None, "scenario": "tcp-probe"}, "not run"
    assert rows["direct"]["cells"][4]["index"] is None, "a scenario no cell ran"


@pytest.mark.fast
def test_page_opens_on_the_band_and_folds_the_run_details() -> None:
    html = render_html(hand_run())
    body = html.split("<body>", 1)[1]
    order = [body.index(marker) for marker in ('id="summary"', 'id="verdict"', 'id="causes"', 'id="matrix"')]
    assert order == sorted(order), "band, verdict, causes, then the matrix"
    details = body.index('<details class="run-details"')
    assert details > order[-1] and body.index("<h2>Components</h2>") > details, "metadata folded, last"
    assert body.index("<h2>Options</h2>") > details and "concurrency" in body[details:]
    assert 'id="recommendation"' not in body, "no recommendation slot without one"
    assert "the probe &lt;b&gt;died&lt;/b&gt;" in body and "<b>died</b>" not in body
    page = parse(html)
    assert page.find("tbody", "data-role") == ["direct", "bare", "websocket", "platform"]
    assert [m for m in page.find("button", "data-mark") if m], "causes and verdict parts can highlight"
    data = embedded_data(html)
    assert all(isinstance(i, int) for cells in data["marks"] for i in cells)


@pytest.mark.fast
def test_recommendation_slot_shows_plain_text_when_given() -> None:
    run = hand_run()
    html = render_html(run, recommendation=["Deploy on <b>Reserved VM</b>", "It keeps connections open."])
    body = html.split("<body>", 1)[1]
    slot = body[body.index('id="recommendation"') : body.index('id="verdict"')]
    assert (
        "Deploy on &lt;b&gt;Reserved VM&lt;/b&gt;" in slot and "<li>It keeps connections open.</li>" in slot
    )
    assert body.index('id="recommendation"') < body.index('id="matrix"')
    assert "Use cloudrun." in render_html(run, recommendation="Use cloudrun.")


@pytest.mark.fast
def test_band_says_so_when_no_websocket_client_ran() -> None:
    html = render_html(run_of([], ["t"], [ScenarioRecord(id="hold", suite="timeouts")]))
    assert "No topology was judged" in html and "0 of 0" not in html
    assert "No cell failed." in html


@pytest.mark.fast
def test_a_lifecycle_run_says_where_each_event_kept_or_closed_the_websocket() -> None:
    from builders import lived_through

    def lived(topology: str, closed_after: float | None, code: int | None = None) -> Cell:
        evidence = lived_through(closed_after=closed_after, code=code)
        return Cell(
            topology=topology,
            scenario="proxy-reload",
            suite="lifecycle",
            outcome=Outcome.PASS if closed_after is None else Outcome.FAIL,
            summary="kept",
            client=evidence.transcript,
        )

    scenario = ScenarioRecord(id="proxy-reload", suite="lifecycle", title="proxy config reload")
    cells = [lived("nginx", None), lived("caddy", 0.1, 1001), lived("haproxy", None)]
    cells.append(
        Cell(
            topology="envoy", scenario="proxy-reload", suite="lifecycle", outcome=Outcome.FAIL, summary="403"
        )
    )
    run = run_of(cells, ["nginx", "caddy", "haproxy", "envoy"], [scenario])
    said = "Proxy config reload: kept (2): nginx, haproxy; closed with 1001 (1): caddy."
    assert judge_run(run).sentences() == [said]
    html = render_html(run)
    assert said in html and "No topology was judged" not in html
