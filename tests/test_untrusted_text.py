"""Untrusted text in every output: terminal, `wslab up` lines, logs, Markdown pages, JUnit, HTML.

Everything in a cell's evidence comes from the network or from someone's files.
The run below carries every hostile form we know of in every place evidence
lives (header names and values, targets, raw heads, the server's error texts,
diagnosis causes, proxy log lines, scenario ids and titles, topology names and
details, the client's errors). Each output must show it as visible text and
let it do nothing: no escape sequence reaches a terminal, no HTML, link or
image comes out of Markdown, the JUnit document parses and validates.

The last two tests are end to end: a raw socket sends escape sequences to a
real `wslab up`, and `wslab run` plays a scenario whose header value (quoted
by websockets in its error) carries markup, HTML and Markdown. Scenario files
cannot carry control characters (wslab/safe_yaml.py refuses them), hence the
socket.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import xmlschema
from builders import UPGRADE, connection, run_of, transcript
from markdown_it import MarkdownIt
from rich.console import Console
from rich.markdown import Markdown

from wslab import results
from wslab.deployment_choice import (
    Cause,
    Choice,
    Comparison,
    Limit,
    Option,
    Reason,
    Recommendation,
    Seen,
    Traffic,
    compare,
)
from wslab.explain import explain
from wslab.observations import Closing, Hello, Observed
from wslab.probe.standalone import describe
from wslab.probe.text import printable
from wslab.records import (
    Cell,
    Check,
    Closed,
    DeploymentStatus,
    Diagnosis,
    Fact,
    Outcome,
    RequestHead,
    Run,
    ScenarioRecord,
    StreamRequest,
    TopologyRecord,
)
from wslab.reports import deployment_choice as compare_page
from wslab.reports import explain as explain_page
from wslab.reports import terminal
from wslab.reports.html import render_html
from wslab.reports.junit import render_junit
from wslab.reports.markdown import render_markdown
from wslab.reports.safe_text import markdown_block, markdown_code, markdown_text, xml_text

ROOT = Path(__file__).resolve().parent.parent

ESCAPES = [
    "\x1b[2J",  # clear the screen
    "\x1b[31m",  # SGR: red
    "\x1b]0;pwned\x07",  # OSC 0: the window title
    "\x1b]8;;http://evil.invalid/\x1b\\click me\x1b]8;;\x1b\\",  # OSC 8: a hidden hyperlink
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
    "\x9b2J",  # C1 CSI: an 8-bit escape
    "\x9d0;pwned\x9c",  # C1 OSC ... ST
]
OTHERS = [
    "\u202eevil\u202c",  # right-to-left override
    "\u2066isolate\u2069",
    "nul\x00byte",
    "carriage\rreturn",
    "forged\nline",
    "<script>alert(1)</script>",
    "</script>",
    "]]>",
    "<img src=x onerror=alert(1)>",
    "[red]x[/red]",
    "[link=http://evil.invalid/]y[/link]",
    "a|b",
    "``` `code` ```",
    "![x](http://evil.invalid/i.png)",
    "[click](http://evil.invalid/)",
    "<http://evil.invalid/>",
    "&lt;b&gt;",
    "*em* _em_ ~~del~~",
]
HOSTILE = " ".join(ESCAPES + OTHERS)
BIG = "A" * 2048 + "\x1b[2J" + "B" * 16
"""A 2 KB header value with an escape sequence at its end."""

TOPOLOGY = "topo" + HOSTILE
DOWN = "down\x1b[2J[red]"
SCENARIO = "scenario" + HOSTILE

UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""Every code point no output may carry raw (newline aside)."""
RICH_SGR = re.compile("\x1b\\[[0-9;]*m")
"""rich's own colours, when it writes to a terminal."""


def hostile_request() -> RequestHead:
    headers = [*UPGRADE, ("X-Evil", HOSTILE), (f"X-{HOSTILE}", "name"), ("X-Big", BIG)]
    return RequestHead(
        method="GET",
        target=f"/{HOSTILE}?wslab-cell=c1",
        path=f"/{HOSTILE}",
        version="HTTP/1.1",
        headers=headers,
    )


