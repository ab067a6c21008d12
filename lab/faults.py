"""Network faults on one hop of a topology: a stall, a reset, a bandwidth limit, latency.

A scenario's ``fault`` step puts one on the hop between the client and the
proxy (the proxy's listening port) or between the proxy and the server (the
probe listener's port); ``clear_fault`` takes it off. A :class:`Hop` says where:
the port, the network namespace of the process listening on it and the device
its segments cross there. On the local backend that is loopback in the lab's own
namespace; on the compose and containers backends, the container's own interface
in the namespace of the container that listens (entered with ``nsenter``).
Everything here runs on real kernel facilities:

``stall``
    iptables DROP of every TCP segment to or from the hop's port: nothing
    crosses, nobody is told (a blackhole).
``reset``
    iptables REJECT --reject-with tcp-reset: each side that sends on the hop
    gets a TCP RST back.
``bandwidth``
    a tc htb class at ``rate_kbit`` with u32 filters on the port, both directions together.
``latency``
    a tc netem qdisc (``delay_ms``) under an htb class. Kernels without
    sch_netem refuse it; the cell is then "not measured", never faked.

tc shapes what leaves a device. On loopback both directions of a hop leave ``lo``,
so the class is there. A container's interface sends only one direction of the hop
out (what the listener sends); what it receives comes in. So in the container's
namespace the lab adds an ifb device of its own (``wslab-eth0``) and redirects both
directions to it (a clsact qdisc on the interface, a u32 filter on the port with
``action mirred egress redirect`` on its ingress and on its egress): both leave
the ifb device, where the class is, as they leave ``lo`` locally, and the ifb device
passes them on as they were. Other traffic is not redirected. A kernel without the
ifb device (or clsact, or mirred) refuses it; the cell is then "not measured".

Where the rules live is what makes them safe. Locally, :func:`isolate` moves
the lab into a private network namespace (with its own loopback) before
anything starts, so every rule is made there, never in the host's namespace.
The lab's containment (lab/containment.py) makes every process of the lab die
with it, even on SIGKILL; the namespace dies with its last process, and its
rules with it. A container's rules, qdiscs and ifb device are in the container's
namespace, which dies with the container when the stack is taken down: the kernel
deletes a dying namespace's virtual devices (only physical ones go back to the
host's), so the ifb device goes with it. On the ordinary exit paths
:class:`FaultController` also removes each rule itself (a ``finally`` in the
client and in :meth:`FaultController.clear_all`), and the ifb device with the last
tc fault on its namespace's device.

Planning (:func:`plan`) is pure: it turns a fault into the commands that put
it on and the commands that take it off, so tests can read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import containment

KINDS = ("stall", "reset", "bandwidth", "latency")
HOPS = ("client-proxy", "proxy-server")
DEVICE = "lo"
"""The device of a hop in the lab's own namespace."""
MARK = "wslab-fault"
"""The iptables comment on every rule the lab adds: a test (or a person) can grep for it."""
IFB_PREFIX = "wslab-"
"""The start of the name of the ifb device the lab adds in a container's namespace."""
KERNEL_PARTS = {"netem": "tc netem", "ifb": "the ifb device", "clsact": "tc clsact", "mirred": "tc mirred"}
"""What a command naming each word needs of the kernel: the cell's reason when it lacks it."""
DEFAULT_RATE_KBIT = 1000
DEFAULT_DELAY_MS = 100
LATENCY_CEILING = "10gbit"
"""The htb rate of a latency fault's class: far above what a hop carries in a test, so only netem shapes."""
COMMAND_TIMEOUT = 10.0

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class FaultUnavailable(Exception):
    """The fault cannot be put on here; the message says why (the cell is "not measured")."""


class FaultFailed(Exception):
    """A command that puts a fault on failed for another reason; the message quotes it."""


