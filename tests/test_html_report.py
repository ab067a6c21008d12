"""The HTML report: self-contained, escaped, and its drill-down works in a real (headless) Chromium.

The browser test drives Debian's chromium through wslab.browser (the DevTools
protocol over the websockets library, no selenium or playwright) and saves a
screenshot of the drill-down to reports/screenshots/html-drilldown.png.
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

from wslab.browser import CHROMIUM, INSTALL_HINT, Chromium
from wslab.records import RequestHead, Run
from wslab.reports.html import header_diff, render_html, request_line_diff

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "reports" / "screenshots" / "html-drilldown.png"
VIEWPORT = {"width": 1440, "height": 1200, "deviceScaleFactor": 1, "mobile": False}


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

    columns = page.find("th", "data-topology")
    assert columns == [topology.name for topology in matrix.topologies]
    assert page.find("tr", "data-scenario") == [scenario.id for scenario in matrix.scenarios]
    assert len(page.find("button", "data-cell")) == len(matrix.cells)
    for name in columns + [scenario.id for scenario in matrix.scenarios]:
        assert name in html

    data = embedded_data(html)
    assert len(data["cells"]) == len(matrix.cells)
    assert set(data["topologies"]) == set(columns)


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

COLUMN_HIDDEN = """(() => {
  const th = document.querySelector('#matrix thead th[data-topology="haproxy-default"]');
  const td = document.querySelector('#matrix td[data-topology="haproxy-default"]');
  return [th.hidden && td.offsetParent === null, document.getElementById("topology-count").textContent];
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

            # The topology filter hides a column and shows it again.
            toggle = f"document.querySelector('.f-topology[value=\"{topology}\"]').click()"
            await tab.evaluate(toggle)
            assert await tab.evaluate(COLUMN_HIDDEN) == [True, f"{n - 1}/{n}"]
            await tab.evaluate(toggle)
            assert await tab.evaluate(COLUMN_HIDDEN) == [False, f"{n}/{n}"]

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


# 3. The header diff, and escaping of hostile evidence.


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