def hostile_run() -> Run:
    sent = hostile_request()
    server = connection(
        sent, 400, f"invalid header value: {HOSTILE}", cause=f"ValueError: {HOSTILE}"
    ).model_copy(update={"raw_head": f"GET /{HOSTILE} HTTP/1.1\r\nX-Evil: {HOSTILE}\r\n\r\n"})
    client = transcript(sent, 400, error=f"net::ERR_{HOSTILE}")
    failed = Cell(
        topology=TOPOLOGY,
        scenario=SCENARIO,
        suite="suite" + HOSTILE,
        outcome=Outcome.FAIL,
        summary="400 " + HOSTILE,
        cell_id="c1",
        client=client,
        server=[server],
        checks=[Check(name="status", expected=101, actual=HOSTILE, ok=False)],
        diagnosis=Diagnosis(
            rule="rule" + HOSTILE,
            cause=f"# The server rejected it: '{HOSTILE}'.",
            fix=f"Read the server's error ```{HOSTILE}```\nthen fix the proxy.",
        ),
        proxy_log=[f'127.0.0.1 "GET /{HOSTILE} HTTP/1.1" 400 {HOSTILE}'],
        log_tail=f"proxy says {HOSTILE}\nand {BIG}",
    )
    errored = Cell(
        topology=DOWN,
        scenario=SCENARIO,
        suite="suite",
        outcome=Outcome.ERROR,
        summary="error",
        error=f"proxy died: {HOSTILE}",
        log_tail=f"last words {HOSTILE}",
    )
    scenarios = [ScenarioRecord(id=SCENARIO, suite="suite", title="title " + HOSTILE)]
    run = run_of([failed, errored], [TOPOLOGY, DOWN], scenarios)
    run.topologies[0].platform = "platform " + HOSTILE
    run.topologies[1] = TopologyRecord(
        name=DOWN, status=DeploymentStatus.FAILED, detail=f"cannot start: {HOSTILE}", log_tail=HOSTILE
    )
    run.components.proxies = {"nginx": "1.22 " + HOSTILE}
    return run


def unsafe_in(text: str) -> list[str]:
    return UNSAFE.findall(text)


# 1. The escaping functions.