@dataclass(frozen=True)
class Fault:
    """One fault as a scenario step asks for it."""

    kind: str
    hop: str
    rate_kbit: int = DEFAULT_RATE_KBIT
    """bandwidth: the hop's rate, both directions together."""
    delay_ms: int = DEFAULT_DELAY_MS
    """latency: added to every segment on the hop, each way."""

    @classmethod
    def from_step(cls, argument: dict[str, Any]) -> Fault:
        """The fault a ``fault`` step's argument (schema-checked) describes."""
        return cls(
            kind=argument["kind"],
            hop=argument["hop"],
            rate_kbit=int(argument.get("rate_kbit", DEFAULT_RATE_KBIT)),
            delay_ms=int(argument.get("delay_ms", DEFAULT_DELAY_MS)),
        )

    def describe(self) -> str:
        """'stall on proxy-server', 'bandwidth 800 kbit/s on client-proxy'."""
        extra = {"bandwidth": f" {self.rate_kbit} kbit/s", "latency": f" +{self.delay_ms} ms"}
        return f"{self.kind}{extra.get(self.kind, '')} on {self.hop}"


@dataclass(frozen=True)
class Hop:
    """Where one hop's rules are made: the TCP port of the hop's listening side, the network
    namespace that listener is in, and the device the hop's segments cross there."""

    port: int
    device: str = DEVICE
    namespace: int | None = None
    """A process in the listener's network namespace (a container's main process), entered with
    nsenter; None: this process's own (the lab's private namespace)."""
    where: str = ""
    """What holds that namespace, for the evidence ('container wslab-probe-1')."""

    def describe(self) -> str:
        """'port 8080 in container wslab-probe-1'."""
        return f"port {self.port}" + (f" in {self.where}" if self.where else "")

    def inside(self, command: list[str]) -> list[str]:
        """``command`` as run in the hop's namespace."""
        if self.namespace is None:
            return command
        return ["nsenter", "--target", str(self.namespace), "--net", *command]


@dataclass(frozen=True)
class Plan:
    """The commands that put one fault on, each paired with the command that undoes it."""

    steps: list[tuple[list[str], list[str]]]
    shared: list[tuple[list[str], list[str]]] = field(default_factory=list)
    """What every tc fault on the hop's device shares (:func:`shared`), each paired with its
    undoing: the controller puts it on before the first such fault and takes it off after the
    last. Empty for iptables faults."""

    @property
    def apply(self) -> list[list[str]]:
        """The commands that put the fault on, in order."""
        return [put for put, _ in self.steps]

    @property
    def remove(self) -> list[list[str]]:
        """The commands that take all of it off, in order (the reverse of :attr:`apply`)."""
        return [undo for _, undo in reversed(self.steps)]


def _iptables(action: str, direction: str, hop: Hop, slot: int, target: list[str]) -> list[str]:
    # INPUT on lo sees every loopback segment once: matching the port as destination and as
    # source covers both directions of the hop. On another device, what the listener sends
    # leaves by OUTPUT, never entering INPUT.
    spare_resets = ["!", "--tcp-flags", "RST", "RST"] if target[0] == "REJECT" else []
    chain, way = ("OUTPUT", "-o") if direction == "--sport" and hop.device != DEVICE else ("INPUT", "-i")
    return hop.inside([
        "iptables", "-w", action, chain, way, hop.device, "-p", "tcp", direction, str(hop.port),
        *spare_resets, "-m", "comment", "--comment", f"{MARK}-{slot}", "-j", *target,
    ])  # fmt: skip


def shaper(hop: Hop) -> str:
    """The device whose htb qdisc shapes the hop, which both its directions leave: loopback
    itself, else the ifb device the lab adds in the hop's namespace (named after the hop's
    device, within the kernel's 15 characters)."""
    return hop.device if hop.device == DEVICE else (IFB_PREFIX + hop.device)[:15]


def _classid(slot: int) -> str:
    return f"1:{slot:x}"  # tc reads class minors as hexadecimal


