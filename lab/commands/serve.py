"""`wslab up` and `wslab watch`: topologies kept up, and what the probe server receives.

What they print comes from the network (any client may connect to a topology
kept up), so every part of a request goes through
:func:`~wslab.reports.safe_text.printable` on its own: an ESC sequence in a
header value shows as ``\\x1b[2J``, a bare newline as ``\\n``, and no value can
pass for another line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import warm
from ..backends import READY
from ..backends.local import LocalBackend
from ..errors import EXIT_OK, LabFailure, UsageError
from ..observations import Closing, Event, Hello, ObservationFeed
from ..processes import wait_answering
from ..reports.safe_text import printable
from ..topology import Topology, load_topologies, select_topologies
from .common import (
    app_spec,
    probe_options,
    run_folder,
    until_signal,
)


def describe_event(event: Event) -> str:
    """One observation as ``wslab up`` and ``wslab watch`` print it (print it with markup=False):
    the request line, then one line per header; every text from the wire escaped."""
    if isinstance(event, Hello):
        secrets = "" if event.redacted else "; secrets NOT redacted (--no-redact)"
        return printable(f"probe server running websockets {event.websockets}{secrets}")
    if isinstance(event, Closing):
        listener, number = event.key
        closed = event.closed
        return printable(f"[{listener}] #{number} closed by {closed.closed_by} (code {closed.code})")
    connection = event.connection
    request = connection.request
    line = (
        f"{request.method} {request.target} {request.version}"
        if request
        else f"{connection.bytes_received} bytes, no request line"
    )
    outcome = str(connection.response.status) if connection.response else "no response"
    error = f" — {connection.error.text}" if connection.error else ""
    lines = [f"[{connection.listener}] #{connection.conn} {line} -> {outcome}{error}"]
    lines += [f"    {name}: {value}" for name, value in request.headers] if request else []
    for stream in event.streams:
        lines.append(f"    HTTP/2 stream {stream.stream}: {stream.method} {stream.target}")
        lines += [f"      {name}: {value}" for name, value in stream.headers if not name.startswith(":")]
    return "\n".join(printable(line) for line in lines)


def _event_printer(console: Console) -> Callable[[Event], None]:
    """Events are log lines: never wrapped by rich, so a line stays greppable whatever the width."""
    return lambda event: console.print(describe_event(event), markup=False, highlight=False, soft_wrap=True)


def up_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(args.topology)
    app = app_spec(args)
    with run_folder(args) as run_dir:
        backend = LocalBackend(run_dir, probe_options(args), app, fixed_ports=args.ports)
        return until_signal(_serve(args, console, backend, topologies, run_dir))


async def _serve(
    args: argparse.Namespace,
    console: Console,
    backend: LocalBackend,
    topologies: list[Topology],
    run_dir: Path,
) -> int:
    lab: KeptLab | None = None
    try:
        deployments = await backend.start(topologies)
        server = backend.app.describe() if backend.app else f"websockets {backend.websockets_version}"
        console.print(f"{server} behind {len(topologies)} topologies; logs in {run_dir}", markup=False)
        for deployment in deployments.values():
            _print_deployment(console, deployment)
        lab = KeptLab(backend, run_dir, console)
        await lab.publish()
        receiver = "your app" if backend.app else "the server"
        if os.environ.get(DETACH_TOKEN):
            # Detached, its output goes to a file nobody reads as it comes: `wslab watch` shows it.
            console.print(f"`wslab watch --control {_address(backend)}` shows what {receiver} receives.")
        else:
            console.print(
                f"What {receiver} receives is printed below. `wslab run` plays its cells here (a "
                "warm lab); Ctrl-C or `wslab down` stops everything."
            )
            backend.feed.subscribers.append(_event_printer(console))
        await lab.stopped.wait()
    finally:
        if lab is not None:
            lab.withdraw()
        await backend.stop()
    return EXIT_OK


def _address(backend: LocalBackend) -> str:
    assert backend.feed.address is not None
    return "{}:{}".format(*backend.feed.address)


def _print_deployment(console: Console, deployment: Any) -> None:
    if deployment.status == READY:
        assert deployment.endpoint is not None
        console.print(f"  {deployment.topology.name:18} {deployment.endpoint.ws_url()}", markup=False)
    else:
        detail = printable(f"{deployment.status}: {deployment.detail}")
        console.print(f"  {deployment.topology.name:18} {detail}", markup=False)


class KeptLab:
    """A ``wslab up`` as a warm lab: its state file, and the requests runs send it (lab/warm.py)."""

    def __init__(self, backend: LocalBackend, run_dir: Path, console: Console) -> None:
        self.backend = backend
        self.run_dir = run_dir
        self.console = console
        self.path = warm.state_path()
        self.socket = self.path.with_name(f"lab-{secrets.token_hex(4)}.sock")
        self.stopped = asyncio.Event()
        self.lock = asyncio.Lock()
        self.server: asyncio.AbstractServer | None = None
        self.state: warm.LabState | None = None

    async def publish(self) -> None:
        backend = self.backend
        assert backend.feed.address is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.server = await warm.serve_requests(self.socket, self.handle)
        self.state = warm.LabState(
            started_at=time.time(),
            control=backend.feed.address,
            socket=str(self.socket),
            run_dir=str(self.run_dir),
            websockets=backend.websockets_version,
            options=asdict(backend.probe),
            app=warm.app_key(backend.app),
            token=os.environ.get(DETACH_TOKEN, ""),
            topologies={name: warm.describe(d) for name, d in backend.deployments.items()},
        )
        warm.write_state(self.path, self.state)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = request.get("op")
        if operation == "status":
            return {"ok": True}
        if operation == "stop":
            self.console.print("stopping: `wslab down` asked", markup=False)
            self.stopped.set()
            return {"ok": True}
        if operation == "dump-logs":
            async with self.lock:
                await self.backend.dump_logs()
            return {"ok": True}
        if operation == "redeploy":
            return await self._redeploy(request.get("topologies"))
        return {"ok": False, "error": f"unknown request {printable(str(operation))[:40]}"}

    async def _redeploy(self, names: object) -> dict[str, Any]:
        """Restart the named topologies from their folders as they are now."""
        assert self.state is not None
        if not isinstance(names, list) or not all(name in self.backend.deployments for name in names):
            return {"ok": False, "error": "redeploy names topologies this lab does not run"}
        async with self.lock:
            fresh = load_topologies()
            for name in names:
                deployment = await self.backend.redeploy(fresh[name])
                self.state.topologies[name] = warm.describe(deployment)
                self.console.print(f"redeployed {name}: its folder changed", markup=False)
                _print_deployment(self.console, deployment)
            warm.write_state(self.path, self.state)
        return {"ok": True, "state": self.state.model_dump(mode="json")}

    def withdraw(self) -> None:
        """Remove the state file if it is still this lab's, and the socket."""
        if self.server is not None:
            self.server.close()
        current = warm.read_state(self.path)
        if current is not None and current.socket == str(self.socket):
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            self.socket.unlink()