@pytest.mark.fast
def test_printable_shows_every_control_as_a_visible_escape() -> None:
    assert printable("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert printable("\r\n\t\x00\x7f\x9b") == "\\r\\n\\t\\x00\\x7f\\x9b"
    assert printable("\u202e\u2066\u200f\u2028\ud800\ufffe") == "\\u202e\\u2066\\u200f\\u2028\\ud800\\ufffe"
    assert printable("line\n\tindented\r\n", multiline=True) == "line\n\tindented\\r\n"
    plain = "GET /chat?a=b HTTP/1.1 — é 中 \\x1b [red] <b> \u200b"
    assert printable(plain) == plain, "everything else stays as it is"
    assert unsafe_in(printable(HOSTILE + BIG)) == []


@pytest.mark.fast
def test_xml_text_holds_only_what_xml_allows() -> None:
    allowed = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
    every = "".join(chr(code) for code in range(0x10000))
    assert allowed.match(xml_text(every))
    assert "\n" not in xml_text("a\nb", multiline=False)


@pytest.mark.fast
@pytest.mark.parametrize("text", OTHERS + ESCAPES + [HOSTILE, "1. item", "# heading", "    code", "- item"])
def test_markdown_text_renders_as_the_same_text(text: str) -> None:
    """At the start of a line or after other text: one paragraph of plain text, the text itself."""
    for line in (markdown_text(text), f"before {markdown_text(text)}"):
        tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(line)
        assert [token.type for token in tokens] == ["paragraph_open", "inline", "paragraph_close"]
        children = tokens[1].children or []
        assert {child.type for child in children} == {"text"}
        assert "".join(child.content for child in children) == line.replace(
            markdown_text(text), printable(text)
        )


@pytest.mark.fast
@pytest.mark.parametrize("text", ["a`b", "``x`", "`", " s ", "<script>", "x|y", HOSTILE, ""])
def test_markdown_code_is_one_code_span_whatever_it_holds(text: str) -> None:
    tokens = MarkdownIt("commonmark").parseInline(markdown_code(text))[0].children
    assert [token.type for token in tokens] == ["code_inline"]
    assert tokens[0].content == (printable(text) or " ")


@pytest.mark.fast
def test_markdown_block_cannot_be_closed_from_inside() -> None:
    lines = markdown_block(f"one\n```\n{HOSTILE}\n````", indent="  ")
    tokens = [t for t in MarkdownIt("commonmark").parse("\n".join(lines)) if t.type == "fence"]
    assert len(tokens) == 1 and "````" in tokens[0].content and unsafe_in(tokens[0].content) == []


# 2. The terminal report.


def terminal_output(run: Run, force_terminal: bool) -> str:
    stream = io.StringIO()
    colours = "truecolor" if force_terminal else None
    console = Console(file=stream, width=200, force_terminal=force_terminal, color_system=colours)
    terminal.render(run, console)
    return stream.getvalue()


@pytest.mark.fast
def test_terminal_report_writes_no_control_from_the_evidence(tmp_path: Path) -> None:
    recorder = Console(record=True, width=200, file=io.StringIO())
    terminal.render(hostile_run(), recorder)
    text = recorder.export_text()
    assert unsafe_in(text) == []
    assert "\\x1b]0;pwned\\x07" in text and "\\u202eevil" in text and "nul\\x00byte" in text
    assert "[red]x[/red]" in text and "[link=http://evil.invalid/]y[/link]" in text, (
        "markup shown, not applied"
    )
    assert "\\x1b[2J[red]" in text, "the failed topology's name"
    assert unsafe_in(terminal_output(hostile_run(), force_terminal=False)) == []
    # On a terminal rich adds its own colours (SGR); nothing else may start with ESC.
    coloured = terminal_output(hostile_run(), force_terminal=True)
    assert "\x1b" in coloured and unsafe_in(RICH_SGR.sub("", coloured)) == []
    # Raw bytes, through a real file.
    path = tmp_path / "terminal.txt"
    with path.open("w", encoding="utf-8") as file:
        terminal.render(hostile_run(), Console(file=file, width=200))
    data = path.read_bytes()
    assert (
        re.search(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]", data)
        is None
    )


@pytest.mark.fast
def test_diff_and_regressions_show_names_as_text(tmp_path: Path) -> None:
    from wslab.commands.run import _verdict, diff_command

    old, new = hostile_run(), hostile_run()
    old.cells[0].outcome = Outcome.PASS
    paths = [tmp_path / "old.json", tmp_path / "new.json"]
    for run, path in zip((old, new), paths, strict=True):
        results.write(run, path)
    console = Console(record=True, width=400, file=io.StringIO())
    diff_command(argparse.Namespace(old=paths[0], new=paths[1]), console)
    _verdict(new, old, console)
    text = console.export_text()
    assert unsafe_in(text) == [] and text.count("[red]x[/red]") == 7 and "\\x1b[2J" in text


# 3. What `wslab up` / `wslab watch` print, and the probe server's own log lines.


@pytest.mark.fast
def test_up_and_watch_lines_escape_every_part_of_the_request() -> None:
    from wslab.commands.serve import describe_event

    sent = hostile_request()
    conn = connection(sent, 400, f"invalid header value: {HOSTILE}").model_copy(update={"listener": TOPOLOGY})
    stream = StreamRequest(
        stream=1, method="GET", target=HOSTILE, path=HOSTILE, version="HTTP/2", headers=sent.headers
    )
    lines = describe_event(Observed(conn, [stream])).split("\n")
    assert len(lines) == 1 + len(sent.headers) + 1 + len(sent.headers), "one line per header, none forged"
    assert all(unsafe_in(line) == [] for line in lines)
    assert "X-Evil: " + printable(HOSTILE) in lines[len(UPGRADE) + 1]
    closing = Closing((TOPOLOGY, 1), Closed(at=1.0, code=1000, closed_by=HOSTILE))
    for event in (Hello(HOSTILE), closing):
        assert unsafe_in(describe_event(event)) == [] and "\\x1b" in describe_event(event)


@pytest.mark.fast
def test_probe_server_log_line_is_escaped() -> None:
    entry = hostile_run().cells[0].server[0].model_dump(mode="json")
    line = describe(entry)
    assert unsafe_in(line) == [] and "\\x1b[2J" in line and "\n" not in line


# 4. Markdown: the summary, the explain page and the compare page.


def rendered(page: str) -> str:
    html = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(page)
    for tag in ("<script", "<img", "<a ", "</script", "<b>", "<em>", "<del>", "<s>"):
        assert tag not in html, tag
    assert unsafe_in(html) == []
    return html


def in_terminal(page: str) -> str:
    """The page as `wslab explain` and `wslab compare` show it (rich Markdown), on a terminal."""
    stream = io.StringIO()
    Console(file=stream, width=200, force_terminal=True, color_system="truecolor").print(Markdown(page))
    output = stream.getvalue()
    assert unsafe_in(RICH_SGR.sub("", output)) == [], "no hyperlink (OSC 8) nor any other escape"
    return output


@pytest.mark.fast
def test_markdown_summary_injects_no_html_link_image_or_column() -> None:
    page = render_markdown(hostile_run())
    html = rendered(page)
    assert html.count("<table>") == 1
    rows = re.findall("<tr>(.*?)</tr>", html, re.S)
    widths = {row.count("<th>") + row.count("<td>") for row in rows}
    assert widths == {len(hostile_run().scenarios) + 1}, "no '|' adds a column"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "![x](http://evil.invalid/i.png)" in html
    assert "\\x1b]0;pwned\\x07" in html
    fences = [t for t in MarkdownIt("commonmark").parse(page) if t.type == "fence"]
    assert len(fences) == 1 and "then fix the proxy." in fences[0].content, "the fix block is whole"
    in_terminal(page)


@pytest.mark.fast
def test_explain_page_quotes_the_evidence_as_text() -> None:
    run = hostile_run()
    answer = explain(run, f"invalid header value: {ESCAPES[0]} {ESCAPES[1]} {ESCAPES[2]}")
    assert answer.causes, "the hostile error matches itself"
    page = explain_page.render_markdown(answer)
    html = rendered(page)
    assert "<code>" + "GET /" in html and "\\x1b[2J" in html
    assert html.count("<h2>") == 1 and html.count("<h3>") == len(answer.causes), (
        "no heading from the evidence"
    )
    in_terminal(page)
    nothing = explain_page.render_markdown(explain(run, f"no such error {HOSTILE}"))
    rendered(nothing)
    in_terminal(nothing)


@pytest.mark.fast
def test_compare_page_quotes_the_evidence_as_text() -> None:
    run = hostile_run()
    comparison = compare(run, run, extra=(TOPOLOGY,))
    assert [option.name for option in comparison.options] == [TOPOLOGY]
    page = compare_page.render_markdown(comparison)
    html = rendered(page)
    assert "platform " in html and "\\u202eevil" in html
    in_terminal(page)
    seen = Seen(Outcome.FAIL, HOSTILE, HOSTILE)
    option = Option(
        name=HOSTILE,
        label=HOSTILE,
        platform=HOSTILE,
        carries=False,
        clients_passed=0,
        clients_total=1,
        clients_failed=seen,
        traffic={"browser-tab-get": Traffic(seen, Seen(Outcome.PASS, HOSTILE))},
        limits={
            "idle-without-pings": Limit(
                Seen(Outcome.INFORMATIONAL, HOSTILE),
                held=150,
                configured=60,
                parameter=HOSTILE,
                source=HOSTILE,
                status="documented",
                expected=60,
                measured=150,
            ),
            "lifetime-with-pings": Limit(Seen(Outcome.BLOCKED, HOSTILE), held=400),
        },
        facts={"cost": Fact(value=HOSTILE, status="assumed", source=HOSTILE, holds=True)},
        causes=[Cause(HOSTILE, 1, 0)],
    )
    reason = Reason(HOSTILE, (HOSTILE, HOSTILE))
    recommendation = Recommendation((Choice(HOSTILE, HOSTILE, HOSTILE, (reason,)),), (reason,))
    page = compare_page.render_markdown(Comparison([option], [HOSTILE], recommendation, HOSTILE, 1))
    html = rendered(page)
    assert re.findall("<tr>(.*?)</tr>", html, re.S)[0].count("<th>") == 2
    assert "Measured limits that disagree" in html, "the hostile limit disagrees, loudly"
    in_terminal(page)


# 5. JUnit and HTML.


@pytest.mark.fast
def test_junit_parses_validates_and_keeps_the_text_visible() -> None:
    xml = render_junit(hostile_run())
    root = ElementTree.fromstring(xml)
    xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd").validate(xml)
    failure = root.find(".//failure")
    assert failure is not None
    assert "\\x1b]0;pwned\\x07" in failure.get("message", "") and "<script>" in failure.get("message", "")
    assert "]]>" in (failure.text or "") and "nul\\x00byte" in (failure.text or "")
    names = [case.get("name", "") for case in root.iter("testcase")]
    assert all("\n" not in name and unsafe_in(name) == [] for name in names)
    assert unsafe_in(xml.replace("\n", " ")) == []


@pytest.mark.fast
def test_html_keeps_the_evidence_exact_and_inert() -> None:
    html = render_html(hostile_run())
    assert html.count("<script") == 2 and "<script>alert" not in html and "<img src=x" not in html
    start = html.index('<script type="application/json" id="wslab-data">')
    data = html[start : html.index("</script>", start)]
    assert "</script" not in data and "]]>" not in data
    decoded = json.loads(data[data.index(">") + 1 :])
    assert ["X-Evil", HOSTILE] in decoded["cells"][0]["client"]["sent"]["headers"], (
        "the drill-down shows it all"
    )


# 6. End to end: a real request with an escape sequence, through `wslab up`.


def _read_until(process: subprocess.Popen, pattern: bytes, deadline: float) -> bytes:
    assert process.stdout is not None
    output = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
            if re.search(pattern, output):
                return output
    raise AssertionError(f"no {pattern!r} in {output!r}")


def test_wslab_up_prints_a_hostile_request_escaped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "wslab", "up", "-t", "direct"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "400"},
    )
    try:
        deadline = time.monotonic() + 60
        output = _read_until(process, rb"ws://[0-9.]+:\d+", deadline)
        host, port = re.search(rb"ws://([0-9.]+):(\d+)", output).groups()  # type: ignore[union-attr]
        request = (
            b"GET /\x1b]0;pwned\x07?x=\x9b2J HTTP/1.1\r\n"
            b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"X-Evil: \x1b[2J\x1b]8;;http://evil.invalid/\x1b\\click\x1b]8;;\x1b\\\r\n"
            b"X-Bidi: \xe2\x80\xaeevil\r\n"
            b"\r\n"
        )
        with socket.create_connection((host.decode(), int(port)), timeout=10) as raw:
            raw.sendall(request)
            raw.settimeout(10)
            raw.recv(4096)
        output += _read_until(process, rb"X-Bidi: [^\n]*\n", deadline)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    output += rest
    text = output.decode("utf-8")
    assert "X-Evil: \\x1b[2J\\x1b]8;;http://evil.invalid/\\x1b\\click" in text
    assert "\\x1b]0;pwned\\x07" in text and "?x=\\x9b2J" in text
    # The wire is read as latin-1: U+202E's UTF-8 bytes arrive as 'â', C1 0x80 (escaped) and '®'.
    assert "X-Bidi: â\\x80®evil" in text
    assert unsafe_in(text) == [], "no raw escape from the request reached the terminal"


