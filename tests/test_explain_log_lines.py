"""`wslab explain`: a log line read backwards into its causes, most likely first, with the fix
for the user's websockets API.

The fast tests play runs built by hand (tests/builders.py); the others read the real default
matrix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from builders import CHROME_TAB, UPGRADE, connection, request, run_of, topology, transcript, without

from wslab import results
from wslab.diagnosis import diagnose
from wslab.evidence import Evidence
from wslab.explain import explain, matches
from wslab.fixes import ASYNCIO, LEGACY, SYNC, choose_api
from wslab.records import (
    Cell,
    ClientKind,
    Outcome,
    Run,
    ScenarioRecord,
    ServerError,
    TopologyRecord,
)
from wslab.reports.explain import render_markdown
from wslab.verdict import GROUPS

SEED = "websockets.exceptions.InvalidUpgrade: missing Connection header"

SEED_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/home/runner/workspace/.pythonlibs/lib/python3.12/site-packages/websockets/server.py", '
    "line 138, in accept\n"
    "    ) = self.process_request(request)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/home/runner/workspace/.pythonlibs/lib/python3.12/site-packages/websockets/server.py", '
    "line 233, in process_request\n"
    "    raise InvalidUpgrade(\n"
    "websockets.exceptions.InvalidUpgrade: missing Connection header"
)
"""The traceback of the original report (seed-analysis.md), as its user would paste it."""

ASYNCIO_TRACEBACK = """\
ERROR:websockets.server:opening handshake failed
Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.11/site-packages/websockets/asyncio/server.py", line 356, in conn_handler
    await connection.handshake(
  File "/srv/app/.venv/lib/python3.11/site-packages/websockets/asyncio/server.py", line 207, in handshake
    raise self.protocol.handshake_exc
  File "/srv/app/.venv/lib/python3.11/site-packages/websockets/server.py", line 138, in accept
    ) = self.process_request(request)
websockets.exceptions.InvalidUpgrade: missing Connection header"""

LEGACY_TRACEBACK = """\
Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/websockets/legacy/server.py", line 610, in handshake
    key = check_request(request_headers)
  File "/usr/local/lib/python3.11/site-packages/websockets/legacy/handshake.py", line 62, in check_request
    raise InvalidUpgrade("Connection", ", ".join(connection))
websockets.exceptions.InvalidUpgrade: empty Connection header"""

REPLIT = ["replit-dev", "replit-autoscale", "replit-reserved-vm"]
ROLES = {
    "direct": "direct",
    "haproxy-default": "bare",
    "varnish-default": "bare",
    "caddy-default": "bare",
    "envoy-default": "bare",
    "traefik-default": "bare",
    "apache-default": "bare",
    "nginx-websocket": "websocket",
    "caddy-websocket": "websocket",
    "cloudrun": "platform",
    "fly": "platform",
    "heroku": "platform",
    **dict.fromkeys(REPLIT, "platform"),
}
"""Fourteen topologies with their roles: more than any list used to show before '... and N more'."""
STRIPPING = ["haproxy-default", "varnish-default", "caddy-default", "envoy-default", "traefik-default"]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0"
HEALTH_CHECK = [("Host", "127.0.0.1:8080"), ("User-Agent", "health-check/1.0")]
TAB = [*CHROME_TAB, ("User-Agent", BROWSER)]
PREVIEW = [*TAB, ("Referer", "https://replit.com/")]
CLIENT = [*UPGRADE, ("User-Agent", "Python/3.11 websockets/17.4")]
TITLES = {
    "browser-tab-get": "plain browser GET /",
    "preview-pane-get": "Replit preview pane loads /",
    "deploy-health-check": "deployment health check GET /",
    "websockets-echo": "websockets client connect + echo",
    "chrome-handshake": "Chrome-like raw handshake",
    "http10-upgrade": "HTTP/1.0 upgrade attempt",
}


def _cell(where: str, scenario: str, sent: list, received: list, kind: ClientKind = ClientKind.RAW) -> Cell:
    """A failed cell, diagnosed by the lab's own rules: the server logged 'missing Connection header'."""
    facts = Evidence(
        transcript(request(sent), 426, kind=kind),
        [connection(request(received), 426, "missing Connection header")],
    )
    return Cell(
        topology=where,
        scenario=scenario,
        suite="platform-traffic",
        outcome=Outcome.FAIL,
        summary="426",
        client=facts.transcript,
        server=facts.connections,
        diagnosis=diagnose(facts, topology(), []),
    )


