"""`wslab up` as a warm lab: its state file and socket, `wslab up --detach`, `wslab down`.

The mechanism (state, matching, the run's backend) is :mod:`wslab.warm`; this is the
command side: what ``wslab up`` publishes and answers, and the two commands around it.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import lab_lock, warm
from ..backends import READY
from ..backends.local import LocalBackend
from ..errors import EXIT_OK, LabFailure
from ..paths import state_path
from ..processes import ManagedProcess
from ..reports.safe_text import printable
from ..topology import load_topologies, select_topologies
from .common import app_spec, probe_options


def print_deployment(console: Console, deployment: Any) -> None:
    """One topology's line as `wslab up` prints it: its URL, or why it is not up."""
    if deployment.status == READY:
        assert deployment.endpoint is not None
        console.print(f"  {deployment.topology.name:18} {deployment.endpoint.ws_url()}", markup=False)
    else:
        detail = printable(f"{deployment.status}: {deployment.detail}")
        console.print(f"  {deployment.topology.name:18} {detail}", markup=False)


class KeptLab:
    """A ``wslab up`` as a warm lab: its state file, and the requests runs send it (lab/warm.py)."""

    def __init__(self, backend: LocalBackend, run_dir: Path, console: Console) -> None:
        # Runs follow the probe server on channels of their own; the lab's only prints.
        backend.feed.retain = False
        self.backend = backend
        self.run_dir = run_dir
        self.console = console
        self.path = state_path()
        name = secrets.token_hex(4)
        self.socket = self.path.with_name(f"lab-{name}.sock")
        self.forkserver = ManagedProcess(
            "forkserver",
            [sys.executable, "-m", "wslab.forkserver", str(self.path.with_name(f"run-{name}.sock"))],
            run_dir / "forkserver.log",
        )
        self.stopped = asyncio.Event()
        self.lock = asyncio.Lock()
        self.server: asyncio.AbstractServer | None = None
        self.state: warm.LabState | None = None

    async def start_forkserver(self) -> None:
        """Start the fork server first: it imports the lab while the proxies start. A lab that
        was killed before this one (this one holds the lock) is forgotten, with what it left."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (earlier := warm.read_state(self.path)) is not None:
            warm.forget(self.path, earlier)
        await self.forkserver.start()

    async def publish(self) -> None:
        backend = self.backend
        assert backend.control is not None
        self.server = await warm.serve_requests(self.socket, self.handle)
        self.state = warm.LabState(
            started_at=time.time(),
            control=backend.control,
            socket=str(self.socket),
            forkserver=await self._forkserver_ready(),
            run_dir=str(self.run_dir),
            websockets=backend.websockets_version,
            options=asdict(backend.probe),
            app=warm.app_key(backend.app),
            token=os.environ.get(DETACH_TOKEN, ""),
            topologies={name: warm.describe(d) for name, d in backend.deployments.items()},
        )
        warm.write_state(self.path, self.state)

    async def _forkserver_ready(self) -> str:
        """The fork server's socket once it listens (so the first run after ``wslab up`` is
        handed to it); empty, and said, if it died or is not ready in time."""
        socket_path = Path(self.forkserver.argv[-1])
        deadline = time.monotonic() + FORKSERVER_READY_WITHIN
        while self.forkserver.running and time.monotonic() < deadline:
            if socket_path.is_socket():
                return str(socket_path)
            await asyncio.sleep(0.02)
        self.console.print(
            f"the fork server is not ready (see {self.forkserver.log_path}): runs start their own Python",
            markup=False,
        )
        return ""

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = request.get("op")
        if operation == "status":
            return {"ok": True}
        if operation == "stop":
            self.console.print("stopping: `wslab down` asked", markup=False)
            self.stopped.set()
            return {"ok": True}
        if operation == "dump-logs":
            names = request.get("topologies")
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                return {"ok": False, "error": "dump-logs names topologies as a list of names"}
            # Not under the lock: runs dump their topologies' logs as each is done, side by side.
            await self.backend.dump_logs(names)
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
                print_deployment(self.console, deployment)
            warm.write_state(self.path, self.state)
        return {"ok": True, "state": self.state.model_dump(mode="json")}

    async def withdraw(self) -> None:
        """Remove the state file if it is still this lab's, and the sockets; stop the fork
        server and the runs it still runs."""
        if self.server is not None:
            self.server.close()
        current = warm.read_state(self.path)
        if current is not None and current.socket == str(self.socket):
            with contextlib.suppress(OSError):
                self.path.unlink()
        await self.forkserver.stop()
        for path in (self.socket, Path(self.forkserver.argv[-1])):
            with contextlib.suppress(OSError):
                path.unlink()


FORKSERVER_READY_WITHIN = 20.0
"""Seconds the fork server gets to import the lab, beyond the topologies' own start-up."""
DETACH_TOKEN = "WSLAB_DETACH_TOKEN"
"""Set for a detached ``wslab up``: it writes the token into its state file, so the command that
started it knows the file is its lab's and not another's."""
DETACH_TIMEOUT = 180.0