# 7. End to end: `wslab run` with a scenario whose request carries markup, HTML and Markdown.
# (Scenario files cannot hold control characters: wslab/safe_yaml.py refuses them, even escaped.)

MARKUP = "13 <script>alert(1)</script> [red]x[/red] [link=http://evil.invalid/]y[/link] | `t` ![i](http://evil.invalid/i.png)"

SCENARIO_FILE = f"""\
suite: hostile
description: A request whose header value websockets quotes in its error.
scenarios:
  - id: hostile-version
    title: "[red]red[/red] <b>bold</b> | ![i](http://evil.invalid/t.png)"
    tier: deployment
    steps:
      - raw:
          path: "/chat?q=<script>|`x`"
          headers:
            - "Host: {{host}}"
            - "Connection: Upgrade"
            - "Upgrade: websocket"
            - "Sec-WebSocket-Key: {{key}}"
            - 'Sec-WebSocket-Version: {MARKUP}'
    expect:
      status: 101
"""


def test_wslab_run_shows_quoted_request_data_as_text(tmp_path: Path) -> None:
    scenario = tmp_path / "hostile.yaml"
    scenario.write_text(SCENARIO_FILE)
    outputs = {name: tmp_path / f"out.{name}" for name in ("json", "markdown", "junit", "html")}
    command = [sys.executable, "-m", "wslab", "run", "-t", "direct", "-s", str(scenario)]
    for name, path in outputs.items():
        command += [f"--{name}", str(path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    run = results.load(outputs["json"])
    error = run.cells[0].server_error
    assert error is not None and MARKUP in error.text, "websockets quotes the header value"
    assert "[red]x[/red]" in result.stdout and "[link=http://evil.invalid/]y[/link]" in result.stdout
    html = rendered(outputs["markdown"].read_text())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "![i](http://evil.invalid/i.png)" in html
    xml = outputs["junit"].read_text()
    xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd").validate(xml)
    failure = ElementTree.fromstring(xml).find(".//failure")
    assert failure is not None and MARKUP in (failure.text or "")
    report = outputs["html"].read_text()
    assert report.count("<script") == 2 and "<b>bold</b>" not in report and "&lt;b&gt;bold" in report
