"""The embedded default: real proxy binaries as local processes on 127.0.0.1.

One probe server process runs a named listener per topology. Each proxy is
started from its topology's config template on a free loopback port, in front
of its listener, with its output kept in a log file under the run folder.
With a user's app (:class:`~wslab.app.AppSpec`), each listener is a recording
tap in front of that app instead, so that cells carry what the app received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..app import AppError, AppProcess, AppSpec
from ..app_log import HandshakeGate
from ..binary_versions import VersionCache
from ..endpoint import Endpoint
from ..errors import LabFailure, TopologyError
from ..lifecycle import RELOAD_TIMEOUT, EventFailed, reload_failed, reload_timed_out
from ..observations import ObservationFeed, command_listener
from ..processes import ManagedProcess, ProcessFailed, free_port, log_tail, port_free, wait_listening_quietly
from ..proxies import REGISTRY
from ..records import AppRecord
from ..topology import Topology
from ..websockets_release import websockets_path
from . import FAILED, READY, UNAVAILABLE, Deployment, StackOptions, ready_by_http

HOST = "127.0.0.1"
PROBE_STARTUP_TIMEOUT = 20.0
BIND_ATTEMPTS = 3
SLOW_STARTS = {"varnish": 3, "traefik": 2, "envoy": 1}
"""Proxy kinds that take longest from start to ready here (Varnish compiles its VCL with a C
compiler; Traefik and Envoy load slowly): they are started last."""
STAGE_WAIT = 1.0
"""At most this many seconds a slow kind's start waits for the quicker kinds to be up."""
LOG_MAX_BYTES = 5_000_000
"""The end of a proxy's log that results keep lines from."""


def read_log(path: Path, since: int = 0) -> str:
    """The last :data:`LOG_MAX_BYTES` of a log file from byte ``since`` on (from its start if it
    is shorter now: written afresh), or '' if there is none."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since if since <= size else 0, size - LOG_MAX_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def log_size(path: Path) -> int:
    """How many bytes a log file holds now (0 if there is none)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def dump_path(log_path: Path) -> Path:
    """Where a lab kept up writes a proxy's dumped log afresh at each run's request."""
    return log_path.with_name(log_path.name + ".dump")


async def _dump_log(argv: list[str], log_path: Path, mode: str = "ab") -> None:
    with open(log_path, mode) as log, contextlib.suppress(OSError, TimeoutError):
        process = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
        await asyncio.wait_for(process.wait(), 5)


def start_cost(topology: Topology) -> int:
    """How slow ``topology``'s proxy is to start, relative to the others (0: quick)."""
    return 0 if topology.direct else SLOW_STARTS.get(topology.proxy, 0)


