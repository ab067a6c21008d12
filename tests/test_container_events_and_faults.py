"""Lifecycle events and network faults on the compose stack (lab/backends/container_events.py):
the same outcomes as on the local backend, every rule taken off at the end of its cell, and
nothing left behind: no container, network or volume, no iptables rule, tc qdisc or ifb device
of the lab's anywhere. A bandwidth fault in a container is also measured on its own, on a plain
TCP echo, with the container removed while it is on.

Needs a running Docker engine and the images of scripts/build-offline-images.sh, root, nsenter,
iptables, tc, ip, and the proxies installed locally (the local run is the reference).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import compose_down, docker_state, namespace_gone, offline_image
from docker.models.containers import Container

from wslab import faults
from wslab.backends.compose import compose_command
from wslab.backends.container_events import listener_hop
from wslab.compose_file import COMPOSE_FILE, OFFLINE_FILE, project
from wslab.proxies import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("direct", "nginx-websocket", "haproxy-default")
FAULTS = ("stall-proxy-server", "reset-client-proxy", "reset-proxy-server")

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("iptables", "nsenter", "tc", "ip")),
        reason="needs root, iptables, nsenter, tc and ip",
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


def _lab_network(namespace_pid: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """What the lab's faults could leave in the host's namespace or a process's: its iptables
    rules, every network device by name, and every qdisc that is not a device's default."""
    enter = [] if namespace_pid is None else ["nsenter", "--target", str(namespace_pid), "--net"]
    links = subprocess.run([*enter, "ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    # 'N: NAME@PEER: <FLAGS> ...': a veth's peer index differs from one container to the next.
    devices = sorted(line.split(": ")[1].split("@")[0] for line in links.stdout.splitlines())
    qdiscs = subprocess.run([*enter, "tc", "qdisc", "show"], capture_output=True, text=True, check=True)
    added = [line for line in qdiscs.stdout.splitlines() if line.split()[1] not in DEFAULT_QDISCS]
    return _lab_rules(namespace_pid), devices, added


DEFAULT_QDISCS = ("noqueue", "pfifo_fast", "mq", "fq_codel", "pfifo")
"""What a device gets when nobody adds a qdisc (by kind)."""


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


def _local_and_kept_stack(
    tmp_path: Path, chosen: Iterable[str], inspect: Callable[[str, int], None]
) -> tuple[dict, dict]:
    """faults.yaml's ``chosen`` scenarios run locally, then on a compose stack kept up so that each
    container's own network namespace can be read (``inspect(container, pid)``) before it is
    taken down: what the cells put there must be gone because they took it off, not because the
    container went. Both runs' cells, by (topology, scenario)."""
    scenarios = ["--scenarios", str(ROOT / "scenarios" / "faults.yaml")]
    scenarios += [arg for scenario in chosen for arg in ("--scenario", scenario)]
    local = _run(tmp_path, "local", *scenarios)
    compose = [*compose_command(), "-p", project(), "-f", COMPOSE_FILE, "-f", OFFLINE_FILE]
    try:
        stack = _run(tmp_path, "compose", *scenarios, "--backend", "compose", "--offline", "--keep")
        listed = subprocess.run([*compose, "ps", "-q"], cwd=ROOT, capture_output=True, text=True)
        containers = listed.stdout.split()
        assert len(containers) == 3, listed.stderr  # the probe server, nginx and HAProxy
        for container in containers:
            pid = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True
            ).stdout.strip()
            inspect(container, int(pid))
    finally:
        down = compose_down([*compose, "down", "-v", "--remove-orphans"], cwd=ROOT)
    assert down.complete, down.result.stderr
    assert stack.keys() == local.keys()
    return local, stack


def test_stalls_and_resets_in_the_stack_match_local_and_leave_no_rule(engine: None, tmp_path: Path) -> None:
    before, rules = docker_state(), _lab_rules()

    def no_rule_left(container: str, pid: int) -> None:
        assert _lab_rules(pid) == [], container

    local, stack = _local_and_kept_stack(tmp_path, FAULTS, no_rule_left)
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


SHAPED = ("bandwidth-client-proxy", "latency-proxy-server")


def _seconds_under_fault(cell: dict) -> float:
    """How long the echo took under the fault, from its step's detail ('0.452 s under ...')."""
    (echo,) = [step for step in cell["client"]["steps"] if step["step"] == "expect_message"]
    return float(echo["detail"].split(" s under ")[0])


def test_bandwidth_in_the_stack_is_measured_as_locally_and_leaves_nothing(
    engine: None, tmp_path: Path
) -> None:
    before, host = docker_state(), _lab_network()

    def nothing_shaped_left(container: str, pid: int) -> None:
        rules, devices, qdiscs = _lab_network(pid)
        assert (rules, qdiscs) == ([], []), container
        assert not any(d.startswith(faults.IFB_PREFIX) for d in devices), (container, devices)

    local, stack = _local_and_kept_stack(tmp_path, SHAPED, nothing_shaped_left)
    for topology in TOPOLOGIES:
        shaped, reference = (
            stack[topology, "bandwidth-client-proxy"],
            local[topology, "bandwidth-client-proxy"],
        )
        assert shaped["outcome"] == reference["outcome"] == "pass", (
            topology,
            shaped["checks"],
            shaped["error"],
        )
        commands = shaped["client"]["faults"][0]["commands"]
        assert any(" ip link add wslab-eth0 up type ifb" in c for c in commands), commands
        # 256 KiB each way at 8 Mbit/s: about 0.26 s per direction less htb's burst. Shaping
        # only one direction would take about half as long as shaping both, as lo does locally.
        seconds, locally = _seconds_under_fault(shaped), _seconds_under_fault(reference)
        assert 0.35 < locally < 3 and 0.35 < seconds < 3, (topology, seconds, locally)
        assert abs(seconds - locally) < 0.5 * locally, (topology, seconds, locally)
        latency, reference = stack[topology, "latency-proxy-server"], local[topology, "latency-proxy-server"]
        # Without sch_netem, both say why; the ifb device it needed first was taken off again.
        assert (latency["outcome"], latency["error"]) == (reference["outcome"], reference["error"])
    assert docker_state() == before
    assert _lab_network() == host


ECHO = """
import socket, sys, threading
def serve(port):
    listener = socket.create_server(("0.0.0.0", port))
    while True:
        connection, _ = listener.accept()
        with connection:
            header = connection.recv(16)
            if not header:
                continue  # a readiness check
            size, got = int(header), len(header) - 16
            while got < size:
                got += len(connection.recv(65536))
            connection.sendall(bytes(size))
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),)).start()
"""
ECHO_PORTS = (9000, 9001)
ECHO_BYTES = 1 << 20


def _echo(address: str, port: int) -> tuple[float, float]:
    """Seconds that 1 MiB took to reach the echo (until its first byte back) and to come back."""
    with socket.create_connection((address, port), timeout=30) as connection:
        started = time.monotonic()
        connection.sendall(f"{ECHO_BYTES:<16}".encode() + bytes(ECHO_BYTES))
        back = len(connection.recv(65536))
        turned = time.monotonic()
        while back < ECHO_BYTES:
            back += len(connection.recv(65536))
        return turned - started, time.monotonic() - turned


@pytest.fixture
def host_network(engine: None) -> tuple[list[str], list[str], list[str]]:
    """The host's network as the lab's faults could change it, before any container of the test."""
    return _lab_network()


@pytest.fixture
def echo_container(host_network: object) -> Iterator[Container]:
    """A container of the lab's image running a TCP echo on ECHO_PORTS, removed at the end."""
    client = docker.from_env()
    container = client.containers.run(
        offline_image(), ["python3", "-c", ECHO, *map(str, ECHO_PORTS)], detach=True, entrypoint=[]
    )
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["IPAddress"]
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((address, ECHO_PORTS[-1]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, container.logs().decode()[-2000:]
                time.sleep(0.2)
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):  # a test removed it
            container.remove(force=True)


def test_a_bandwidth_fault_in_a_container_shapes_both_directions_of_its_port_only(
    echo_container: Container, host_network: tuple
) -> None:
    """8 Mbit/s on one port of a container: 1 MiB takes about a second each way there (not only
    the way the container sends), the other port is untouched, and clearing the fault takes
    the ifb device, the qdiscs and the filters out of the container's namespace."""
    hop = listener_hop(echo_container, ECHO_PORTS[0])
    address = echo_container.attrs["NetworkSettings"]["IPAddress"]
    untouched = _lab_network(hop.namespace)
    control = faults.FaultController()
    active = asyncio.run(control.apply(faults.Fault("bandwidth", "client-proxy", rate_kbit=8000), hop))
    try:
        assert faults.shaper(hop) in _lab_network(hop.namespace)[1]
        # 8.4 Mbit each way, less htb's 70 KiB burst: about 0.98 s.
        up, down = _echo(address, ECHO_PORTS[0])
        assert 0.85 < up < 5 and 0.85 < down < 5, (up, down)
        assert sum(_echo(address, ECHO_PORTS[1])) < 0.5
    finally:
        assert asyncio.run(control.clear(active)) == []
    assert _lab_network(hop.namespace) == untouched
    assert sum(_echo(address, ECHO_PORTS[0])) < 0.5
    # The host's only change is the container's veth, which goes with it.
    rules, devices, qdiscs = _lab_network()
    assert (rules, qdiscs) == (host_network[0], host_network[2])
    assert [d for d in devices if not d.startswith("veth")] == host_network[1]


def test_an_ifb_device_dies_with_its_container_and_nothing_reaches_the_host(
    echo_container: Container, host_network: tuple
) -> None:
    """A container removed with a bandwidth fault on (a stack taken down mid-cell, or killed):
    its namespace takes the ifb device with it; the kernel moves no device of it to the host's."""
    hop = listener_hop(echo_container, ECHO_PORTS[0])
    asyncio.run(faults.FaultController().apply(faults.Fault("bandwidth", "client-proxy"), hop))
    assert faults.shaper(hop) in _lab_network(hop.namespace)[1]
    namespace = os.readlink(f"/proc/{hop.namespace}/ns/net")
    echo_container.remove(force=True)
    assert namespace_gone(namespace)
    assert _lab_network() == host_network