def _expected(where: str) -> Cell:
    """A cell whose scenario expects the error: it passed, and has no diagnosis."""
    received = request(without(UPGRADE, "Connection", "Upgrade"), path="/chat")
    return Cell(
        topology=where,
        scenario="http10-upgrade",
        suite="platform-traffic",
        outcome=Outcome.PASS,
        summary="426",
        client=transcript(request(UPGRADE, version="HTTP/1.0", path="/chat"), 426),
        server=[connection(received, 426, "missing Connection header")],
    )


def hand_run(plain: list[str], stripping: list[str] = STRIPPING, expected: bool = True) -> Run:
    """Browser tabs, preview panes and health checks through ``plain`` (their keep-alive proxies
    drop Connection), real clients' upgrades stripped by ``stripping`` (twice as many cells),
    and one cell whose scenario expects the error."""
    cells = []
    for where in plain:
        cells.append(_cell(where, "browser-tab-get", TAB, without(TAB, "Connection")))
        cells.append(_cell(where, "preview-pane-get", PREVIEW, without(PREVIEW, "Connection")))
        cells.append(_cell(where, "deploy-health-check", HEALTH_CHECK, without(HEALTH_CHECK)))
    stripped = without(CLIENT, "Connection", "Upgrade")
    for where in stripping:
        for scenario in ("websockets-echo", "chrome-handshake"):
            cells.append(_cell(where, scenario, CLIENT, stripped, ClientKind.CONNECT))
    if expected:
        cells.append(_expected("varnish-default"))
    names = list(dict.fromkeys([*plain, *stripping, "varnish-default"]))
    scenarios = [ScenarioRecord(id=id, suite="platform-traffic", title=title) for id, title in TITLES.items()]
    run = run_of(cells, [], scenarios)
    return run.model_copy(
        update={
            "topologies": [
                TopologyRecord(
                    name=name,
                    role=ROLES[name],  # type: ignore[arg-type]
                    platform="Replit" if name.startswith("replit") else "",
                )
                for name in sorted(names, key=list(ROLES).index)
            ]
        }
    )


def section(page: str, title: str) -> str:
    """The part of the page under the ### heading that starts with ``title``."""
    found = re.search(rf"^### {re.escape(title)}.*?(?=^### |\Z)", page, re.S | re.M)
    assert found, f"no section {title!r} in:\n{page}"
    return found.group()


@pytest.mark.fast
def test_the_replit_cause_comes_first_and_names_them_even_with_fewer_cells() -> None:
    answer = explain(hand_run(plain=["haproxy-default", *REPLIT]), SEED)
    first = answer.causes[0]
    assert first.rule == "plain-http-through-keepalive-proxy" and first.replit == REPLIT
    stripped = next(cause for cause in answer.causes if cause.rule == "proxy-removed-upgrade")
    assert len(stripped.cells) > len(first.cells), "Replit wins over the cause with most cells"
    assert [cause.rule for cause in answer.causes[1:]] == ["client-sent-no-upgrade", "proxy-removed-upgrade"]
    page = render_markdown(answer)
    lead = page.split("\n\n")[1]
    assert lead.startswith(
        "**Most likely, on Replit** (`replit-dev`, `replit-autoscale`, `replit-reserved-vm`)"
    )
    assert "a browser tab or the preview pane sends plain HTTP" in lead and "Replit's proxy drops" in lead
    assert "the deployment health check sends plain HTTP" in lead
    assert "Replit comes first because" in lead, "the page says why it is first"
    assert page.index("### 1. Plain HTTP through a keep-alive proxy") < page.index("### 3. A proxy stripped")
    # Another port for the page works in the workspace only: a deployment has a single external
    # port (platform-facts §9), so its health check meets the WebSocket server.
    other = next(p for p in page.split("\n\n") if p.startswith("Or keep browsers"))
    assert "workspace only" in other and "single external port" in other