class LocalBackend:
    """Starts topologies as local processes; :meth:`stop` always cleans up."""

    name = "local"

    def __init__(
        self,
        run_dir: Path,
        probe: StackOptions,
        app: AppSpec | None = None,
        fixed_ports: bool = False,
        forward_to: tuple[str, int] | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.fixed_ports = fixed_ports
        """Each topology on its own port from topology.yaml (stable URLs), not a free one."""
        self.probe = probe
        self.app = app
        """Put the proxies in front of the user's app instead of the probe server."""
        self.forward_to = forward_to
        """The proxies straight in front of this address, which records what it receives itself
        (a deployed probe server, a tap started elsewhere): no probe server, no tap, no feed."""
        self.apps: dict[str, AppProcess] = {}
        """With ``--app``: the process behind each topology (one shared, or one each)."""
        self.ended: list[str] | None = None
        """How the apps that ended before :meth:`stop` ended."""
        self.processes: list[ManagedProcess] = []
        self.epochs: dict[str, int] = {}
        """How many times each topology's proxy was hot-restarted (its successor's epoch)."""
        self.feed = ObservationFeed()
        self.websockets_version = ""
        self.time_scale = probe.time_scale
        self.log_dumps: dict[str, tuple[list[str], Path]] = {}
        self.dumping: list[asyncio.Future[None]] = []
        """Per topology, the command that writes out a log its proxy keeps elsewhere (Varnish)."""
        self.probe_process: ManagedProcess | None = None
        self.listeners: dict[str, tuple[str, int]] = {}
        """Where each topology's proxy sends its traffic (its probe listener or tap)."""
        self.deployments: dict[str, Deployment] = {}
        """Each topology as deployed so far (a lab kept up redeploys one by name)."""
        self.control: tuple[str, int] | None = None
        """The probe server's control channel, once it runs (``wslab watch --control``)."""
        self.versions = VersionCache()
        self.ports_given: set[int] = set()

    def _free_port(self) -> int:
        """A free port that no other process of this run was given: a port is free again between
        the check and its owner's bind, and proxies starting together would be handed the same one
        (the second proxy fails to bind while the first answers for it)."""
        while (port := free_port(HOST)) in self.ports_given:
            pass
        self.ports_given.add(port)
        return port

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        """Start the probe server and every topology; never raises for one topology."""
        pending = await self.start_each(topologies)
        return {name: await task for name, task in pending.items()}

    async def start_each(self, topologies: list[Topology]) -> dict[str, asyncio.Task[Deployment]]:
        """Start the probe server (and the user's app), then every topology's proxy at once.

        Returns when the shared parts are up, with one task per topology that ends when that
        topology is ready (or could not be): its cells need not wait for slower proxies. A task
        never raises for its topology's sake; :meth:`stop` stops what they started.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o755)
        names = [t.name for t in topologies]
        forward = await self._start_apps(names) if self.app is not None else {}
        direct = {t.name: t.port for t in topologies if t.direct and self.fixed_ports}
        if self.forward_to is not None:
            listeners = dict.fromkeys(names, self.forward_to)
        else:
            listeners = await self._start_probe(names, forward, direct)
        self.listeners = listeners
        gates = {id(app): HandshakeGate(app.log) for app in self.apps.values()}
        # Shortest job first: while a C compiler and seven Envoys share two cores with them,
        # quick proxies take several times as long to come up, and any topology's cell may be
        # the run's longest (a 5 s step timeout). So the quick ones start alone, and each slower
        # kind once those before it are up (or STAGE_WAIT has passed).
        started: dict[str, asyncio.Task[Deployment]] = {}
        for cost in sorted({start_cost(t) for t in topologies}):
            before = list(started.values())
            for topology in (t for t in topologies if start_cost(t) == cost):
                deploy = self._deploy_behind(topology, listeners[topology.name], gates, after=before)
                started[topology.name] = asyncio.create_task(deploy)
        return {name: started[name] for name in names}

    async def _deploy_behind(
        self,
        topology: Topology,
        upstream: tuple[str, int],
        gates: dict[int, HandshakeGate],
        after: list[asyncio.Task[Deployment]],
    ) -> Deployment:
        """Deploy ``topology`` in front of ``upstream`` once the deployments ``after`` are done (or
        STAGE_WAIT has passed), tied to the user's app if there is one."""
        if after:
            await asyncio.wait(after, timeout=STAGE_WAIT)
        deployment = await self._deploy(topology, upstream)
        deployment.upstream = upstream
        if self.app is not None:
            app = self.apps.get(topology.name)
            deployment.behind_app = True
            deployment.app_log = app.log if app else None
            deployment.gate = gates[id(app)] if app else None
        self.deployments[topology.name] = deployment
        return deployment

    async def _start_apps(self, names: list[str]) -> dict[str, tuple[str, int]]:
        """Start the user's app (once, or once per topology) or check that ``--upstream``
        answers; the address behind each topology's tap."""
        app = self.app
        assert app is not None
        if app.upstream is not None:
            try:
                await wait_listening_quietly(app.upstream[1], timeout=5)
            except TimeoutError:
                raise AppError(f"{app.describe()}: nothing answers there") from None
            return {name: app.upstream for name in names}
        assert app.command is not None
        owners = names if app.per_topology else ["app"]
        started = {
            owner: AppProcess(app.command, self._free_port(), self.run_dir / f"{owner}.app.log", cwd=app.cwd)
            for owner in owners
        }
        # Known before they start, so that stop() stops them whatever happens next.
        self.apps = {name: started[name if app.per_topology else "app"] for name in names}
        results = await asyncio.gather(
            *(process.start() for process in started.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {name: (HOST, process.port) for name, process in self.apps.items()}

    async def _start_probe(
        self, names: list[str], forward: dict[str, tuple[str, int]], ports: dict[str, int]
    ) -> dict[str, tuple[str, int]]:
        """The probe server's listeners, one per topology: each a recording tap to ``forward``'s
        address when it has one."""
        env = dict(os.environ)
        extra = await asyncio.to_thread(websockets_path, self.probe.websockets_version)
        if extra is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(extra), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        argv = [sys.executable, "-m", "wslab.probe", "--ping-interval", str(self.probe.ping_interval)]
        argv += ["--time-scale", str(self.probe.time_scale)]
        argv += [arg for name in names for arg in ("--listen", f"{name}={HOST}:{ports.get(name, 0)}")]
        argv += [
            arg for name, (host, port) in forward.items() for arg in ("--forward", f"{name}={host}:{port}")
        ]
        if self.probe.answer_plain_http:
            argv.append("--answer-plain-http")
        if not self.probe.redact:
            argv.append("--no-redact")
        process = ManagedProcess("probe server", argv, self.run_dir / "probe-server.log", env)
        self.probe_process = process
        self.processes.append(process)
        await process.start(stdout=asyncio.subprocess.PIPE)
        assert process.process is not None and process.process.stdout is not None
        try:
            line = await asyncio.wait_for(process.process.stdout.readline(), PROBE_STARTUP_TIMEOUT)
            ready = json.loads(line)
        except (TimeoutError, ValueError):
            raise LabFailure(f"the probe server did not start:\n{log_tail(process.log_path)}") from None
        # Behind taps, the websockets release that matters is the app's, which the lab cannot see.
        self.websockets_version = "" if forward else ready["websockets"]
        self.control = (ready["control"][0], ready["control"][1])
        await self.feed.start(*self.control)
        return {name: (host, port) for name, (host, port) in ready["listeners"].items()}

    async def _deploy(self, topology: Topology, upstream: tuple[str, int]) -> Deployment:
        if topology.direct:
            return Deployment(topology, READY, Endpoint(*upstream), version="")
        kind = REGISTRY[topology.proxy]
        binary = kind.locate()
        if binary is None:
            return Deployment(
                topology,
                UNAVAILABLE,
                detail=f"{kind.executable} not found; install it: {kind.install_hint}",
            )
        # The version is only recorded: asking for it need not delay the proxy's start.
        version, deployment = await asyncio.gather(
            self.versions.version(kind, binary), self._launch(topology, binary, upstream)
        )
        deployment.version = version
        return deployment

    async def _launch(self, topology: Topology, binary: str, upstream: tuple[str, int]) -> Deployment:
        """Render the topology's config and start its proxy on a free port (or its own, with
        ``--ports``); READY once the proxy answers, FAILED with its log tail if it does not."""
        kind = REGISTRY[topology.proxy]
        folder = self.run_dir / topology.name
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
        config = kind.config_path(folder, topology.config.name)  # type: ignore[union-attr]
        config.parent.mkdir(exist_ok=True)
        if kind.reload is not None and kind.reload.change_file:
            # A change an earlier reload left there (a warm lab's restarted topology) is no part of
            # the config this start renders.
            (config.parent / kind.reload.change_file).unlink(missing_ok=True)
        log_path = folder / f"{topology.proxy}.log"
        # A free port can be taken between the check and the bind: retry then.
        if self.fixed_ports and not port_free(HOST, topology.port):
            return Deployment(topology, FAILED, detail=f"port {topology.port} is in use (--ports)")
        for _attempt in range(1 if self.fixed_ports else BIND_ATTEMPTS):
            port = topology.port if self.fixed_ports else self._free_port()
            values = {
                "WSLAB_LISTEN_HOST": HOST,
                "WSLAB_LISTEN_PORT": str(port),
                "WSLAB_UPSTREAM_HOST": upstream[0],
                "WSLAB_UPSTREAM_PORT": str(upstream[1]),
                "WSLAB_RUN_DIR": str(folder),
                **topology.placeholders(self.probe.time_scale),
            }
            try:
                text = topology.render_config(values)
                arguments = topology.render_arguments(values)
            except TopologyError as error:
                return Deployment(topology, FAILED, detail=str(error))
            # The text is kept in the results, so the report shows the config without --run-dir.
            config.write_text(text)
            process = ManagedProcess(
                topology.name, [*kind.command(binary, config, folder, HOST, port), *arguments], log_path
            )
            self.processes.append(process)
            await process.start()
            try:
                await process.wait_listening(HOST, port, kind.startup_timeout, ready_by_http(topology))
            except ProcessFailed as failure:
                await process.stop()
                if "Address already in use" in failure.log_tail:
                    continue
                return Deployment(
                    topology,
                    FAILED,
                    detail=f"{kind.executable} {failure.reason}",
                    log_path=log_path,
                    log_tail=failure.log_tail,
                    config_text=text,
                    arguments=arguments,
                )
            if kind.log_dump_argv:
                self.log_dumps[topology.name] = (kind.log_dump(binary, config, folder, HOST, port), log_path)
            return Deployment(
                topology,
                READY,
                Endpoint(HOST, port),
                log_path=log_path,
                config_text=text,
                arguments=arguments,
                handle=process,
            )
        return Deployment(topology, FAILED, detail="no free port after retries", log_path=log_path)

    async def dump_logs(self, names: list[str] | None = None) -> None:
        """For a lab kept up: write each log its proxy keeps elsewhere (Varnish's shared memory),
        of the named topologies or all, afresh to :func:`dump_path`, since dumping into the
        proxy's log would repeat it each run."""
        await asyncio.gather(
            *(
                _dump_log(argv, dump_path(log_path), "wb")
                for name, (argv, log_path) in self.log_dumps.items()
                if names is None or name in names
            )
        )

    async def redeploy(self, topology: Topology) -> Deployment:
        """Stop the topology's proxy and start it again from ``topology`` (its folder as it is
        now), in front of the same listener: for a lab kept up while its configs are edited."""
        old = self.deployments[topology.name]
        if isinstance(old.handle, ManagedProcess):
            await old.handle.stop()
            self.processes.remove(old.handle)
        deployment = await self._deploy(topology, self.listeners[topology.name])
        deployment.upstream = self.listeners[topology.name]
        deployment.behind_app, deployment.app_log, deployment.gate = old.behind_app, old.app_log, old.gate
        deployment.upstream = old.upstream
        self.deployments[topology.name] = deployment
        return deployment

    async def signal_proxy(self, deployment: Deployment, signal_name: str) -> None:
        """Send the topology's proxy process (nginx's master, HAProxy's master, Apache's parent)
        a signal by name: how the lifecycle suite reloads it (lab/lifecycle.py)."""
        process = deployment.handle
        if not isinstance(process, ManagedProcess) or process.process is None or not process.running:
            raise EventFailed(f"{deployment.topology.name}: its proxy is not running")
        process.process.send_signal(signal.Signals[signal_name])

    def _proxy_files(self, deployment: Deployment) -> tuple[str, Path, Path, int]:
        """The running proxy's binary, config, run folder and port, as its reload commands are
        filled (EventFailed if it is not running)."""
        topology = deployment.topology
        binary = REGISTRY[topology.proxy].locate()
        running = deployment.endpoint is not None and self.alive(deployment)
        if binary is None or topology.config is None or not running:
            raise EventFailed(f"{topology.name}: its proxy is not running")
        folder = self.run_dir / topology.name
        config = REGISTRY[topology.proxy].config_path(folder, topology.config.name)
        return binary, config, folder, deployment.endpoint.port  # type: ignore[union-attr]

    async def reload_by_command(self, deployment: Deployment) -> None:
        """Run the documented reload command of the topology's proxy kind (caddy reload) against
        the running proxy."""
        binary, config, folder, port = self._proxy_files(deployment)
        argv = REGISTRY[deployment.topology.proxy].reload_command(binary, config, folder, HOST, port)
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), RELOAD_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise reload_timed_out(deployment.topology) from None
        if process.returncode != 0:
            raise reload_failed(deployment.topology, output)

    async def reload_by_successor(self, deployment: Deployment) -> None:
        """Start the process that takes over from the topology's proxy (Envoy's hot restart) and
        return once its log says it has; the deployment's handle becomes the new process, and the
        old one drains and exits on its own (or is stopped with the lab)."""
        topology = deployment.topology
        kind = REGISTRY[topology.proxy]
        old = deployment.handle
        binary, config, folder, port = self._proxy_files(deployment)
        assert kind.reload is not None and isinstance(old, ManagedProcess)
        epoch = self.epochs.get(topology.name, 0) + 1
        try:
            argv = kind.successor_command(binary, config, folder, HOST, port, epoch)
        except OSError as error:
            raise EventFailed(f"{topology.name}: no base id to hot-restart from ({error.strerror})") from None
        log_start = log_size(old.log_path)
        successor = ManagedProcess(topology.name, argv, old.log_path)
        self.processes.append(successor)
        await successor.start()
        deadline = asyncio.get_running_loop().time() + RELOAD_TIMEOUT
        while kind.reload.ready_line not in _log_since(old.log_path, log_start):
            if not successor.running or asyncio.get_running_loop().time() > deadline:
                raise EventFailed(
                    f"{topology.name}: the successor did not take over: {log_tail(old.log_path, 3)}"
                )
            await asyncio.sleep(0.05)
        self.epochs[topology.name] = epoch
        deployment.handle = successor

    async def write_reload_change(self, deployment: Deployment, text: str) -> None:
        """Put ``text`` where the topology's proxy watches for a changed file (beside its config),
        whole at once: written aside in the run folder, then renamed into the watched folder."""
        _binary, config, folder, _port = self._proxy_files(deployment)
        reload = REGISTRY[deployment.topology.proxy].reload
        assert reload is not None and reload.change_file
        aside = folder / f".{reload.change_file}.tmp"
        aside.write_text(text)
        aside.replace(config.parent / reload.change_file)

    async def restart_server(self, listener: str, down: float) -> dict[str, Any]:
        """Have the probe server restart a listener (see wslab.probe.__main__): its answer,
        ``closed_at`` and ``back_at`` (UNIX times), or an ``error``."""
        return await self.command_server({"restart": listener, "down": down}, "restarted")

    async def command_server(self, command: dict[str, Any], answer: str) -> dict[str, Any]:
        """Send the probe server a listener command (see wslab.probe.__main__: restart, redeploy,
        scale_to_zero) and return its ``answer`` event for that listener (or an ``error``)."""
        if self.control is None:
            raise EventFailed("no probe server runs behind this topology (--app, --forward-to)")
        return await command_listener(self.control, command, answer)

    def alive(self, deployment: Deployment) -> bool:
        """False if the topology's proxy has died since it started."""
        process = deployment.handle
        return process is None or process.running

    def failure(self) -> str | None:
        probe = self.probe_process
        if probe is not None and probe.process is not None and not probe.running:
            status = probe.process.returncode
            return (
                f"the probe server exited (status {status}); its last log lines:\n{log_tail(probe.log_path)}"
            )
        if self.feed.lost:
            return self.feed.lost
        for app in dict.fromkeys(self.apps.values()):
            if not app.running:
                return f"your app {app.exit_status()} during the run; its last lines:\n{app.log.tail()}"
        return None

    def app_record(self) -> AppRecord | None:
        if self.app is None:
            return None
        upstream = self.app.upstream
        ended = self.ended if self.ended is not None else self._exits()
        return AppRecord(
            command=self.app.command,
            upstream=f"{upstream[0]}:{upstream[1]}" if upstream else None,
            per_topology=self.app.per_topology,
            exit=", ".join(dict.fromkeys(ended)),
        )

    def _exits(self) -> list[str]:
        return [app.exit_status() for app in dict.fromkeys(self.apps.values()) if not app.running]

    def read_log_ahead(self, deployment: Deployment) -> None:
        """The topology's cells are done: a proxy that keeps its log elsewhere writes it out now."""
        if dump := self.log_dumps.pop(deployment.topology.name, None):
            self.dumping.append(asyncio.ensure_future(_dump_log(*dump)))

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """Each proxy's log; proxies that keep theirs elsewhere (Varnish) write it out first."""
        dumps, self.log_dumps = self.log_dumps, {}
        await asyncio.gather(*self.dumping, *(_dump_log(argv, log_path) for argv, log_path in dumps.values()))
        return {
            name: read_log(deployment.log_path)
            for name, deployment in deployments.items()
            if deployment.log_path is not None
        }

    async def stop(self) -> None:
        """Stop every process this backend started, even after a failure or Ctrl-C."""
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.feed.stop(), 2)
        await asyncio.gather(*(process.stop() for process in self.processes))
        self.ended = self._exits()
        await asyncio.gather(*(app.stop() for app in dict.fromkeys(self.apps.values())))


def _log_since(path: Path, offset: int) -> str:
    """What a log file gained after ``offset`` bytes."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""
