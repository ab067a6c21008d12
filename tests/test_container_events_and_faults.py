"""Lifecycle events and network faults on the compose stack (lab/backends/container_events.py):
the same outcomes as on the local backend, every rule taken off at the end of its cell, and
nothing left behind: no container, network or volume, no iptables rule of the lab's anywhere.

Needs a running Docker engine and the images of scripts/build-offline-images.sh, root, nsenter,
iptables, and the proxies installed locally (the local run is the reference).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_down, docker_state

from wslab import faults
from wslab.backends.compose import compose_command
from wslab.compose_file import COMPOSE_FILE, OFFLINE_FILE, project
from wslab.proxies import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("direct", "nginx-websocket", "haproxy-default")
FAULTS = ("stall-proxy-server", "reset-client-proxy", "reset-proxy-server")

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("iptables", "nsenter")),
        reason="needs root, iptables and nsenter",
    ),
    pytest.mark.skipif(
        any(REGISTRY[kind].locate() is None for kind in ("nginx", "haproxy")),
        reason="the local reference run needs nginx and haproxy",
    ),
]


def _run(tmp_path: Path, name: str, *arguments: str) -> dict[tuple[str, str], dict]:
    out = tmp_path / f"{name}.json"
    argv = [sys.executable, "-m", "wslab", "run", *arguments, "--json", str(out)]
    for topology in TOPOLOGIES:
        argv += ["-t", topology]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return {(c["topology"], c["scenario"]): c for c in json.loads(out.read_text())["cells"]}


def _lab_rules(namespace_pid: int | None = None) -> list[str]:
    """The iptables rules carrying the lab's comment, in the host's namespace or a process's."""
    enter = [] if namespace_pid is None else ["nsenter", "--target", str(namespace_pid), "--net"]
    listing = subprocess.run([*enter, "iptables", "-w", "-S"], capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if faults.MARK in line]


def _fate(cell: dict) -> tuple:
    """What must agree between backends for a lifecycle cell."""
    life = cell["client"]["lifecycle"]
    return cell["outcome"], life["survived"], life["code"], life["close_frame_received"], life["closed_by"]


def test_reloads_and_restarts_on_compose_do_what_they_do_locally(engine: None, tmp_path: Path) -> None:
    before, rules = docker_state(), _lab_rules()
    local = _run(tmp_path, "local", "--suite", "lifecycle")
    stack = _run(tmp_path, "compose", "--suite", "lifecycle", "--backend", "compose", "--offline")
    assert stack.keys() == local.keys()
    for name in ("nginx-websocket", "haproxy-default"):
        reload = stack[name, "proxy-reload"]
        assert reload["outcome"] == "pass", reload["checks"]
        assert reload["client"]["lifecycle"]["new_connection"]["opened"]
        assert _fate(reload) == _fate(local[name, "proxy-reload"])
    assert stack["direct", "proxy-reload"]["outcome"] == "not-applicable"
    for name in TOPOLOGIES:
        restart = stack[name, "server-restart"]
        life = restart["client"]["lifecycle"]
        assert restart["outcome"] == "pass", restart["checks"]
        assert life["code"] == 1001 and life["reconnect"]["back_after"] >= 0.9, life
        assert _fate(restart) == _fate(local[name, "server-restart"])
    assert docker_state() == before
    assert _lab_rules() == rules


def test_stalls_and_resets_in_the_stack_match_local_and_leave_no_rule(engine: None, tmp_path: Path) -> None:
    before, rules = docker_state(), _lab_rules()
    chosen = [arg for scenario in FAULTS for arg in ("--scenario", scenario)]
    scenarios = ["--scenarios", str(ROOT / "scenarios" / "faults.yaml"), *chosen]
    local = _run(tmp_path, "local", *scenarios)
    compose = [*compose_command(), "-p", project(), "-f", COMPOSE_FILE, "-f", OFFLINE_FILE]
    try:
        # Kept up, so that each container's own namespace can be read after the run: its rules
        # must be gone because the cells took them off, not because the container went.
        stack = _run(tmp_path, "compose", *scenarios, "--backend", "compose", "--offline", "--keep")
        listed = subprocess.run([*compose, "ps", "-q"], cwd=ROOT, capture_output=True, text=True)
        containers = listed.stdout.split()
        assert len(containers) == 3, listed.stderr  # the probe server, nginx and HAProxy
        for container in containers:
            pid = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True
            ).stdout.strip()
            assert _lab_rules(int(pid)) == [], container
    finally:
        down = compose_down([*compose, "down", "-v", "--remove-orphans"], cwd=ROOT)
    assert down.returncode == 0, down.stderr
    assert stack.keys() == local.keys()
    for key, cell in stack.items():
        reference = local[key]
        assert cell["outcome"] == reference["outcome"], (key, cell["checks"], cell["error"])
        assert cell["client"]["close"]["code"] == reference["client"]["close"]["code"], key
        assert (cell.get("diagnosis") or {}).get("rule") == (reference.get("diagnosis") or {}).get("rule")
        fault = cell["client"]["faults"][0]
        assert fault["commands"] and all(c.startswith("nsenter --target ") for c in fault["commands"])
        assert fault["cleared_at"] is not None
    for name in ("nginx-websocket", "haproxy-default"):
        assert stack[name, "stall-proxy-server"]["diagnosis"]["rule"] == "stall-idle-timeout"
        for scenario in ("reset-client-proxy", "reset-proxy-server"):
            assert stack[name, scenario]["client"]["faults"][0]["closed_after"] < 1.0
    assert docker_state() == before
    assert _lab_rules() == rules