def _prio(selector: str, slot: int) -> str:
    # Each direction has a priority of its own, so that each is removed by exactly one command.
    return str(2 * slot + (selector == "sport"))


def _classify(action: str, selector: str, hop: Hop, slot: int) -> list[str]:
    """A filter on the shaping device that sends one direction of the hop to the fault's class."""
    prio = _prio(selector, slot)
    command = ["tc", "filter", action, "dev", shaper(hop), "parent", "1:", "protocol", "ip", "prio", prio]
    if action == "add":
        command += ["u32", "match", "ip", selector, str(hop.port), "0xffff", "flowid", _classid(slot)]
    return hop.inside(command)


def _redirect(action: str, selector: str, hop: Hop, slot: int) -> list[str]:
    """A filter on the hop's device that sends one direction of the hop to the ifb device:
    what reaches the listener (its port as destination) where it comes in, what it sends where
    that goes out."""
    way, prio = "ingress" if selector == "dport" else "egress", _prio(selector, slot)
    command = ["tc", "filter", action, "dev", hop.device, way, "protocol", "ip", "prio", prio]
    if action == "add":
        command += ["u32", "match", "ip", selector, str(hop.port), "0xffff",
                    "action", "mirred", "egress", "redirect", "dev", shaper(hop)]  # fmt: skip
    return hop.inside(command)


def shared(hop: Hop) -> list[tuple[list[str], list[str]]]:
    """What the tc faults on the hop's device share, each with its undoing: the htb root of the
    shaping device, where unclassified traffic (every other hop) passes unshaped; off loopback
    also the ifb device itself, up, and the clsact qdisc on the hop's device that the
    redirecting filters hang on."""
    device = shaper(hop)
    root = (
        hop.inside(["tc", "qdisc", "add", "dev", device, "root", "handle", "1:", "htb"]),
        hop.inside(["tc", "qdisc", "del", "dev", device, "root"]),
    )
    if device == hop.device:
        return [root]
    return [
        (
            hop.inside(["ip", "link", "add", device, "up", "type", "ifb"]),
            hop.inside(["ip", "link", "del", device]),
        ),
        root,
        (
            hop.inside(["tc", "qdisc", "add", "dev", hop.device, "clsact"]),
            hop.inside(["tc", "qdisc", "del", "dev", hop.device, "clsact"]),
        ),
    ]


def plan(fault: Fault, hop: Hop, slot: int) -> Plan:
    """The commands for ``fault`` on ``hop``.

    ``slot`` (1 to 4095) keeps faults apart that are on at the same time on other
    topologies: it names their iptables comment, tc class, netem handle and filter
    priorities.
    """
    if not 1 <= slot <= 0xFFF:
        raise ValueError(f"slot {slot} is out of range")
    if fault.kind in ("stall", "reset"):
        target = ["DROP"] if fault.kind == "stall" else ["REJECT", "--reject-with", "tcp-reset"]
        return Plan(
            [
                (_iptables("-I", d, hop, slot, target), _iptables("-D", d, hop, slot, target))
                for d in ("--dport", "--sport")
            ]
        )
    if fault.kind not in KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    device = shaper(hop)
    classid = _classid(slot)
    rate = f"{fault.rate_kbit}kbit" if fault.kind == "bandwidth" else LATENCY_CEILING
    # A burst of at least one segment as the stack hands it to the device (64 KiB, loopback's
    # MTU or a veth's GSO size), or htb could not send one at all.
    steps = [
        (
            hop.inside(["tc", "class", "add", "dev", device, "parent", "1:", "classid", classid, "htb",
                        "rate", rate, "ceil", rate, "burst", "70k", "cburst", "70k"]),
            hop.inside(["tc", "class", "del", "dev", device, "classid", classid]),
        )
    ]  # fmt: skip
    if fault.kind == "latency":
        steps.append(
            (
                hop.inside(["tc", "qdisc", "add", "dev", device, "parent", classid, "handle", f"{slot:x}:",
                            "netem", "delay", f"{fault.delay_ms}ms"]),
                hop.inside(["tc", "qdisc", "del", "dev", device, "parent", classid, "handle", f"{slot:x}:"]),
            )
        )  # fmt: skip
    steps += [(_classify("add", s, hop, slot), _classify("del", s, hop, slot)) for s in ("dport", "sport")]
    if device != hop.device:
        # Last on, first off: nothing reaches the ifb device before its class and filters are there.
        steps += [
            (_redirect("add", d, hop, slot), _redirect("del", d, hop, slot)) for d in ("dport", "sport")
        ]
    return Plan(steps, shared(hop))


