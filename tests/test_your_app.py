"""A user's own app behind the topologies: `wslab run --app`, `--upstream`, the tap's evidence,
the app's log lines tied to cells, scenarios that are not applicable, `{env:NAME}` secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from wslab import results
from wslab.records import Outcome, Run
from wslab.websockets_release import websockets_path

ROOT = Path(__file__).resolve().parent.parent
WEBSOCKETS_APP = f"{sys.executable} {ROOT / 'examples' / 'websockets-app' / 'app.py'}"
SEED_RELEASE = "15.0.1"
"""The seed's websockets: it logs a refused handshake as a traceback ("opening handshake
failed" ... InvalidUpgrade: missing Connection header); later releases log one INFO line."""
FASTAPI_APP = f"{sys.executable} -m uvicorn app:app --host 127.0.0.1 --port $PORT"
PLAIN_HTTP = ("browser-tab-get", "preview-pane-get", "deploy-health-check")


def wslab(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


def run_app(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[Run, str]:
    out = tmp_path / "results.json"
    completed = wslab("run", *args, "--json", str(out), env=env, cwd=cwd)
    assert completed.returncode in (0, 1), completed.stderr
    return results.load(out), completed.stdout


@pytest.fixture(scope="module")
def seed_app() -> str:
    """The example app under the seed's websockets release."""
    return f"env PYTHONPATH={websockets_path(SEED_RELEASE)} {WEBSOCKETS_APP}"


@pytest.fixture(scope="module")
def unfixed(tmp_path_factory: pytest.TempPathFactory, seed_app: str) -> tuple[Run, str]:
    folder = tmp_path_factory.mktemp("unfixed")
    return run_app(folder, "--app", seed_app, "-t", "haproxy-default", "-t", "replit-dev")


def test_plain_http_cells_carry_the_line_the_app_logged(unfixed: tuple[Run, str]) -> None:
    run, _ = unfixed
    for topology in ("haproxy-default", "replit-dev"):
        for scenario in PLAIN_HTTP:
            cell = run.cell(topology, scenario)
            assert cell.outcome == Outcome.FAIL, (topology, scenario)
            error = cell.server_error
            assert error is not None and error.source == "app log", (topology, scenario)
            assert (error.type, error.text) == ("InvalidUpgrade", "missing Connection header")
            logged = "\n".join(line.text for line in cell.app_log)
            assert "websockets.exceptions.InvalidUpgrade: missing Connection header" in logged
            assert all(line.attributed_by for line in cell.app_log)
            assert cell.diagnosis is not None and "process_request" in cell.diagnosis.fix


def test_websocket_cells_pass_with_what_the_app_received(unfixed: tuple[Run, str]) -> None:
    run, _ = unfixed
    for topology in ("haproxy-default", "replit-dev"):
        echo = run.cell(topology, "websockets-echo")
        assert echo.outcome == Outcome.PASS, (topology, echo.error, echo.checks)
        (connection,) = echo.server
        assert connection.tap is not None and connection.upgraded
        assert connection.request is not None and connection.request.asks_upgrade
        assert connection.raw_head.startswith("GET /echo?wslab-cell=")
        assert connection.closed is not None and connection.closed.code == 1000
        assert not echo.app_log or all(line.attributed_by for line in echo.app_log)


def test_scenarios_that_need_the_probe_server_are_not_applicable(
    unfixed: tuple[Run, str], seed_app: str
) -> None:
    run, page = unfixed
    for scenario in ("subprotocol", "server-commands"):
        cell = run.cell("replit-dev", scenario)
        assert cell.outcome == Outcome.NOT_APPLICABLE and "probe server" in (cell.error or "")
    assert run.app is not None and run.app.command == seed_app
    assert [entry.text for entry in run.app.unattributed if "handshake failed" in entry.text] == [], (
        "the lab's own readiness checks never reach the app"
    )
    assert_drops_logged_by_the_cells_that_dropped(run)
    assert "your app (" in page and "· not applicable" in page
    assert "your app logged 'missing Connection header'" in page


def test_the_fixed_app_passes_the_plain_http_cells(tmp_path: Path, seed_app: str) -> None:
    run, _ = run_app(
        tmp_path, "--app", seed_app, "-t", "haproxy-default", "-t", "replit-dev", env={"FIXED": "1"}
    )
    for topology in ("haproxy-default", "replit-dev"):
        for scenario in (*PLAIN_HTTP, "websockets-echo"):
            assert run.cell(topology, scenario).outcome == Outcome.PASS, (topology, scenario)
    assert_drops_logged_by_the_cells_that_dropped(run)


def assert_drops_logged_by_the_cells_that_dropped(run: Run) -> None:
    """websockets logs "connection handler failed" when an upgraded connection drops with no
    close frame: what a raw handshake does when it ends (or a proxy that upgraded the app's side
    and not the client's, when the client gives up). That line is the cell's that dropped it,
    never another cell's whose turn at the gate came next."""
    dropped = {
        (cell.topology, cell.scenario)
        for cell in run.cells
        if (cell.client is not None and cell.client.kind == "raw" and cell.client.upgraded)
        or any(connection.upgraded for connection in cell.server)
    }
    assert dropped, "the run has raw handshakes that upgrade"
    logged = {
        (cell.topology, cell.scenario)
        for cell in run.cells
        if any("connection handler failed" in line.text for line in cell.app_log)
    }
    assert logged and logged <= dropped, logged - dropped


def test_a_uvicorn_app_runs_through_every_topology(tmp_path: Path) -> None:
    run, _ = run_app(tmp_path, "--app", FASTAPI_APP, cwd=ROOT / "examples" / "fastapi-app")
    assert run.app is not None
    ready = [t.name for t in run.topologies if t.status == "ready"]
    assert len(ready) == len(run.topologies)
    echo = {cell.topology: cell for cell in run.cells if cell.scenario == "websockets-echo"}
    carried = {name for name, cell in echo.items() if cell.outcome == Outcome.PASS}
    # The same topologies carry WebSockets to uvicorn as to the lab's probe server.
    assert carried >= {"direct", "haproxy-default", "nginx-websocket", "replit-autoscale", "cloudrun"}
    assert not carried & {"nginx-default", "apache-default", "envoy-default", "replit-static"}
    assert not [cell for cell in run.cells if cell.outcome == Outcome.ERROR]
    tab = run.cell("nginx-websocket", "browser-tab-get")
    assert tab.server and tab.server[0].response is not None, "uvicorn's own answer, through the tap"


def test_an_upstream_must_answer_and_be_loopback(tmp_path: Path) -> None:
    far = wslab("run", "--upstream", "10.1.2.3:8000", "-t", "direct")
    assert far.returncode == 2 and "loopback" in far.stderr
    assert len(far.stderr.strip().splitlines()) == 1
    nothing = wslab("run", "--upstream", "127.0.0.1:1", "-t", "direct")
    assert nothing.returncode == 2 and "nothing answers" in nothing.stderr


def test_an_app_that_does_not_start_is_a_one_line_error_with_its_last_lines(tmp_path: Path) -> None:
    crashed = wslab("run", "--app", f"{sys.executable} -c 'import sys; sys.exit(\"boom: no config\")'")
    assert crashed.returncode == 2
    assert "exited with status 1 before answering" in crashed.stderr and "boom: no config" in crashed.stderr
    assert "Traceback" not in crashed.stderr


def test_env_placeholders_send_secrets_that_no_output_keeps(tmp_path: Path) -> None:
    scenario = tmp_path / "auth.yaml"
    scenario.write_text(
        "suite: auth\nscenarios:\n"
        "  - id: authenticated\n    title: authenticated handshake\n    steps:\n"
        "      - connect:\n          path: /chat\n"
        "          headers: ['X-Session: {env:APP_SESSION}', 'Origin: {env:APP_ORIGIN}']\n"
        "          subprotocols: ['{env:APP_PROTOCOL}']\n"
        "      - close: {code: 1000}\n"
        "    expect:\n      status: 101\n"
    )
    secret, protocol = "s3ss10n-value-not-in-any-file", "proto-token-abc123"
    env = {"APP_SESSION": secret, "APP_ORIGIN": "http://127.0.0.1", "APP_PROTOCOL": protocol}
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    (tmp_path / "echo.py").write_text(
        "import asyncio, os\nfrom websockets.asyncio.server import serve\n"
        "async def echo(ws):\n    async for m in ws:\n        await ws.send(m)\n"
        "async def main():\n"
        "    async with serve(echo, '127.0.0.1', int(os.environ['PORT']),"
        " select_subprotocol=lambda c, offered: offered[0] if offered else None):\n"
        "        print('session header', flush=True)\n        await asyncio.Future()\n"
        "asyncio.run(main())\n"
    )
    completed = wslab(
        "run",
        "--app",
        f"{sys.executable} {tmp_path / 'echo.py'}",
        "-t",
        "haproxy-default",
        "-s",
        str(scenario),
        "--json",
        str(out),
        "--html",
        str(html),
        env=env,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    run = results.load(out)
    cell = run.cell("haproxy-default", "authenticated")
    assert cell.server and cell.server[0].request is not None
    assert "[redacted len=" in (cell.server[0].request.header("X-Session") or "")
    for text in (out.read_text(), html.read_text(), completed.stdout, completed.stderr):
        assert secret not in text and protocol not in text
    # The step as written keeps its placeholder; what went on the wire had the value, which every
    # output shows redacted, even one that does not look secret.
    steps = json.dumps(cell.client.model_dump(mode="json")["steps"] if cell.client else [])
    assert "{env:APP_ORIGIN}" in steps
    assert cell.client is not None and cell.client.sent is not None
    assert (cell.client.sent.header("Origin") or "").startswith("[redacted len=16 ")

    unset = wslab(
        "run", "--app", WEBSOCKETS_APP, "-t", "direct", "-s", str(scenario), env={"APP_SESSION": ""}
    )
    assert unset.returncode == 2
    assert f"{scenario}:3:" in unset.stderr and "APP_ORIGIN" in unset.stderr


def test_up_streams_what_the_app_received_on_stable_ports(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wslab",
            "up",
            "--app",
            WEBSOCKETS_APP,
            "-t",
            "haproxy-default",
            "-t",
            "direct",
        ]
        + ["--ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        urls = {}
        for line in process.stdout:
            if line.strip().startswith(("haproxy-default", "direct")):
                name, url = line.split()
                urls[name] = url
            if "Ctrl-C" in line:
                assert "What your app receives" in line
                break
        assert urls == {"direct": "ws://127.0.0.1:18001/", "haproxy-default": "ws://127.0.0.1:18004/"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen("http://127.0.0.1:18004/health", timeout=5)
        assert refused.value.code == 426
        seen = process.stdout.readline() + process.stdout.readline()
        assert "[haproxy-default]" in seen and "GET /health HTTP/1.1 -> 426" in seen
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert process.returncode in (0, 130)
