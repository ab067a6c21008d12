"""When a part of the lab dies mid-run (the probe server, a --target), every later cell is a lab
error naming it, every earlier cell keeps its result, the results are written, and wslab exits 3.

Before, killing the probe server changed 98 of 364 cells into plausible wrong answers blaming
the proxies, and a vanished --target crashed wslab with a traceback and no results.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wslab import results
from wslab.paths import SCENARIO_DIR
from wslab.records import Outcome, Run

TOKEN = "lab-failure-token"


def children_named(parent: int, needle: str) -> list[int]:
    """Processes below ``parent`` whose command line holds ``needle``."""
    found, frontier = [], [parent]
    while frontier:
        pid = frontier.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            for child in map(int, task.read_text().split()):
                frontier.append(child)
                if needle in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(child)
    return found


def test_a_killed_probe_server_makes_later_cells_lab_errors(tmp_path: Path, matrix: Run) -> None:
    out, run_dir = tmp_path / "r.json", tmp_path / "run"
    topologies = ["-t", "direct", "-t", "nginx-websocket", "-t", "haproxy-default", "-t", "varnish-default"]
    scenarios = ["-s", str(SCENARIO_DIR), "-s", str(slow_suite(tmp_path))]
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wslab",
            "run",
            *topologies,
            *scenarios,
            "--concurrency",
            "1",
            "--json",
            str(out),
        ]
        + ["--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (run_dir / "probe-server.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)  # the proxies start, a few cells run, then the server dies
    [probe] = children_named(lab.pid, "wslab.probe")
    os.kill(probe, signal.SIGKILL)
    _, errors = lab.communicate(timeout=300)
    assert lab.returncode == 3, errors
    assert "Traceback" not in errors
    run = results.load(out)
    lab_errors = [cell for cell in run.cells if cell.outcome == Outcome.ERROR]
    assert len(lab_errors) > len(run.cells) // 3, "the kill came early: most cells are after it"
    for cell in lab_errors:
        assert cell.error and "probe server" in cell.error, cell.error
    # Every other cell says what a healthy run says: no proxy is blamed for the dead server.
    for cell in run.cells:
        if cell.outcome != Outcome.ERROR and cell.suite != "slow":
            healthy = matrix.cell(cell.topology, cell.scenario)
            assert (cell.outcome, cell.summary) == (healthy.outcome, healthy.summary), cell.scenario


def slow_suite(folder: Path) -> Path:
    """Twelve WebSockets held 50 s each (1 s in an accelerated run)."""
    suite = folder / "slow.yaml"
    suite.write_text(
        "suite: slow\nscenarios:\n"
        + "".join(
            f"  - id: held-{n}\n    title: held {n}\n    steps:\n      - connect: {{path: /}}\n"
            "      - idle: 50\n      - close: {code: 1000}\n    expect: {status: 101}\n"
            for n in range(12)
        )
    )
    return suite


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_target_that_disappears_mid_run_leaves_results_and_exit_3(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "wslab", "probe-server"],
        env={**os.environ, "PORT": str(port), "WSLAB_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    suite = slow_suite(tmp_path)
    out = tmp_path / "r.json"
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        lab = subprocess.Popen(
            [sys.executable, "-m", "wslab", "run", "--target", f"ws://127.0.0.1:{port}", "--token", TOKEN]
            + ["-s", str(suite), "--concurrency", "2", "--json", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4)
    finally:
        server.kill()
        server.wait()
    _, errors = lab.communicate(timeout=120)
    assert lab.returncode == 3, errors
    assert "Traceback" not in errors
    run = results.load(out)
    outcomes = [cell.outcome for cell in run.cells]
    assert Outcome.PASS in outcomes and Outcome.ERROR in outcomes, outcomes
    for cell in run.cells:
        if cell.outcome == Outcome.ERROR:
            assert cell.error and "stopped answering" in cell.error, cell.error