def _lacking(command: list[str], stderr: str) -> str | None:
    """Why the kernel cannot do what ``command`` asked, when its error says it lacks a part."""
    said = stderr.lower()
    if "unknown" not in said and "failed to load" not in said:
        return None
    for word, part in KERNEL_PARTS.items():
        if word in command:
            return f"{part} is not available in this kernel"
    return None


def shown(command: list[str]) -> str:
    """A command as one line, for the evidence."""
    return " ".join(command)


# Where the rules may be made.

_isolated = False
_why_not = "faults need a private network namespace; this run made none"


def isolate() -> str | None:
    """Move this process (and all it starts later) into a new network namespace with loopback up.

    Call it before any thread or child exists, and only in a lab process whose
    lifetime bounds the namespace's (a contained command: see lab/containment.py).
    Returns None on success, else why not (then :func:`controller` refuses every
    fault, and nothing is ever done to the host's network).
    """
    global _isolated, _why_not
    if _isolated:
        return None
    if containment.mode() == containment.OFF:
        _why_not = (
            "faults need the lab's containment (its private network namespace dies with the lab); "
            "this run has none (WSLAB_CONTAINMENT=off, or wslab called in-process)"
        )
        return _why_not
    if threading.active_count() > 1:
        # unshare() moves only the calling thread; the others would stay outside.
        _why_not = "faults need a private network namespace, made before any thread starts"
        return _why_not
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        _why_not = f"faults need a private network namespace: unshare(CLONE_NEWNET) failed (errno {error})"
        return _why_not
    try:
        _bring_up(DEVICE)
    except OSError as error:
        # Too late to go back, and nothing can listen on 127.0.0.1 now: the run must stop.
        raise RuntimeError(f"the lab's network namespace has no loopback: {error}") from None
    _isolated = True
    return None


def _bring_up(device: str) -> None:
    """Set ``device`` up (a new namespace's loopback starts down) with the interface ioctls."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", device.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", device.encode(), flags | _IFF_UP))


def unavailable() -> str | None:
    """Why faults cannot be put on in this process's own namespace, or None when they can (hops
    in a container's namespace do not need it)."""
    return None if _isolated else _why_not


# The executor.


@dataclass
class Active:
    """A fault that is on: what undoes it."""

    fault: Fault
    hop: Hop
    slot: int
    plan: Plan
    applied: list[list[str]] = field(default_factory=list)
    """The commands that succeeded, whose undoing is due."""
    prepared: list[list[str]] = field(default_factory=list)
    """What the tc faults on its device share, when this one was the first to need it (the last
    of them takes it off): part of how this fault was put on, for the evidence."""


