"""A warm lab: the topologies a ``wslab up`` keeps running, reused by ``wslab run``.

``wslab up`` writes a state file (:func:`wslab.paths.state_path`) once its topologies are up:
the probe server's options and control address, and per topology its endpoint,
proxy version, log file and a fingerprint of its folder. It listens on a Unix
socket beside it for two requests: ``redeploy`` (restart the named topologies'
proxies from their folders as they are now) and ``stop``. ``wslab run`` reads
the file; when the lab runs the topologies asked with the same server options,
it plays only the cells against it (:class:`WarmBackend`), after asking for the
topologies whose folder changed to be redeployed. Otherwise it says in one line
why, and starts its own. ``wslab down`` asks the lab to stop.

The file and the socket live in the cache folder (``$WSLAB_CACHE``, default
``~/.cache/wslab``), owner-only; the socket is the only way in, so nothing but
loopback addresses is ever listened on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import lab_lock, run_folders
from .app import AppSpec
from .backends import ACCELERATED, READY, Deployment, StackOptions
from .backends.local import dump_path, log_size, read_log
from .endpoint import Endpoint
from .errors import LabFailure
from .observations import ObservationFeed
from .records import AppRecord, DeploymentStatus
from .topology import Topology

REQUEST_MAX_BYTES = 64_000
REQUEST_TIMEOUT = 120.0
"""A redeploy starts proxies: as long as a topology's start-up may take."""


def socket_path(state: Path) -> Path:
    return state.with_suffix(".sock")


