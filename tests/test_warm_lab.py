"""A warm lab: `wslab up --detach` keeps topologies running, `wslab run` plays its cells against
them (the same evidence as a cold run), a changed topology folder is redeployed alone, a run that
asks for something else says why and starts its own, and `wslab down` (or a SIGKILL) leaves
nothing behind."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import comparable

from wslab import results, warm
from wslab.backends import ACCELERATED, StackOptions
from wslab.records import DeploymentStatus
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ["direct", "nginx-default", "haproxy-default"]


class Lab:
    """wslab commands with a state file and a copy of the topology folders of their own."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        shutil.copytree(ROOT / "compose", self.home / "compose")
        shutil.copytree(ROOT / "scenarios", self.home / "scenarios")
        self.state = tmp_path / "cache" / "lab.json"
        self.env = {**os.environ, "WSLAB_HOME": str(self.home), "WSLAB_STATE": str(self.state)}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "wslab", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, "COLUMNS": "100"},
        )

    def run(self, out: Path, *args: str) -> subprocess.CompletedProcess:
        command = ["run", "--json", str(out), *args]
        for name in TOPOLOGIES:
            command += ["-t", name]
        completed = self(*command)
        assert completed.returncode in (0, 1), completed.stderr[-3000:]
        return completed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: its parent (this test's subprocess call) has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"


def up(lab: Lab, *args: str) -> int:
    """`wslab up --detach` with the topologies; the pid of the lab it left running."""
    command = ["up", "--detach", "--accelerated", *args]
    for name in TOPOLOGIES:
        command += ["-t", name]
    started = lab(*command)
    assert started.returncode == 0, started.stderr
    assert "ws://127.0.0.1:" in started.stdout and "wslab down" in started.stdout
    found = re.search(r"pid (\d+)", started.stdout)
    assert found, started.stdout
    return int(found[1])


@pytest.fixture
def lab(tmp_path: Path):
    lab = Lab(tmp_path)
    yield lab
    lab("down", timeout=60)


def test_run_plays_its_cells_on_the_warm_lab_as_a_cold_run_would(lab: Lab, tmp_path: Path) -> None:
    pid = up(lab)
    warm_out, cold_out = tmp_path / "warm.json", tmp_path / "cold.json"
    warm_run = lab.run(warm_out)
    assert "(warm lab)" in warm_run.stdout and "not using the warm lab" not in warm_run.stderr
    cold_run = lab.run(cold_out, "--fresh")
    assert "(warm lab)" not in cold_run.stdout
    kept, fresh = results.load(warm_out), results.load(cold_out)
    assert kept.options.warm_lab and not fresh.options.warm_lab
    assert comparable(kept) == comparable(fresh)
    # The proxies' log lines are each cell's own, as in a cold run (the lab's log has every run's).
    for cell in kept.cells:
        if cell.cell_id and cell.topology == "nginx-default":
            assert all(cell.cell_id in line for line in cell.proxy_log)
    assert any(cell.proxy_log for cell in kept.cells if cell.topology == "nginx-default")

    down = lab("down")
    assert down.returncode == 0 and "the warm lab stopped" in down.stdout
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid) and not lab.state.exists()
    assert list(lab.state.parent.glob("*.sock")) == []
    assert "no warm lab is running" in lab("down").stdout


def test_a_changed_topology_is_redeployed_alone(lab: Lab, tmp_path: Path) -> None:
    up(lab)
    before = json.loads(lab.state.read_text())["topologies"]
    config = lab.home / "compose" / "nginx-default" / "nginx.conf"
    config.write_text(config.read_text() + "\n# edited while the lab runs\n")
    lab.run(tmp_path / "r.json")
    after = json.loads(lab.state.read_text())["topologies"]
    assert after["nginx-default"]["fingerprint"] != before["nginx-default"]["fingerprint"]
    assert "# edited while the lab runs" in after["nginx-default"]["config_text"]
    # The others kept their processes (and so their ports).
    for name in ("direct", "haproxy-default"):
        assert after[name] == before[name]
    run = results.load(tmp_path / "r.json")
    assert (
        "# edited while the lab runs" in next(t for t in run.topologies if t.name == "nginx-default").config
    )