@pytest.mark.fast
def test_a_log_line_from_replit_says_so() -> None:
    answer = explain(hand_run(plain=["haproxy-default", *REPLIT]), SEED_TRACEBACK)
    assert answer.replit_hint == "/home/runner/workspace"
    assert "your log line points there (`/home/runner/workspace`)" in render_markdown(answer)


@pytest.mark.fast
def test_without_replit_the_cause_with_most_cells_comes_first() -> None:
    answer = explain(hand_run(plain=["haproxy-default", "cloudrun"]), SEED)
    assert [cause.rule for cause in answer.causes][0] == "proxy-removed-upgrade"
    assert [len(cause.cells) for cause in answer.causes] == sorted(
        (len(cause.cells) for cause in answer.causes), reverse=True
    )
    page = render_markdown(answer)
    assert (
        "**Most likely** (10 of 16 cells)" in page and "It comes first because most cells showed it." in page
    )
    assert "Replit" not in page.split("### ")[0]


@pytest.mark.fast
def test_cells_whose_scenario_expects_the_error_are_no_cause() -> None:
    answer = explain(hand_run(plain=["haproxy-default", *REPLIT]), SEED)
    assert answer.expected == [("http10-upgrade", ["varnish-default"])]
    assert all(("varnish-default", "http10-upgrade") not in cause.cells for cause in answer.causes)
    assert answer.cells_matched == sum(len(cause.cells) for cause in answer.causes) == 4 * 3 + 5 * 2
    page = render_markdown(answer)
    assert "expected by the scenario" not in page and "Unlike expected" not in page
    assert "Not a cause: 1 cell logged it because its scenario expects it (`http10-upgrade` through " in page
    # Only expected cells: no cause to fix, said in one line.
    only = explain(hand_run(plain=[], stripping=[]), SEED)
    assert only.causes == [] and "No cause to fix. Not a cause: 1 cell" in render_markdown(only)


@pytest.mark.fast
def test_every_topology_is_listed_grouped_by_role() -> None:
    everywhere = [name for name in ROLES if name != "varnish-default"]
    answer = explain(hand_run(plain=everywhere), SEED)
    plain = answer.causes[0]
    assert sorted(plain.topologies) == sorted(everywhere)
    assert [group for group, _ in plain.through] == list(GROUPS.values()), "the groups in GROUPS' order"
    assert [name for _, names in plain.through for name in names] == everywhere, "none left out"
    text = section(render_markdown(answer), "1. ")
    assert f"**Through {len(everywhere)} topologies:**" in text and " more" not in text
    for role, title in GROUPS.items():
        names = ", ".join(f"`{name}`" for name, r in ROLES.items() if r == role and name in everywhere)
        assert f"  - {title}: {names}\n" in text
    # One group: one line.
    stripped = section(render_markdown(answer), "3. ")
    assert "**Through:** `haproxy-default`, `varnish-default`, `caddy-default`" in stripped


@pytest.mark.fast
def test_the_page_says_which_header_tells_each_cause_apart() -> None:
    answer = explain(hand_run(plain=["haproxy-default", *REPLIT]), SEED)
    marks = {cause.rule: (cause.mark, cause.mark_value) for cause in answer.causes}
    assert marks == {
        "plain-http-through-keepalive-proxy": ("Sec-Fetch-Mode", "navigate"),
        "client-sent-no-upgrade": ("", None),
        "proxy-removed-upgrade": ("Sec-WebSocket-Key", None),
    }
    tell = section(render_markdown(answer), "Tell the causes apart in your log")
    assert "`print(request.path, list(request.headers.raw_items()), flush=True)`" in tell
    assert "- with `Sec-Fetch-Mode: navigate` is cause 1, plain HTTP through a keep-alive proxy: " in tell
    assert "- with `Sec-WebSocket-Key` is cause 3, a proxy stripped a real WebSocket client's upgrade" in tell
    assert "- with neither (`Sec-Fetch-Mode`, `Sec-WebSocket-Key`) is cause 2" in tell
    assert "the deployment health check" in tell