def fingerprint(topology: Topology) -> str:
    """A digest of every file in the topology's folder: a changed config changes it."""
    digest = hashlib.sha256(topology.proxy.encode())
    for path in sorted(p for p in topology.folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(topology.folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class WarmTopology(BaseModel):
    """One topology as the warm lab runs it."""

    status: DeploymentStatus
    endpoint: tuple[str, int] | None = None
    detail: str = ""
    version: str = ""
    fingerprint: str
    log_path: str | None = None
    config_text: str | None = None
    arguments: list[str] = []


class LabState(BaseModel):
    """What ``wslab up`` writes into the state file."""

    started_at: float
    control: tuple[str, int]
    socket: str
    run_dir: str
    websockets: str
    options: dict[str, Any]
    app: dict[str, Any] | None = None
    forkserver: str = ""
    """The Unix socket of the lab's fork server, which runs a handed-off ``wslab run``
    (lab/forkserver.py); empty when it has none."""
    token: str = ""
    """A detached up's token (lab/commands/serve.py), so its starter knows the file is its."""
    topologies: dict[str, WarmTopology]


def app_key(app: AppSpec | None) -> dict[str, Any] | None:
    """What identifies the server behind the topologies, for matching a run to a lab."""
    if app is None:
        return None
    return {"command": app.command, "upstream": list(app.upstream) if app.upstream else None}


def describe(deployment: Deployment) -> WarmTopology:
    endpoint = deployment.endpoint
    return WarmTopology(
        status=deployment.status,
        endpoint=(endpoint.host, endpoint.port) if endpoint else None,
        detail=deployment.detail,
        version=deployment.version,
        fingerprint=fingerprint(deployment.topology),
        log_path=str(deployment.log_path) if deployment.log_path else None,
        config_text=deployment.config_text,
        arguments=deployment.arguments,
    )


def write_state(path: Path, state: LabState) -> None:
    """Write the file whole (a reader never sees half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(state.model_dump_json(), encoding="utf-8")
    partial.chmod(0o600)
    partial.replace(path)


def read_state(path: Path) -> LabState | None:
    """The state a running lab wrote, or None (no file, or not one this version understands)."""
    try:
        with open(path, "rb") as file:
            text = file.read(5_000_000)
        return LabState.model_validate_json(text)
    except (OSError, ValidationError, ValueError):
        return None


# The lab's side: serving requests.

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve_requests(path: Path, handle: Handler) -> asyncio.AbstractServer:
    """Listen on the Unix socket ``path`` for one JSON request per connection."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            request = json.loads(line[:REQUEST_MAX_BYTES])
            if not isinstance(request, dict):
                raise ValueError("not an object")
            reply = await handle(request)
        except (ValueError, TimeoutError) as error:
            reply = {"ok": False, "error": f"bad request: {error}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()

    old = os.umask(0o077)
    try:
        return await asyncio.start_unix_server(one, path)
    finally:
        os.umask(old)


# The run's side: finding, matching and asking.


async def ask(state: LabState, request: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
    """Send one request to the lab; LabFailure if it does not answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(state.socket), 5)
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
        reply = json.loads(line)
    except (OSError, TimeoutError, ValueError) as error:
        raise LabFailure(f"the warm lab ({state.socket}) did not answer: {error}") from None
    if not reply.get("ok"):
        raise LabFailure(f"the warm lab refused: {reply.get('error', 'no reason given')}")
    return reply


def running(path: Path) -> LabState | None:
    """The lab the state file describes if it answers on its socket. A file whose lab is gone
    is removed, with what that lab left (:func:`forget`); the file of a lab that is alive but
    does not answer is kept, so that ``wslab down`` still finds it."""
    state = read_state(path)
    if state is None:
        return None
    try:
        asyncio.run(ask(state, {"op": "status"}, timeout=5))
    except LabFailure:
        if gone(path):
            forget(path, state)
        return None
    return state


def gone(path: Path) -> bool:
    """Whether the lab of the state file ``path`` has ended (nobody holds its lock), not merely
    been slow to answer."""
    return lab_lock.holder(path) is None


def forget(path: Path, state: LabState) -> None:
    """Remove what the lab of the state file ``path``, now gone (:func:`gone`: killed, for it
    removes all this itself when it stops), left: the state file, its sockets beside it, and its
    temporary run folder (:func:`wslab.run_folders.sweep`)."""
    for leftover in (Path(state.socket), Path(state.forkserver), path):
        if leftover.parent == path.parent and leftover.name:
            with contextlib.suppress(OSError):
                leftover.unlink()
    run_folders.sweep()


def mismatch(
    state: LabState, topologies: list[Topology], options: StackOptions, app: AppSpec | None
) -> str | None:
    """Why the lab cannot play these cells (one phrase), or None if it can."""
    ours = asdict(options)
    for name, value in ours.items():
        theirs = state.options.get(name)
        if theirs == value:
            continue
        if name == "time_scale":
            return f"it runs {_timing(theirs)} time limits, this run asks for {_timing(value)} ones"
        return f"its probe server runs with {name}={theirs!r}, this run asks {value!r}"
    if state.app is not None or app is not None:
        # A run with an app starts its own, and ties the app's log to cells as it reads it.
        return "it runs your app behind its topologies" if state.app else "this run starts your app"
    missing = [t.name for t in topologies if t.name not in state.topologies]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return f"it does not run {shown} (start it with those topologies)"
    return None


def run_hint(options: dict[str, Any], names: list[str], everything: list[str]) -> str:
    """The ``wslab run`` command line that plays its cells on a lab started with ``options`` (a
    StackOptions as a dict) running the topologies ``names``, out of ``everything`` a run plays by
    default: ``wslab run`` itself defaults to accelerated time limits, ``wslab up`` to faithful."""
    defaults = asdict(StackOptions(time_scale=ACCELERATED))
    flags = []
    if options.get("time_scale") != defaults["time_scale"]:
        flags.append("--faithful")
    if options.get("websockets_version") is not None:
        flags.append(f"--websockets {options['websockets_version']}")
    if options.get("answer_plain_http"):
        flags.append("--answer-plain-http")
    if options.get("ping_interval", defaults["ping_interval"]) != defaults["ping_interval"]:
        flags.append(f"--ping-interval {options['ping_interval']:g}")
    if options.get("redact") is False:
        flags.append("--no-redact")
    if set(everything) - set(names):
        flags += [f"-t {name}" for name in names]
    return " ".join(["wslab run", *flags])


def _timing(scale: object) -> str:
    return "faithful (--faithful)" if scale == 1.0 else f"accelerated (--accelerated, x{scale})"


def changed(state: LabState, topologies: list[Topology]) -> list[str]:
    """The topologies whose folder changed since the lab started them."""
    return [t.name for t in topologies if state.topologies[t.name].fingerprint != fingerprint(t)]


class WarmBackend:
    """Plays cells against the topologies a running ``wslab up`` keeps: starts and stops nothing."""

    name = "local"

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.feed = ObservationFeed()
        self.websockets_version = state.websockets
        self.time_scale = float(state.options["time_scale"])
        self.started = time.time()
        self.dumping: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.log_starts: dict[str, int] = {}
        """Where each proxy's log ended when this run began: it holds every earlier run's lines,
        which this run need not read (nor each cell search)."""

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        if names := changed(self.state, topologies):
            reply = await ask(self.state, {"op": "redeploy", "topologies": names})
            self.state = LabState.model_validate(reply["state"])
        await self.feed.start(*self.state.control, history=False)
        await self.feed.hello()
        deployments = {t.name: self._deployment(t) for t in topologies}
        self.log_starts = {
            name: log_size(d.log_path) for name, d in deployments.items() if d.log_path is not None
        }
        return deployments

    def _deployment(self, topology: Topology) -> Deployment:
        warm = self.state.topologies[topology.name]
        return Deployment(
            topology,
            warm.status if warm.status != READY or warm.endpoint else DeploymentStatus.FAILED,
            Endpoint(*warm.endpoint) if warm.endpoint else None,
            detail=warm.detail,
            log_path=Path(warm.log_path) if warm.log_path else None,
            config_text=warm.config_text,
            arguments=warm.arguments,
            version=warm.version,
        )

    def alive(self, deployment: Deployment) -> bool:
        return True

    def failure(self) -> str | None:
        return f"the warm lab stopped ({self.feed.lost}); wslab up again" if self.feed.lost else None

    def read_log_ahead(self, deployment: Deployment) -> None:
        """The topology's cells are done: if its proxy keeps its log elsewhere, the lab dumps it."""
        if deployment.topology.log_dumped:
            request = {"op": "dump-logs", "topologies": [deployment.topology.name]}
            self.dumping[deployment.topology.name] = asyncio.ensure_future(ask(self.state, request))

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """Each proxy's log as the lab writes it (cells take their lines by their own id), and
        what the lab dumped from the proxies that keep their log elsewhere (Varnish)."""
        await asyncio.gather(*self.dumping.values())
        if rest := [
            name for name, d in deployments.items() if d.topology.log_dumped and name not in self.dumping
        ]:
            await ask(self.state, {"op": "dump-logs", "topologies": rest})
        return {
            name: read_log(deployment.log_path, self.log_starts.get(name, 0))
            + read_log(dump_path(deployment.log_path))
            for name, deployment in deployments.items()
            if deployment.log_path is not None
        }

    def app_record(self) -> AppRecord | None:
        return None

    async def stop(self) -> None:
        for dump in self.dumping.values():
            dump.cancel()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.feed.stop(), 2)