def detach_command(argv: list[str], args: argparse.Namespace) -> int:
    """``wslab up --detach`` (``argv`` parsed already as ``args``): start ``wslab up`` in the
    background, in a session of its own (it outlives this command, contained as any wslab command
    is), and print its URLs once it is up. If a lab that runs the same already answers, say so
    and leave it: a script may bring the lab up each time it runs."""
    path = state_path()
    if (holder := lab_lock.holder(path)) is not None:
        if (state := warm.running(path)) is None or not _same_lab(state, args):
            raise LabFailure(lab_lock.held_by(holder))
        print(f"wslab up is running already (pid {holder.pid})")
        _print_lab(state, path.with_name("up.log"))
        return EXIT_OK
    token = secrets.token_hex(8)
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
    print(f"wslab up is running in the background (pid {child.pid})")
    _print_lab(state, log_path)
    return EXIT_OK


def _same_lab(state: warm.LabState, args: argparse.Namespace) -> bool:
    """Whether the lab ``state`` describes runs what ``wslab up`` with ``args`` would run."""
    topologies = select_topologies(args.topology)
    return set(state.topologies) == {t.name for t in topologies} and (
        warm.mismatch(state, topologies, probe_options(args), app_spec(args)) is None
    )


def _print_lab(state: warm.LabState, log_path: Path) -> None:
    """The lab's URLs, then each command on a line of its own: nothing to copy is cut by a
    terminal's wrap."""
    for name, topology in state.topologies.items():
        where = (
            f"ws://{topology.endpoint[0]}:{topology.endpoint[1]}/" if topology.endpoint else topology.detail
        )
        print(printable(f"  {name:18} {where}"))
    host, port = state.control
    print("\n".join(warm_use(state.options, list(state.topologies), state.app is not None)))
    receiver = "your app" if state.app is not None else "the server"
    print(f"What {receiver} receives:  wslab watch --control {host}:{port}")
    print("Stop it:                   wslab down")
    print(printable(f"Its output:                {log_path}"))


def warm_use(options: dict[str, Any], names: list[str], app: bool = False) -> list[str]:
    """How a run uses this lab: lines to print, the command on one of its own."""
    if app:
        return ["This lab runs your app: a `wslab run` starts topologies of its own."]
    hint = warm.run_hint(options, names, list(load_topologies()))
    return ["Its cells play on these topologies (a warm lab) with:", f"  {hint}"]


def down_command(args: argparse.Namespace, console: Console) -> int:
    """Stop the warm lab that `wslab up` keeps, if one runs: asked on its socket, or, if it does
    not answer, by signal. Returns once every process of it has stopped."""
    path = state_path()
    holder = _holder(path)
    if holder is None:
        if (left := warm.read_state(path)) is not None:
            warm.forget(path, left)
        console.print("no warm lab is running", markup=False)
        return EXIT_OK
    state = warm.running(path)
    if state is not None and _asked_to_stop(state) and lab_lock.wait_ended(path, holder, STOP_WITHIN):
        console.print("the warm lab stopped", markup=False)
        return EXIT_OK
    if state is not None:
        why = f"did not stop within {STOP_WITHIN:g} s"
    else:
        why = "does not answer" if warm.read_state(path) is not None else "is still starting"
    console.print(f"the warm lab (pid {holder.pid}) {why}: stopping it by signal", markup=False)
    if not lab_lock.stop_by_signal(path, holder, STOP_WITHIN):
        raise LabFailure(f"the warm lab (pid {holder.pid}) did not stop, even killed")
    if (left := warm.read_state(path)) is not None:
        warm.forget(path, left)
    console.print("the warm lab stopped", markup=False)
    return EXIT_OK


def _asked_to_stop(state: warm.LabState) -> bool:
    try:
        asyncio.run(warm.ask(state, {"op": "stop"}, timeout=10))
    except LabFailure:
        return False
    return True


STOP_WITHIN = 30.0
"""Seconds a warm lab gets to tear down (as on Ctrl-C) before ``wslab down`` kills it."""


def _holder(path: Path) -> lab_lock.Holder | None:
    """Who holds the lab's lock, once it has written itself (a lab takes its lock, then writes)."""
    deadline = time.monotonic() + 1
    while (holder := lab_lock.holder(path)) is not None and not holder.pid and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder
