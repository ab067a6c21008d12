"""Network faults (lab/faults.py): the commands planned per fault and their removal (fast, no
kernel), then real runs in the lab's private network namespace, including a ``kill -9`` of a run
with a fault on, after which the host's iptables rules and loopback qdiscs are as they were."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import namespace_gone

from wslab import faults
from wslab.faults import Fault, Hop, plan
from wslab.records import FaultRecord
from wslab.reports.timeline import fault_timeline
from wslab.scenario import load_scenarios

ROOT = Path(__file__).resolve().parent.parent
FAULTS_FILE = ROOT / "scenarios" / "faults.yaml"


def _argv(command: list[str]) -> str:
    return " ".join(command)


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["stall", "reset"])
def test_stall_and_reset_are_iptables_rules_on_both_directions_removed_one_for_one(kind: str) -> None:
    planned = plan(Fault(kind, "proxy-server"), Hop(41000), 7)
    assert not planned.shared
    applied = [_argv(c) for c in planned.apply]
    assert [c.split(" -j ")[0].split(" -m ")[0] for c in applied] == [
        "iptables -w -I INPUT -i lo -p tcp --dport 41000"
        + (" ! --tcp-flags RST RST" if kind == "reset" else ""),
        "iptables -w -I INPUT -i lo -p tcp --sport 41000"
        + (" ! --tcp-flags RST RST" if kind == "reset" else ""),
    ]
    target = "-j DROP" if kind == "stall" else "-j REJECT --reject-with tcp-reset"
    assert all(c.endswith(target) and "--comment wslab-fault-7" in c for c in applied)
    # Each removal is its rule with -D instead of -I, latest first.
    assert [_argv(c) for c in planned.remove] == [c.replace(" -I ", " -D ") for c in reversed(applied)]


@pytest.mark.fast
def test_bandwidth_is_an_htb_class_with_a_filter_per_direction() -> None:
    planned = plan(Fault("bandwidth", "client-proxy", rate_kbit=800), Hop(42000), 26)
    # Both directions leave lo: one class there, shared with nothing else.
    assert [(_argv(put), _argv(undo)) for put, undo in planned.shared] == [
        ("tc qdisc add dev lo root handle 1: htb", "tc qdisc del dev lo root")
    ]
    assert [_argv(c) for c in planned.apply] == [
        "tc class add dev lo parent 1: classid 1:1a htb rate 800kbit ceil 800kbit burst 70k cburst 70k",
        "tc filter add dev lo parent 1: protocol ip prio 52 u32 match ip dport 42000 0xffff flowid 1:1a",
        "tc filter add dev lo parent 1: protocol ip prio 53 u32 match ip sport 42000 0xffff flowid 1:1a",
    ]
    assert [_argv(c) for c in planned.remove] == [
        "tc filter del dev lo parent 1: protocol ip prio 53",
        "tc filter del dev lo parent 1: protocol ip prio 52",
        "tc class del dev lo classid 1:1a",
    ]


@pytest.mark.fast
def test_latency_is_netem_under_an_unshaped_class() -> None:
    planned = plan(Fault("latency", "proxy-server", delay_ms=250), Hop(43000), 1)
    applied = [_argv(c) for c in planned.apply]
    assert "rate 10gbit" in applied[0]
    assert applied[1] == "tc qdisc add dev lo parent 1:1 handle 1: netem delay 250ms"
    assert _argv(planned.remove[-2]) == "tc qdisc del dev lo parent 1:1 handle 1:"


@pytest.mark.fast
def test_every_planned_command_acts_on_loopback_only() -> None:
    for kind in faults.KINDS:
        planned = plan(Fault(kind, "client-proxy"), Hop(44000), 3)
        for command in planned.apply + planned.remove + [c for pair in planned.shared for c in pair]:
            assert command[0] in ("iptables", "tc")
            assert tuple(command[4:6]) == ("-i", "lo") if command[0] == "iptables" else "lo" in command


CONTAINER_HOP = Hop(8080, "eth0", 4242, "container wslab-nginx-websocket-1")


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["stall", "reset"])
def test_in_a_container_each_direction_is_matched_where_it_crosses_the_containers_interface(
    kind: str,
) -> None:
    planned = plan(Fault(kind, "client-proxy"), CONTAINER_HOP, 5)
    applied = [_argv(c) for c in planned.apply]
    inside = "nsenter --target 4242 --net "
    # What reaches the listener comes in on eth0; what it sends leaves by OUTPUT, never INPUT.
    assert [c.split(" -m ")[0].replace(" ! --tcp-flags RST RST", "") for c in applied] == [
        inside + "iptables -w -I INPUT -i eth0 -p tcp --dport 8080",
        inside + "iptables -w -I OUTPUT -o eth0 -p tcp --sport 8080",
    ]
    assert all("--comment wslab-fault-5" in c for c in applied)
    assert [_argv(c) for c in planned.remove] == [c.replace(" -I ", " -D ") for c in reversed(applied)]


INSIDE = "nsenter --target 4242 --net "


@pytest.mark.fast
def test_in_a_container_bandwidth_is_shaped_on_an_ifb_device_both_directions_are_redirected_to() -> None:
    planned = plan(Fault("bandwidth", "client-proxy", rate_kbit=800), CONTAINER_HOP, 26)
    # eth0 sends only what the listener sends: both directions go to the lab's ifb device, which
    # both leave, with the class and its filters as on lo; the redirections go on last.
    assert [_argv(c).removeprefix(INSIDE) for c in planned.apply] == [
        "tc class add dev wslab-eth0 parent 1: classid 1:1a"
        " htb rate 800kbit ceil 800kbit burst 70k cburst 70k",
        "tc filter add dev wslab-eth0 parent 1: protocol ip prio 52"
        " u32 match ip dport 8080 0xffff flowid 1:1a",
        "tc filter add dev wslab-eth0 parent 1: protocol ip prio 53"
        " u32 match ip sport 8080 0xffff flowid 1:1a",
        "tc filter add dev eth0 ingress protocol ip prio 52 u32 match ip dport 8080 0xffff"
        " action mirred egress redirect dev wslab-eth0",
        "tc filter add dev eth0 egress protocol ip prio 53 u32 match ip sport 8080 0xffff"
        " action mirred egress redirect dev wslab-eth0",
    ]
    assert [_argv(c).removeprefix(INSIDE) for c in planned.remove] == [
        "tc filter del dev eth0 egress protocol ip prio 53",
        "tc filter del dev eth0 ingress protocol ip prio 52",
        "tc filter del dev wslab-eth0 parent 1: protocol ip prio 53",
        "tc filter del dev wslab-eth0 parent 1: protocol ip prio 52",
        "tc class del dev wslab-eth0 classid 1:1a",
    ]
    assert all(_argv(c).startswith(INSIDE) for c in planned.apply + planned.remove)


@pytest.mark.fast
def test_in_a_container_the_ifb_device_and_the_qdiscs_are_shared_and_go_in_reverse() -> None:
    planned = plan(Fault("bandwidth", "proxy-server"), CONTAINER_HOP, 5)
    assert [
        (_argv(put).removeprefix(INSIDE), _argv(undo).removeprefix(INSIDE)) for put, undo in planned.shared
    ] == [
        ("ip link add wslab-eth0 up type ifb", "ip link del wslab-eth0"),
        ("tc qdisc add dev wslab-eth0 root handle 1: htb", "tc qdisc del dev wslab-eth0 root"),
        ("tc qdisc add dev eth0 clsact", "tc qdisc del dev eth0 clsact"),
    ]
    # The same for every tc fault in that namespace, whichever took it off last.
    assert plan(Fault("latency", "client-proxy"), CONTAINER_HOP, 9).shared == planned.shared
    assert faults.shaper(Hop(1, "enp0s31f6long", 1)) == "wslab-enp0s31f6"  # the kernel's 15 characters


@pytest.mark.fast
def test_in_a_container_latency_is_netem_on_the_ifb_device_which_each_direction_crosses_once() -> None:
    planned = plan(Fault("latency", "proxy-server", delay_ms=250), CONTAINER_HOP, 1)
    applied = [_argv(c).removeprefix(INSIDE) for c in planned.apply]
    assert applied[1] == "tc qdisc add dev wslab-eth0 parent 1:1 handle 1: netem delay 250ms"
    assert [c.split(" prio ")[0] for c in applied[-2:]] == [
        "tc filter add dev eth0 ingress protocol ip",
        "tc filter add dev eth0 egress protocol ip",
    ]


class Kernel:
    """Stands in for faults._execute: records every command, fails those naming ``lacks`` as a
    kernel without that part does."""

    def __init__(self, lacks: str | None = None) -> None:
        self.ran: list[str] = []
        self.lacks = lacks

    async def __call__(self, command: list[str]) -> tuple[int, str]:
        self.ran.append(_argv(command).removeprefix(INSIDE))
        if self.lacks in command:
            return 2, "Error: Specified qdisc kind is unknown."
        return 0, ""


@pytest.mark.fast
def test_the_ifb_device_comes_with_the_first_tc_fault_in_a_namespace_and_goes_with_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = Kernel()
    monkeypatch.setattr(faults, "_execute", kernel)
    other_port = Hop(9090, "eth0", 4242, "container wslab-probe-1")

    async def two_faults() -> list[list[str]]:
        control = faults.FaultController()
        first = await control.apply(Fault("bandwidth", "client-proxy"), CONTAINER_HOP)
        second = await control.apply(Fault("bandwidth", "proxy-server"), other_port)
        # The evidence of the first says how the ifb device came; the second found it there.
        assert first.prepared == [put for put, _ in faults.shared(CONTAINER_HOP)] and second.prepared == []
        marks = [len(kernel.ran)]
        assert await control.clear(first) == []
        marks.append(len(kernel.ran))
        assert await control.clear_all() == []
        return [kernel.ran[: marks[0]], kernel.ran[marks[0] : marks[1]], kernel.ran[marks[1] :]]

    put_on, first_off, last_off = asyncio.run(two_faults())
    shared = [
        (_argv(a).removeprefix(INSIDE), _argv(b).removeprefix(INSIDE)) for a, b in faults.shared(other_port)
    ]
    assert put_on[:3] == [put for put, _ in shared] and len(put_on) == 3 + 2 * 5
    assert not any(c.startswith("ip link") or "qdisc" in c for c in first_off)
    assert last_off[-3:] == [undo for _, undo in reversed(shared)]
    assert last_off[:2] == [
        "tc filter del dev eth0 egress protocol ip prio 5",
        "tc filter del dev eth0 ingress protocol ip prio 4",
    ]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("lacks", "reason"),
    [("clsact", "tc clsact is not available"), ("netem", "tc netem is not available")],
)
def test_a_kernel_part_missing_is_not_measured_and_what_was_put_on_is_taken_off(
    monkeypatch: pytest.MonkeyPatch, lacks: str, reason: str
) -> None:
    kernel = Kernel(lacks)
    monkeypatch.setattr(faults, "_execute", kernel)
    control = faults.FaultController()
    with pytest.raises(faults.FaultUnavailable, match=reason):
        asyncio.run(control.apply(Fault("latency", "proxy-server"), CONTAINER_HOP))
    # Every command that put something on is followed, in reverse, by the one that takes it off.
    steps = [*faults.shared(CONTAINER_HOP), *plan(Fault("latency", "proxy-server"), CONTAINER_HOP, 1).steps]
    undo = {_argv(put).removeprefix(INSIDE): _argv(off).removeprefix(INSIDE) for put, off in steps}
    done = [c for c in kernel.ran if " add " in c and lacks not in c.split()]
    assert done and kernel.ran[len(done) + 1 :] == [undo[c] for c in reversed(done)]
    assert control.active == []


@pytest.mark.fast
def test_a_loopback_hop_in_the_labs_namespace_runs_its_commands_as_they_are() -> None:
    assert Hop(9000).inside(["tc", "qdisc"]) == ["tc", "qdisc"]
    assert _argv(faults.shared(Hop(9000))[0][0]) == "tc qdisc add dev lo root handle 1: htb"
    assert faults.shared(CONTAINER_HOP)[0][1][:5] == ["nsenter", "--target", "4242", "--net", "ip"]
    assert CONTAINER_HOP.describe() == "port 8080 in container wslab-nginx-websocket-1"


@pytest.mark.fast
def test_a_containers_device_is_its_default_routes() -> None:
    from wslab.backends.container_events import default_device

    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth1\t0010A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth1\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert default_device(table) == "eth1"
    assert default_device(table.splitlines()[0]) is None


@pytest.mark.fast
def test_a_container_hop_needs_no_private_namespace_but_nsenter_failing_is_not_measured() -> None:
    # Outside the lab's private namespace, a container's hop is still allowed: its rules go into
    # the container's namespace. A namespace nsenter cannot enter is "not measured", not a failure.
    gone = Hop(8080, "eth0", 2**22 + 1, "container gone")
    with pytest.raises(faults.FaultUnavailable, match="cannot run it in the hop's network namespace"):
        asyncio.run(faults.FaultController().apply(Fault("stall", "client-proxy"), gone))


@pytest.mark.fast
def test_slots_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        plan(Fault("stall", "client-proxy"), Hop(1), 0x1000)


@pytest.mark.fast
def test_fault_steps_make_a_scenario_exclusive_and_need_no_open_websocket() -> None:
    scenarios = load_scenarios([FAULTS_FILE])
    assert scenarios and all(s.uses_faults and s.exclusive for s in scenarios)


@pytest.mark.fast
def test_the_controller_refuses_outside_a_private_namespace() -> None:
    # This test process was never isolated (and containment is off in-process): nothing may be
    # done to the host's network.
    assert faults.isolate() is not None and faults.unavailable() is not None
    with pytest.raises(faults.FaultUnavailable):
        asyncio.run(faults.FaultController().apply(Fault("stall", "client-proxy"), Hop(45000)))


# Real runs: `wslab run` as a command (contained, so it may make its own network namespace).

needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("tc"),
    reason="needs root, iptables and tc",
)


def _host_network() -> tuple[list[str], str]:
    """The host namespace's iptables rules that wslab could have made, and lo's qdiscs."""
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True).stdout
    qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True, check=True)
    return [line for line in rules.splitlines() if faults.MARK in line], qdiscs.stdout


def _wslab(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "wslab", "run", "--scenarios", str(FAULTS_FILE), *arguments]


@needs_root_tools
def test_stall_and_reset_through_real_proxies(tmp_path: Path) -> None:
    before = _host_network()
    output = tmp_path / "run.json"
    completed = subprocess.run(
        _wslab(
            *("-t", "direct", "-t", "nginx-websocket", "-t", "haproxy-default"),
            *("--scenario", "stall-proxy-server", "--scenario", "reset-client-proxy"),
            *("--scenario", "reset-proxy-server", "--scenario", "latency-proxy-server"),
            *("--json", str(output)),
        ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode in (0, 1), completed.stderr
    cells = {(c["topology"], c["scenario"]): c for c in json.loads(output.read_text())["cells"]}
    # A stall through direct: nothing on the path closes it within the hold.
    assert cells["direct", "stall-proxy-server"]["outcome"] == "pass"
    for proxy, directive in (
        ("nginx-websocket", "proxy_read_timeout"),
        ("haproxy-default", "timeout tunnel"),
    ):
        stall = cells[proxy, "stall-proxy-server"]
        hold = stall["client"]["hold"]
        assert hold["closed"] and hold["code"] == 1006, hold
        assert stall["client"]["faults"][0]["closed_after"] is not None
        assert stall["diagnosis"]["rule"] == "stall-idle-timeout"
        assert directive in stall["diagnosis"]["fix"]
    for topology in ("direct", "nginx-websocket", "haproxy-default"):
        for scenario in ("reset-client-proxy", "reset-proxy-server"):
            cell = cells[topology, scenario]
            assert cell["outcome"] == "pass", cell["checks"]
            assert cell["client"]["close"]["code"] == 1006
            assert cell["client"]["faults"][0]["closed_after"] < 1.0
        latency = cells[topology, "latency-proxy-server"]
        if latency["outcome"] == "not-measured":
            assert latency["error"] == "not measured: tc netem is not available in this kernel"
        else:
            assert latency["outcome"] == "pass"
    assert _host_network() == before


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _private_namespace_with_a_fault(root: int) -> tuple[str, int] | None:
    """The lab's own network namespace (its inode) and a process in it, once a fault rule is on."""
    host = os.readlink("/proc/self/ns/net")
    for pid in _descendants(root):
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if namespace == host:
            continue
        rules = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "iptables", "-w", "-S"], capture_output=True, text=True
        ).stdout
        if faults.MARK in rules:
            return namespace, pid
    return None


@needs_root_tools
@pytest.mark.skipif(not shutil.which("nsenter"), reason="needs nsenter")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_run_killed_mid_fault_leaves_no_rule_anywhere(signum: int) -> None:
    before = _host_network()
    env = {**os.environ, "WSLAB_CONTAINMENT": "pid-namespace"}
    # The stall's hold lasts 150 faithful seconds: with --faithful it is still on when killed.
    lab = subprocess.Popen(
        _wslab("-t", "nginx-websocket", "--scenario", "stall-proxy-server", "--faithful"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        found = None
        deadline = time.monotonic() + 60
        while found is None and time.monotonic() < deadline and lab.poll() is None:
            found = _private_namespace_with_a_fault(lab.pid)
            time.sleep(0.2)
        assert found is not None, "the run never put its fault on"
        # While the fault is on, the host's network has none of it.
        assert _host_network() == before
        # Ctrl-C reaches the terminal's whole process group; kill -9 the process the user started.
        if signum == signal.SIGINT:
            os.killpg(lab.pid, signum)
        else:
            os.kill(lab.pid, signum)
        lab.wait(timeout=20)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    namespace, _ = found
    assert namespace_gone(namespace), "a process of the lab outlived it in its namespace"
    assert _host_network() == before


@pytest.mark.fast
def test_the_timeline_puts_the_fault_its_end_and_the_close_on_one_axis() -> None:
    on = FaultRecord(
        kind="stall", hop="proxy-server", port=5000, applied_at=100.0, cleared_at=102.0, closed_after=1.5
    )
    line = fault_timeline([on])
    assert line is not None and (line["start"], line["end"]) == (0.0, 2.0)
    assert [(mark["kind"], mark["x"]) for mark in line["marks"]] == [
        ("event", 0.0),
        ("close", 75.0),
        ("cleared", 100.0),
    ]
    never = FaultRecord(
        kind="latency", hop="proxy-server", port=5000, applied_at=None, not_measured="no netem"
    )
    assert fault_timeline([never]) is None, "nothing to draw for a fault that was never on"