@pytest.mark.fast
@pytest.mark.parametrize(
    ("log", "apis", "evidence"),
    [
        (SEED_TRACEBACK, [ASYNCIO], "websockets/server.py"),
        (ASYNCIO_TRACEBACK, [ASYNCIO], "websockets/asyncio/server.py"),
        (LEGACY_TRACEBACK, [LEGACY], "websockets/legacy/server.py"),
        ('File "C:\\app\\Lib\\site-packages\\websockets\\sync\\server.py", line 590', [SYNC], ""),
        ("InvalidUpgrade: empty Connection header", [LEGACY], "empty Connection header"),
        (SEED, [ASYNCIO], "missing Connection header"),
        ("invalid Connection header: keep-alive", [ASYNCIO, LEGACY], ""),
    ],
    ids=["seed", "asyncio", "legacy", "windows-sync", "empty", "missing", "unknown"],
)
def test_the_api_is_read_from_the_pasted_log(log: str, apis: list, evidence: str) -> None:
    chosen = choose_api(log)
    assert list(chosen.apis) == apis
    assert chosen.evidence == evidence or not evidence


@pytest.mark.fast
@pytest.mark.parametrize(
    ("log", "version", "apis"),
    [
        ("invalid Connection header: keep-alive", "15.0.1", [ASYNCIO]),
        ("invalid Connection header: keep-alive", "13.1", [LEGACY, ASYNCIO]),
        ("invalid Connection header: keep-alive", "11.0.3", [LEGACY]),
        (SEED, "12.0", [SYNC]),
        (SEED_TRACEBACK, "9.1", [LEGACY]),
        (LEGACY_TRACEBACK, "15.0.1", [LEGACY]),
    ],
)
def test_the_release_picks_the_api_when_the_log_does_not(log: str, version: str, apis: list) -> None:
    assert list(choose_api(log, version).apis) == apis


def _programs(page: str) -> list[str]:
    """The Python blocks of a page."""
    return re.findall(r"^```python\n(.*?)^```$", page, re.S | re.M)


@pytest.mark.fast
def test_the_fix_is_the_whole_program_for_the_users_api() -> None:
    run = hand_run(plain=["haproxy-default", *REPLIT])
    seed = render_markdown(explain(run, SEED_TRACEBACK))
    assert _programs(seed) == [ASYNCIO.program], "the seed's traceback: the new asyncio API only"
    assert "from http import HTTPStatus" in seed and "from websockets.asyncio.server import serve" in seed
    assert "your traceback raises in `websockets/server.py`" in seed
    legacy = render_markdown(explain(run, LEGACY_TRACEBACK))
    assert _programs(legacy) == [LEGACY.program]
    assert "the lab's server runs the new implementation, which logs the same request as" in legacy
    assert "async def process_request(path, request_headers):" in legacy
    unknown = render_markdown(explain(run, "InvalidUpgrade"))
    assert _programs(unknown) == [ASYNCIO.program, LEGACY.program], "both, the new asyncio API first"
    release = render_markdown(explain(run, "InvalidUpgrade", "13.1"))
    assert _programs(release) == [LEGACY.program, ASYNCIO.program]
    # Each cause whose fix it is points to it instead of repeating it.
    assert section(seed, "2. ").count("the code under *The fix* above") == 1


@pytest.mark.fast
def test_a_pasted_traceback_matches_and_heads_the_page_by_its_last_line() -> None:
    answer = explain(hand_run(plain=["haproxy-default"]), SEED_TRACEBACK)
    assert answer.causes and answer.heading == SEED
    assert render_markdown(answer).startswith(f"## `{SEED}`\n")