async def _execute(command: list[str]) -> tuple[int, str]:
    """Run one command; its exit status and what it wrote on stderr (or why it did not run)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as error:
        return 127, f"{command[0]}: {error.strerror}"
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return 124, f"{command[0]} did not finish in {COMMAND_TIMEOUT:g} s"
    return process.returncode or 0, stderr.decode(errors="replace").strip()


class FaultController:
    """Puts faults on and takes them off, in the lab's private network namespace or a container's.

    One per process (:func:`controller`). Faults on different topologies may be on
    at once (different ports, different slots); what tc faults on one device share
    (:func:`shared`) is put on with the first and taken off with the last.
    """

    def __init__(self) -> None:
        self.active: list[Active] = []
        self._slots = 0
        self._tc_users: dict[tuple[int | None, str], int] = {}
        """How many faults on each (namespace, device) use what tc faults there share."""
        self._lock = asyncio.Lock()

    async def apply(self, fault: Fault, hop: Hop) -> Active:
        """Put ``fault`` on ``hop``; raises FaultUnavailable or FaultFailed, having undone
        whatever part of it was done."""
        why = unavailable() if hop.namespace is None else None
        if why is not None:
            raise FaultUnavailable(why)
        async with self._lock:
            self._slots = self._slots % 0xFFF + 1
            active = Active(fault, hop, self._slots, plan(fault, hop, self._slots))
            if active.plan.shared:
                users = self._tc_users.get((hop.namespace, hop.device), 0)
                if users == 0:
                    await self._share(active)
                self._tc_users[hop.namespace, hop.device] = users + 1
            self.active.append(active)
            try:
                for command in active.plan.apply:
                    await self._run_or_raise(command, fault)
                    active.applied.append(command)
            except BaseException:
                await self._undo(active)
                raise
        return active

    async def _share(self, active: Active) -> None:
        """Put on what the tc faults on the hop's device share, all of it or (undone) none."""
        done: list[list[str]] = []
        try:
            for put, undo in active.plan.shared:
                await self._run_or_raise(put, active.fault)
                active.prepared.append(put)
                done.append(undo)
        except BaseException:
            for undo in reversed(done):
                await _execute(undo)
            raise

    async def _run_or_raise(self, command: list[str], fault: Fault) -> None:
        status, stderr = await _execute(command)
        if status == 0:
            return
        lacking = _lacking(command, stderr)
        if lacking is not None:
            raise FaultUnavailable(lacking)
        if command[0] == "nsenter" and stderr.startswith("nsenter:"):
            # nsenter's own failure (it or the tool is missing, the container is gone, this is not
            # root): nothing was done.
            raise FaultUnavailable(f"cannot run it in the hop's network namespace: {stderr}")
        if status == 127:
            raise FaultUnavailable(f"{command[0]} is not installed ({stderr})")
        raise FaultFailed(f"{shown(command)}: {stderr or f'exit status {status}'}")

    async def clear(self, active: Active) -> list[str]:
        """Take ``active`` off; the removal commands that failed, with their errors (normally none)."""
        async with self._lock:
            return await self._undo(active)

    async def _undo(self, active: Active) -> list[str]:
        if active not in self.active:
            return []
        self.active.remove(active)
        failed = []
        # Only what was done is undone, latest first, each by the command that mirrors it.
        undo = dict((shown(put), remove) for put, remove in active.plan.steps)
        removals = [undo[shown(command)] for command in reversed(active.applied)]
        if active.plan.shared:
            key = (active.hop.namespace, active.hop.device)
            self._tc_users[key] -= 1
            if self._tc_users[key] == 0:
                removals += [remove for _, remove in reversed(active.plan.shared)]
        for removal in removals:
            status, stderr = await _execute(removal)
            if status != 0:
                failed.append(f"{shown(removal)}: {stderr or f'exit status {status}'}")
        return failed

    async def clear_all(self) -> list[str]:
        """Take every fault off (the run's teardown); the removal errors, if any."""
        failed = []
        for active in list(self.active):
            failed += await self.clear(active)
        return failed


_controller: FaultController | None = None


def controller() -> FaultController:
    """This process's fault controller (made on first use, inside the running event loop)."""
    global _controller
    if _controller is None:
        _controller = FaultController()
    return _controller


def now() -> float:
    """UNIX time, as the records keep it."""
    return time.time()