DETACH_TOKEN = "WSLAB_DETACH_TOKEN"
"""Set for a detached ``wslab up``: it writes the token into its state file, so the command that
started it knows the file is its lab's and not another's."""
DETACH_TIMEOUT = 180.0


def detach_command(argv: list[str]) -> int:
    """``wslab up --detach`` (``argv`` checked already): start ``wslab up`` in the background, in a
    session of its own (it outlives this command, contained as any wslab command is), and print
    its URLs once it is up."""
    token = secrets.token_hex(8)
    path = warm.state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    log_path = path.with_name("up.log")
    command = [sys.executable, "-m", "wslab", *[arg for arg in argv if arg != "--detach"]]
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, DETACH_TOKEN: token},
        )
    deadline = time.monotonic() + DETACH_TIMEOUT
    while (state := warm.read_state(path)) is None or state.token != token:
        if child.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-12:])
            raise LabFailure(f"wslab up exited (status {child.returncode}) before it was up:\n{tail}")
        if time.monotonic() > deadline:
            child.terminate()
            raise LabFailure(f"wslab up was not up after {DETACH_TIMEOUT:g} s; its log: {log_path}")
        time.sleep(0.1)
    print(f"wslab up is running in the background (pid {child.pid}); its output: {log_path}")
    for name, topology in state.topologies.items():
        where = (
            f"ws://{topology.endpoint[0]}:{topology.endpoint[1]}/" if topology.endpoint else topology.detail
        )
        print(printable(f"  {name:18} {where}"))
    host, port = state.control
    print(f"`wslab run` plays its cells against it (a warm lab); `wslab watch --control {host}:{port}`")
    print("shows what the server receives; `wslab down` stops it.")
    return EXIT_OK


def down_command(args: argparse.Namespace, console: Console) -> int:
    """Stop the warm lab that `wslab up` keeps, if one runs."""
    path = warm.state_path()
    state = warm.running(path)
    if state is None:
        console.print("no warm lab is running", markup=False)
        return EXIT_OK
    asyncio.run(warm.ask(state, {"op": "stop"}, timeout=10))
    deadline = time.monotonic() + 30
    while path.exists() and (current := warm.read_state(path)) and current.socket == state.socket:
        if time.monotonic() > deadline:
            raise LabFailure(f"the warm lab did not stop within 30 s (its state: {path})")
        time.sleep(0.1)
    console.print("the warm lab stopped", markup=False)
    return EXIT_OK


def watch_command(args: argparse.Namespace, console: Console) -> int:
    host, _, port = args.control.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--control needs HOST:PORT, got {args.control!r}")
    return until_signal(_watch(host or "127.0.0.1", int(port), console))


async def _watch(host: str, port: int, console: Console) -> int:
    feed = ObservationFeed()
    feed.subscribers.append(_event_printer(console))
    await wait_answering(host, port, 60)
    await feed.start(host, port)
    try:
        await feed.closed()
    finally:
        await feed.stop()
    return EXIT_OK