@pytest.mark.fast
def test_command_takes_the_api_from_websockets_option(tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    results.write(hand_run(plain=["haproxy-default", *REPLIT]), saved)
    page = tmp_path / "explain.md"
    line = "InvalidUpgrade"
    command = [
        sys.executable,
        "-m",
        "wslab",
        "explain",
        line,
        "--results",
        str(saved),
        "--markdown",
        str(page),
    ]
    for version, programs in (("13.1", [LEGACY, ASYNCIO]), ("15.0.1", [ASYNCIO])):
        done = subprocess.run([*command, "--websockets", version], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert _programs(page.read_text()) == [api.program for api in programs], version


@pytest.mark.fast
def test_log_lines_match_the_recorded_error() -> None:
    error = ServerError(type="InvalidUpgrade", text="missing Connection header")
    for line in (SEED, "InvalidUpgrade: missing Connection header", "missing connection header", "  missing"):
        assert matches(error, line), line
    # The legacy server's words for the same request.
    assert matches(error, "websockets.exceptions.InvalidUpgrade: empty Connection header")
    assert not matches(error, "invalid Connection header: keep-alive")
    assert not matches(error, "")
    assert not matches(None, SEED)


def test_the_seed_error_has_causes_told_apart_by_the_websocket_key(matrix: Run) -> None:
    answer = explain(matrix, SEED)
    causes = {cause.rule: cause for cause in answer.causes}
    assert answer.errors == ["InvalidUpgrade: missing Connection header"]
    assert answer.cells_matched == sum(len(cause.cells) for cause in answer.causes)
    plain = causes["plain-http-through-keepalive-proxy"]
    stripped = causes["proxy-removed-upgrade"]
    assert ("haproxy-default", "browser-tab-get") in plain.cells
    assert ("replit-dev", "preview-pane-get") in plain.cells
    assert ("varnish-default", "websockets-echo") in stripped.cells
    assert "plain browser GET /" in plain.senders
    # The server-side tell: a stripped upgrade still carries the WebSocket key, a browser tab never did.
    versus = {tell.other: tell for tell in stripped.tells}
    assert "sec-websocket-key" in versus["plain-http-through-keepalive-proxy"].present
    assert "sec-websocket-key" in {tell.other: tell for tell in plain.tells}["proxy-removed-upgrade"].absent
    assert "process_request" in plain.fix and "pipe" in stripped.fix
    # Every matched cell really logged the error.
    for cause in answer.causes:
        for where, scenario in cause.cells:
            errors = [c.error.text for c in matrix.cell(where, scenario).server if c.error]
            assert "missing Connection header" in errors


def test_errors_the_scenario_expects_are_no_cause(matrix: Run) -> None:
    answer = explain(matrix, "unsupported HTTP version: HTTP/1.0")
    assert "direct" in dict(answer.expected)["http10-upgrade"]
    assert all(("direct", "http10-upgrade") not in cause.cells for cause in answer.causes)


def test_an_unknown_error_says_so(matrix: Run) -> None:
    answer = explain(matrix, "no such error anywhere")
    assert answer.causes == [] and answer.cells_run == len(matrix.cells)
    assert "No cell of the" in render_markdown(answer)


def test_command_reads_saved_results(matrix: Run, tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    results.write(matrix, saved)
    page = tmp_path / "explain.md"
    command = [
        sys.executable,
        "-m",
        "wslab",
        "explain",
        SEED,
        "--results",
        str(saved),
        "--markdown",
        str(page),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "plain-http-through-keepalive-proxy" in result.stdout
    text = page.read_text()
    assert text.startswith(f"## `{SEED}`") and "proxy-removed-upgrade" in text


def test_the_seed_error_names_replit_and_the_whole_fix(matrix: Run, tmp_path: Path) -> None:
    """Issue 11's done-when: the seed's error names the Replit topologies and the complete fix
    with imports, and no pseudo-cause."""
    saved = tmp_path / "results.json"
    results.write(matrix, saved)
    page = tmp_path / "explain.md"
    command = [
        sys.executable,
        "-m",
        "wslab",
        "explain",
        SEED,
        "--results",
        str(saved),
        "--markdown",
        str(page),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    lead = text.split("\n\n")[1]
    assert lead.startswith("**Most likely, on Replit**")
    assert all(f"`{name}`" in lead for name in REPLIT)
    assert _programs(text) == [ASYNCIO.program]
    assert (
        "from http import HTTPStatus" in done.stdout
        and "from websockets.asyncio.server import serve" in done.stdout
    )
    assert "expected by the scenario" not in text and "Not a cause: " in text
    assert " more" not in text.replace("Not a cause", "")
    headings = re.findall(r"^### (\d+)\. .*\(`([a-z-]+)`", text, re.M)
    assert headings[0] == ("1", "plain-http-through-keepalive-proxy")
    assert {rule for _, rule in headings} >= {"client-sent-no-upgrade", "proxy-removed-upgrade"}


def test_command_runs_the_default_suites_when_given_no_results() -> None:
    command = [sys.executable, "-m", "wslab", "explain", SEED, "-t", "haproxy-default"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plain-http-through-keepalive-proxy" in result.stdout and "haproxy-default" in result.stdout