def test_a_run_that_asks_for_something_else_says_why(lab: Lab, tmp_path: Path) -> None:
    up(lab)
    faithful = lab.run(tmp_path / "f.json", "--faithful", "--scenario", "websockets-echo")
    said = [line for line in faithful.stderr.splitlines() if line.startswith("wslab:")]
    assert said == [
        "wslab: not using the warm lab (wslab up): it runs accelerated (--accelerated, x0.02) time "
        "limits, this run asks for faithful (--faithful) ones; starting new topologies"
    ]
    assert not results.load(tmp_path / "f.json").options.warm_lab


def test_a_killed_lab_leaves_nothing_and_its_state_is_ignored(lab: Lab, tmp_path: Path) -> None:
    pid = up(lab)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Its proxies died with it (it is contained), so nothing answers on its ports.
    state = warm.read_state(lab.state)
    assert state is not None
    ports = [t.endpoint[1] for t in state.topologies.values() if t.endpoint]
    time.sleep(0.5)
    listening = Path("/proc/net/tcp").read_text()
    assert not [port for port in ports if f":{port:04X} 00000000:0000 0A" in listening]
    run = lab.run(tmp_path / "r.json", "--scenario", "websockets-echo")
    assert "warm lab" not in run.stderr + run.stdout
    assert not lab.state.exists(), "the stale state file was removed"


# Pure logic: matching a run to a lab.


def state_for(options: StackOptions, topologies: list[str]) -> warm.LabState:
    known = load_topologies()
    return warm.LabState(
        started_at=0,
        control=("127.0.0.1", 1),
        socket="/nonexistent",
        run_dir="/tmp",
        websockets="17.4",
        options=asdict(options),
        topologies={
            name: warm.WarmTopology(
                status=DeploymentStatus.READY,
                endpoint=("127.0.0.1", 2),
                fingerprint=warm.fingerprint(known[name]),
            )
            for name in topologies
        },
    )


@pytest.mark.fast
def test_a_lab_matches_the_same_options_and_topologies() -> None:
    known = load_topologies()
    options = StackOptions(time_scale=ACCELERATED)
    state = state_for(options, ["direct", "nginx-default"])
    assert warm.mismatch(state, [known["direct"]], options, None) is None
    assert warm.changed(state, [known["direct"], known["nginx-default"]]) == []
    other = StackOptions(time_scale=ACCELERATED, websockets_version="15.0.1")
    assert "websockets_version=None, this run asks '15.0.1'" in str(warm.mismatch(state, [], other, None))
    missing = warm.mismatch(
        state, [known[name] for name in ("haproxy-default", "envoy-default")], options, None
    )
    assert missing == "it does not run haproxy-default, envoy-default (start it with those topologies)"


@pytest.mark.fast
def test_a_changed_file_changes_the_fingerprint(tmp_path: Path) -> None:
    topology = load_topologies()["nginx-default"]
    copy = tmp_path / "nginx-default"
    shutil.copytree(topology.folder, copy)
    moved = dataclasses.replace(topology, folder=copy)
    assert warm.fingerprint(moved) == warm.fingerprint(topology)
    (copy / "nginx.conf").write_text((copy / "nginx.conf").read_text() + "#")
    assert warm.fingerprint(moved) != warm.fingerprint(topology)


@pytest.mark.fast
def test_a_state_file_that_is_not_one_is_no_lab(tmp_path: Path) -> None:
    for text in ["", "{", '{"started_at": "x"}', "[]", "\0" * 100]:
        (tmp_path / "lab.json").write_text(text)
        assert warm.read_state(tmp_path / "lab.json") is None
        assert warm.running(tmp_path / "lab.json") is None
    assert warm.read_state(tmp_path / "absent.json") is None


@pytest.mark.fast
def test_the_socket_answers_a_bad_request_in_one_line(tmp_path: Path) -> None:
    async def exchange(payload: bytes) -> dict:
        async def handle(request: dict) -> dict:
            return {"ok": True, "echo": request.get("op")}

        path = tmp_path / "lab.sock"
        server = await warm.serve_requests(path, handle)
        assert path.stat().st_mode & 0o077 == 0, "owner only"
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(payload)
        await writer.drain()
        line = await reader.readline()
        writer.close()
        server.close()
        return json.loads(line)

    assert asyncio.run(exchange(b'{"op": "status"}\n')) == {"ok": True, "echo": "status"}
    for payload in [b"not json\n", b"[1, 2]\n", b'{"op": "' + b"x" * 100_000 + b'"}\n']:
        reply = asyncio.run(exchange(payload))
        assert reply["ok"] is False and reply["error"].startswith("bad request")
