"""The embedded default: real proxy binaries as local processes on 127.0.0.1.

One probe server process runs a named listener per topology. Each proxy is
started from its topology's config template on a free loopback port, in front
of its listener, with its output kept in a log file under the run folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

from ..endpoint import Endpoint
from ..errors import LabFailure, TopologyError
from ..observations import ObservationFeed
from ..processes import ManagedProcess, ProcessFailed, free_port, log_tail
from ..proxies import REGISTRY
from ..topology import Topology
from ..websockets_release import websockets_path
from . import FAILED, READY, UNAVAILABLE, Deployment, StackOptions

HOST = "127.0.0.1"
PROBE_STARTUP_TIMEOUT = 20.0
BIND_ATTEMPTS = 3
LOG_MAX_BYTES = 5_000_000
"""The end of a proxy's log that results keep lines from."""


def read_log(path: Path) -> str:
    """The last :data:`LOG_MAX_BYTES` of a log file, or '' if there is none."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_MAX_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


async def _dump_log(argv: list[str], log_path: Path) -> None:
    with open(log_path, "ab") as log, contextlib.suppress(OSError, TimeoutError):
        process = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
        await asyncio.wait_for(process.wait(), 5)


class LocalBackend:
    """Starts topologies as local processes; :meth:`stop` always cleans up."""

    name = "local"

    def __init__(self, run_dir: Path, probe: StackOptions, upstream: tuple[str, int] | None = None) -> None:
        self.run_dir = run_dir.resolve()
        self.probe = probe
        self.upstream = upstream
        """Put the proxies in front of this server instead of starting the probe server."""
        self.processes: list[ManagedProcess] = []
        self.feed = ObservationFeed()
        self.websockets_version = ""
        self.time_scale = probe.time_scale
        self.log_dumps: list[tuple[list[str], Path]] = []
        self.probe_process: ManagedProcess | None = None

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        """Start the probe server and every topology; never raises for one topology."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o755)
        if self.upstream is not None:
            listeners = {t.name: self.upstream for t in topologies}
        else:
            listeners = await self._start_probe([t.name for t in topologies])
        deployments = await asyncio.gather(
            *(self._deploy(topology, listeners[topology.name]) for topology in topologies)
        )
        return {deployment.topology.name: deployment for deployment in deployments}

    async def _start_probe(self, names: list[str]) -> dict[str, tuple[str, int]]:
        env = dict(os.environ)
        extra = await asyncio.to_thread(websockets_path, self.probe.websockets_version)
        if extra is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(extra), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        argv = [sys.executable, "-m", "wslab.probe", "--ping-interval", str(self.probe.ping_interval)]
        argv += ["--time-scale", str(self.probe.time_scale)]
        argv += [arg for name in names for arg in ("--listen", f"{name}={HOST}:0")]
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
        self.websockets_version = ready["websockets"]
        await self.feed.start(*ready["control"])
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
        version = await kind.version(binary)
        folder = self.run_dir / topology.name
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
        log_path = folder / f"{topology.proxy}.log"
        # A free port can be taken between the check and the bind: retry then.
        for _attempt in range(BIND_ATTEMPTS):
            port = free_port(HOST)
            config = folder / topology.config.name  # type: ignore[union-attr]
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
                return Deployment(topology, FAILED, detail=str(error), version=version)
            # The text is kept in the results, so the report shows the config without --run-dir.
            config.write_text(text)
            process = ManagedProcess(
                topology.name, [*kind.command(binary, config, folder, HOST, port), *arguments], log_path
            )
            self.processes.append(process)
            await process.start()
            try:
                await process.wait_listening(HOST, port, kind.startup_timeout, kind.ready_by_http)
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
                    version=version,
                )
            if kind.log_dump_argv:
                self.log_dumps.append((kind.log_dump(binary, config, folder, HOST, port), log_path))
            return Deployment(
                topology,
                READY,
                Endpoint(HOST, port),
                log_path=log_path,
                config_text=text,
                arguments=arguments,
                version=version,
                handle=process,
            )
        return Deployment(topology, FAILED, detail="no free port after retries", log_path=log_path)

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
        return None

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """Each proxy's log; proxies that keep theirs elsewhere (Varnish) write it out first."""
        dumps, self.log_dumps = self.log_dumps, []
        await asyncio.gather(*(_dump_log(argv, log_path) for argv, log_path in dumps))
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
