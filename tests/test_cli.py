"""The wslab command end to end: JSON evidence, unavailable and broken proxies, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import RESULTS_SCHEMA, holders
from test_html_report import embedded_data
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wslab import results
from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.records import Outcome
from wslab.runner import RunOptions, run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies, load_topology

ROOT = Path(__file__).resolve().parent.parent


def wslab(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kwargs,
    )


def test_run_writes_json_evidence_matching_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = wslab("run", "-t", "direct", "-t", "haproxy-default", "--json", str(out))
    assert result.returncode == 1, result.stderr
    assert "missing Connection header" in result.stdout
    assert "haproxy-default" in result.stdout and "✓101" in result.stdout
    data = json.loads(out.read_text())
    jsonschema.validate(data, RESULTS_SCHEMA)
    run_result = results.load(out)
    cell = run_result.cell("haproxy-default", "browser-tab-get")
    assert cell.client.sent.headers[0] == ("Host", cell.client.sent.headers[0][1])
    assert cell.server[0].raw_head.startswith("GET /?wslab-cell=")
    assert cell.server[0].response.status == 426
    assert data["components"]["proxies"]["haproxy"].startswith("2.")


def test_missing_binary_makes_topology_unavailable_not_the_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = wslab(
        "run",
        "-t",
        "varnish-default",
        "-t",
        "nginx-websocket",
        "--json",
        str(out),
        env={"WSLAB_VARNISH_BIN": str(tmp_path / "no-such-varnishd")},
    )
    assert result.returncode == 1
    assert "apt-get install varnish" in result.stdout
    run_result = results.load(out)
    assert {c.outcome for c in run_result.cells if c.topology == "varnish-default"} == {Outcome.UNAVAILABLE}
    assert run_result.cell("nginx-websocket", "websockets-echo").outcome == Outcome.PASS


def test_proxy_that_fails_to_start_shows_its_own_log(tmp_path: Path) -> None:
    folder = tmp_path / "compose" / "nginx-broken"
    folder.mkdir(parents=True)
    (folder / "topology.yaml").write_text(
        "name: nginx-broken\ntitle: broken\nproxy: nginx\nrole: bare\nport: 18999\n"
        "config: nginx.conf\nsummary: a typo\n"
    )
    good = (ROOT / "compose" / "nginx-default" / "nginx.conf").read_text()
    (folder / "nginx.conf").write_text(good.replace("proxy_pass", "proxy_passs"))
    topologies = [load_topology(folder), load_topologies()["direct"]]
    scenarios = [s for s in load_scenarios() if s.id in ("websockets-echo", "tcp-probe")]
    backend = LocalBackend(tmp_path / "run", StackOptions())
    result = asyncio.run(run(backend, topologies, scenarios, RunOptions()))
    broken = result.cell("nginx-broken", "websockets-echo")
    assert broken.outcome == Outcome.ERROR
    assert 'unknown directive "proxy_passs"' in broken.log_tail
    assert result.cell("direct", "websockets-echo").outcome == Outcome.PASS
    assert holders(tmp_path / "run") == []


def test_up_serves_until_ctrl_c_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "up"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wslab",
            "up",
            "-t",
            "haproxy-default",
            "-t",
            "envoy-websocket",
            "-t",
            "cloudrun-h2c",
            "--run-dir",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        urls = {}
        for line in process.stdout:
            if line.strip().startswith(("haproxy-default", "envoy-websocket", "cloudrun-h2c")):
                name, url = line.split()
                urls[name] = url
            if "Ctrl-C" in line:
                break
        assert set(urls) == {"haproxy-default", "envoy-websocket", "cloudrun-h2c"}

        async def talk() -> str:
            async with connect(urls["haproxy-default"] + "manual") as websocket:
                await websocket.send("hi")
                return await websocket.recv()

        assert asyncio.run(talk()) == "hi"
        seen = process.stdout.readline()
        assert "[haproxy-default]" in seen and "GET /manual HTTP/1.1 -> 101" in seen

        async def refused() -> int:
            with pytest.raises(InvalidStatus) as refusal:
                await connect(urls["cloudrun-h2c"] + "over-h2c")
            return refusal.value.response.status_code

        assert asyncio.run(refused()) == 503
        seen = next(line for line in process.stdout if "[cloudrun-h2c]" in line) + process.stdout.readline()
        assert "[cloudrun-h2c]" in seen and "PRI * HTTP/2.0 -> no response" in seen
        assert "HTTP/2 stream 1: CONNECT /over-h2c" in seen, "the request inside the h2c connection is shown"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert holders(run_dir) == []


def test_ctrl_c_during_run_stops_every_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "wslab", "run", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while not (run_dir / "probe-server.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in (1, 130), stderr
    assert "Traceback" not in stderr
    assert holders(run_dir) == []


@pytest.mark.parametrize("args", [["run", "-t", "nope"], ["run", "--scenario", "nope"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = wslab(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("wslab: error:") and "Traceback" not in result.stderr


def test_proxy_that_dies_marks_its_cells_as_errors(tmp_path: Path) -> None:
    from wslab.runner import play_cell

    scenario = next(s for s in load_scenarios() if s.id == "websockets-echo")

    async def scenario_after_kill() -> tuple:
        backend = LocalBackend(tmp_path / "run", StackOptions())
        try:
            deployments = await backend.start([load_topologies()["haproxy-default"]])
            deployment = deployments["haproxy-default"]
            before = await play_cell(backend, deployment, scenario, RunOptions())
            os.killpg(deployment.handle.process.pid, signal.SIGKILL)
            await deployment.handle.process.wait()
            after = await play_cell(backend, deployment, scenario, RunOptions())
        finally:
            await backend.stop()
        return before, after

    before, after = asyncio.run(scenario_after_kill())
    assert before.outcome == Outcome.PASS
    assert after.outcome == Outcome.ERROR and after.error == "haproxy exited during the run"
    assert holders(tmp_path / "run") == []


def test_results_carry_each_config_and_each_cells_log_lines_without_a_run_dir(tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    result = wslab("run", "-t", "nginx-default", "--json", str(out), "--html", str(page))
    assert result.returncode == 1, result.stderr
    run_result = results.load(out)
    [nginx] = run_result.topologies
    assert nginx.config and "proxy_pass http://app;" in nginx.config
    listen = next(line.strip() for line in nginx.config.splitlines() if "listen 127.0.0.1:" in line)
    html = page.read_text()
    assert listen in html, "the rendered config, with this run's port, is in the report"
    shown = embedded_data(html)["cells"]
    for cell, drill_down in zip(run_result.cells, shown, strict=True):
        if cell.cell_id:
            assert cell.proxy_log, cell.scenario
            assert all(cell.cell_id in line for line in cell.proxy_log)
            assert drill_down["proxy_log"] == cell.proxy_log


def test_a_proxy_named_in_the_environment_is_never_used(tmp_path: Path) -> None:
    """HTTP_PROXY and friends (set on many workstations) must not carry the lab's traffic:
    websockets' client honours them by default, which sent the control channel and every cell
    to the proxy. A listener stands in for that proxy and must see no connection."""
    trap = socket.create_server(("127.0.0.1", 0))
    trap.setblocking(False)
    proxy = f"http://127.0.0.1:{trap.getsockname()[1]}"
    env = {**os.environ, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy}
    env |= {name.lower(): proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    out = tmp_path / "r.json"
    completed = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "--fresh", "-t", "direct", "-t", "nginx-websocket"]
        + ["--scenario", "websockets-echo", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    with trap, pytest.raises(BlockingIOError):
        trap.accept()
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert {cell.outcome for cell in results.load(out).cells} == {Outcome.PASS}


@pytest.mark.fast
def test_every_command_and_report_format_resolves() -> None:
    """The commands are imported when they run: each name must still lead to its function."""
    from wslab.commands import COMMANDS, REPORT_FORMATS, command
    from wslab.commands.run import RENDERERS

    assert all(callable(command(name)) for name in COMMANDS)
    assert set(REPORT_FORMATS) == set(RENDERERS)
