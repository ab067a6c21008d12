"""The compose backend: the topologies as containers of docker-compose.yml.

From the host it brings the stack up (or reuses a running one), reaches every
topology on its published 127.0.0.1 port, and takes down what it started,
containers, network and volumes alike. Inside the stack (the ``runner``
service, ``--in-network``) it reaches the services by name and manages
nothing. Works with Compose v2 (``docker compose``) and v1 (``docker-compose``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..app import AppSpec
from ..app_container import ContainerAppLog, app_environment, put_behind, stopped, wait_app_listening
from ..compose_file import (
    APP_SERVICE,
    COMPOSE_FILE,
    CONTROL_PORT,
    OFFLINE_FILE,
    PROBE_SERVICE,
    VERSIONS_DIR,
    app_document,
    listen_check,
    network_endpoint,
    parameter_environment,
    project,
    proxy_arguments,
    proxy_config,
    render,
)
from ..endpoint import Endpoint
from ..errors import LabFailure, UsageError
from ..observations import ObservationFeed
from ..paths import PROJECT_ROOT
from ..processes import FORWARDED_SETTLE, wait_answering
from ..proxies import REGISTRY
from ..records import AppRecord
from ..topology import Topology, load_topologies
from . import FAILED, READY, Deployment, StackOptions, ready_by_http
from .container_events import ContainerEvents, stack_hops

READ_VERSIONS = [
    "python",
    "-c",
    "import json, pathlib; print(json.dumps({p.name: p.read_text(errors='replace') "
    f"for p in pathlib.Path('{VERSIONS_DIR}').glob('*')}}))",
]
"""Run in the probe container (both its images have Python): every version the proxies wrote."""

HEALTHY_TIMEOUT = 120.0
"""How long the host waits for a topology of a stack it brought up."""
IN_NETWORK_TIMEOUT = 60.0
"""How long the runner in the stack waits for a proxy that runs but does not answer: the span of
the services' health checks (6 retries, 10 s apart). The runner starts once every proxy has
started, healthy or not, and reports one that never answers as a lab error column."""
DOWN_RETRIES = 3
"""How many more times ``down`` is tried when only the network's removal failed (see stop)."""
STOPPED_AFTER = 3.0
"""A proxy whose container is not running for this long has stopped (in the stack: its name no
longer resolves; from the host: compose ps no longer lists it as running)."""

PULL_ERRORS = re.compile(
    r"pull access denied|failed to resolve|manifest unknown|registry|dial tcp|no such host|"
    r"i/o timeout|TLS handshake|error pulling|failed to solve|toomanyrequests",
    re.IGNORECASE,
)
OFFLINE_HINT = (
    "no image registry answers? build the stack's images locally with scripts/build-offline-images.sh, "
    "then run with --offline (or: docker compose -f docker-compose.yml -f docker-compose.offline.yml "
    "up runner)"
)


COMPOSE_VERSIONS = {"v2": ["docker", "compose"], "v1": ["docker-compose"]}
"""How each Compose major version is invoked; ``WSLAB_COMPOSE=v1`` or ``v2`` picks one."""


def _answers(command: list[str]) -> bool:
    if not shutil.which(command[0]):
        return False
    return subprocess.run([*command, "version"], capture_output=True).returncode == 0


@dataclass(frozen=True)
class TakenDown:
    """What :func:`compose_down` did: Compose's last ``down``, and the networks the engine kept
    though no container is attached to them (:func:`networks_held_by_engine`)."""

    result: subprocess.CompletedProcess
    held_networks: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Everything is down but the networks only a restart of the engine removes."""
        return self.result.returncode == 0 or bool(self.held_networks)

    def warning(self) -> str:
        """What the user is told about the held networks ("" when there are none)."""
        if not self.held_networks:
            return ""
        return (
            f"wslab: the Docker engine kept the network {', '.join(self.held_networks)}: no container is "
            "attached, yet it still counts an endpoint of a removed one (Docker 20.10, moby/moby#42119). "
            "Everything else is down; the next stack reuses the network, and restarting the engine "
            "removes it."
        )


def compose_down(
    down: Callable[[], subprocess.CompletedProcess], project: str, services: Callable[[], list[str]]
) -> TakenDown:
    """Run ``down`` (with its volumes); while only the network's removal fails ("has active
    endpoints"), wait a second and run it again, and at last release the endpoints Docker leaked
    (:func:`release_stale_endpoints`) before the final try. If the engine still refuses a network
    nothing is attached to, the stack is down but for it: the project's volumes, which Compose v1
    does not reach after a network it could not remove, are removed here. The compose backend and
    the tests take their stacks down with it."""
    result = down()
    for attempt in range(DOWN_RETRIES):
        if result.returncode == 0 or "has active endpoints" not in result.stderr:
            break
        # Docker 20.10 may still be leaving the removed containers' endpoints when Compose removes
        # the network; usually a moment later the same down completes.
        time.sleep(1)
        if attempt == DOWN_RETRIES - 1 and (released := release_stale_endpoints(project, services())):
            print(
                "wslab: Docker kept endpoints of removed containers (moby/moby#43286); released "
                + ", ".join(released),
                file=sys.stderr,
            )
        result = down()
    if result.returncode != 0 and "has active endpoints" in result.stderr:
        held = networks_held_by_engine(project)
        if held and _remove_volumes(project):
            return TakenDown(result, held)
    return TakenDown(result)


def networks_held_by_engine(project: str) -> tuple[str, ...]:
    """``project``'s networks that the engine refuses to remove ("has active endpoints") though
    the project has no container left and no container that exists is attached to them.

    Docker 20.10 can keep counting an endpoint after its container is gone and none is listed
    (moby/moby#42119): neither ``down`` nor a forced disconnect removes the network then; the
    engine recounts endpoints only when it starts. Each candidate is tried once more, so a
    network that can be removed is removed, never reported as held."""
    label = f"label=com.docker.compose.project={project}"
    left, everyone = (
        _docker("ps", "-a", "-q", "--filter", label),
        _docker("ps", "-a", "--format", "{{.Names}}"),
    )
    if left is None or left or everyone is None:
        return ()
    held = []
    for network in _docker("network", "ls", "--filter", label, "--format", "{{.Name}}") or []:
        attached = _attached(network)
        if attached is None or set(attached) & set(everyone):
            continue
        removed = subprocess.run(["docker", "network", "rm", network], capture_output=True, text=True)
        if removed.returncode != 0 and "has active endpoints" in removed.stderr:
            held.append(network)
    return tuple(held)


def _remove_volumes(project: str) -> bool:
    """Remove ``project``'s volumes; whether none is left."""
    volumes = _docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}")
    if volumes is None:
        return False
    return (
        not volumes
        or subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True).returncode == 0
    )


def _attached(network: str) -> list[str] | None:
    """The names of the endpoints ``network`` lists (its containers'), or None if it is gone."""
    return _docker("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", network)


def _docker(*args: str) -> list[str] | None:
    """The words ``docker *args`` printed, or None if it failed."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else None


def release_stale_endpoints(project: str, services: list[str]) -> list[str]:
    """Force-disconnect endpoints of ``project``'s networks whose containers are gone; the names
    released ("network/name").

    Docker 20.10 sometimes keeps a removed container's endpoint (moby/moby#42119, #43286): its
    network then cannot be removed ("has active endpoints") and its published ports stay taken
    ("port is already allocated") until the engine restarts. ``docker network disconnect --force``
    deletes such an endpoint by its name, the container's name (what the engine's
    ForceEndpointDelete looks up), which Compose derives from project and service (v2
    ``project-service-1``, v1 ``project_service_1``); the network may not list it."""
    label = f"label=com.docker.compose.project={project}"
    networks = _docker("network", "ls", "--filter", label, "--format", "{{.Name}}")
    if networks is None:
        return []
    # A container that still exists (running or not) is never disconnected: only leftovers are.
    existing = set(_docker("ps", "-a", "--filter", label, "--format", "{{.Names}}") or [])
    released = []
    for network in networks:
        attached = _attached(network) or []
        for name in stale_endpoint_names(project, services, attached, existing):
            if _docker("network", "disconnect", "--force", network, name) is not None:
                released.append(f"{network}/{name}")
    return released


def stale_endpoint_names(
    project: str, services: list[str], attached: list[str], existing: set[str]
) -> list[str]:
    """Endpoint names that may have outlived their containers: the names Compose v2
    (``project-service-1``) and v1 (``project_service_1``) give the project's services, and the
    names the network lists, less the containers that exist."""
    candidates = {f"{project}{sep}{service}{sep}1" for service in services for sep in "-_"}
    return sorted((candidates | set(attached)) - existing)


def compose_command() -> list[str]:
    """``docker compose`` if the v2 plugin answers, else ``docker-compose`` (v1); or the
    version named by ``$WSLAB_COMPOSE``."""
    wanted = os.environ.get("WSLAB_COMPOSE", "")
    if wanted:
        if wanted not in COMPOSE_VERSIONS:
            raise UsageError(f"WSLAB_COMPOSE must be v1 or v2, not {wanted!r}")
        if not _answers(COMPOSE_VERSIONS[wanted]):
            raise LabFailure(
                f"WSLAB_COMPOSE={wanted}: '{' '.join(COMPOSE_VERSIONS[wanted])}' does not answer"
            )
        return COMPOSE_VERSIONS[wanted]
    for command in COMPOSE_VERSIONS.values():
        if _answers(command):
            return command
    raise LabFailure("neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed")


class ComposeBackend(ContainerEvents):
    """Runs topologies in the compose stack; :meth:`stop` removes what it started. From the host
    it causes lifecycle events and puts faults on in the containers (see container_events)."""

    name = "compose"

    def __init__(
        self,
        probe: StackOptions,
        *,
        in_network: bool = False,
        offline: bool = False,
        keep: bool = False,
        project_dir: Path = PROJECT_ROOT,
        app: AppSpec | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.probe = probe
        self.app = app
        """With ``--app-image``: the user's image behind every topology, through the probe's taps."""
        self.run_dir = run_dir
        """Where the app's override file and log go (needed with ``app``)."""
        self.app_file: Path | None = None
        self.app_log: ContainerAppLog | None = None
        self.in_network = in_network
        self.offline = offline
        self.keep = keep
        self.project_dir = project_dir
        self.feed = ObservationFeed()
        self.websockets_version = ""
        self.time_scale = probe.time_scale
        self.started_stack = False
        self.project = project()
        self.app_exit = ""
        """How the app's container ended, if it did before :meth:`stop`."""
        self.stopped: set[str] = set()
        """Proxies whose container stopped while the run waited for them (see _watch_stopped)."""

    # The compose CLI.

    @functools.cached_property
    def _cli(self) -> list[str]:
        """The compose command, found once per backend (each probe is a subprocess)."""
        return compose_command()

    def _compose(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        files = ["-f", COMPOSE_FILE] + (["-f", OFFLINE_FILE] if self.offline else [])
        if self.app_file is not None:
            files += ["-f", str(self.app_file)]
        return subprocess.run(
            [*self._cli, "-p", self.project, *files, *args],
            cwd=self.project_dir,
            capture_output=True,
            text=True,
            env=env,
        )

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.probe.websockets_version:
            env["WSLAB_WEBSOCKETS"] = self.probe.websockets_version
        env["WSLAB_ANSWER_PLAIN_HTTP"] = "1" if self.probe.answer_plain_http else ""
        env["WSLAB_NO_REDACT"] = "" if self.probe.redact else "1"
        env["WSLAB_TIME_SCALE"] = str(self.probe.time_scale)
        env.update(parameter_environment(list(load_topologies().values()), self.probe.time_scale))
        return env

    def _services(self) -> list[str]:
        result = self._compose("config", "--services")
        return result.stdout.split() if result.returncode == 0 else []

    def _down(self) -> TakenDown:
        """``down``, again while only the network's removal fails (:func:`compose_down`)."""
        return compose_down(
            lambda: self._compose("down", "--volumes", "--remove-orphans"), self.project, self._services
        )

    def _running_services(self) -> set[str]:
        result = self._compose("ps", "--services", "--filter", "status=running")
        return set(result.stdout.split()) if result.returncode == 0 else set()

    async def _bring_up(self, services: list[str]) -> None:
        # A stack already running is reused, unless the app changes what its probe runs.
        if self.app is None and set(services) <= await asyncio.to_thread(self._running_services):
            return
        # The lab's own image is this checkout: built every time (cached layers make it quick), never
        # pulled. The offline one is the script's, labelled with the sources it was built from.
        build = "--no-build" if self.offline else "--build"
        result = await asyncio.to_thread(self._compose, "up", "-d", build, *services, env=self._environment())
        # An endpoint an earlier stack leaked may still hold its ports (see release_stale_endpoints).
        if (
            result.returncode != 0
            and "port is already allocated" in result.stderr
            and await asyncio.to_thread(lambda: release_stale_endpoints(self.project, self._services()))
        ):
            result = await asyncio.to_thread(
                self._compose, "up", "-d", build, *services, env=self._environment()
            )
        if result.returncode != 0:
            # Whatever it started before failing is taken down by stop().
            self.started_stack = True
            error = result.stderr.strip()[-2000:]
            if self.offline and ("No such image" in error or "not found" in error):
                raise LabFailure(
                    f"compose up failed:\n{error}\nbuild the offline images: scripts/build-offline-images.sh"
                )
            hint = f"\n{OFFLINE_HINT}" if not self.offline and PULL_ERRORS.search(error) else ""
            raise LabFailure(f"compose up failed:\n{error}{hint}")
        self.started_stack = True

    # Backend interface.

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        if not self.in_network and not (self.project_dir / COMPOSE_FILE).is_file():
            raise UsageError(
                f"the compose backend runs from a checkout of wslab ({COMPOSE_FILE} not found in "
                f"{self.project_dir}); --backend containers works from an installed wslab"
            )
        if not self.in_network:
            services = [PROBE_SERVICE] + [t.name for t in topologies if not t.direct]
            if self.app is not None:
                self.app_file = self._write_app_file(topologies)
                services.append(APP_SERVICE)
            await self._bring_up(services)
        control = (PROBE_SERVICE if self.in_network else "127.0.0.1", CONTROL_PORT)
        self.control = control
        await self._wait_control(*control)
        await self.feed.start(*control)
        hello = await self.feed.hello()
        # Behind taps, the websockets release that matters is the app's, which the lab cannot see.
        self.websockets_version = "" if self.app is not None else hello.websockets
        # A stack this run did not start keeps the time scale it was started with.
        self.time_scale = hello.time_scale
        watch = asyncio.create_task(self._watch_stopped([t for t in topologies if not t.direct]))
        try:
            deployments = await asyncio.gather(*(self._deployment(t) for t in topologies))
        finally:
            watch.cancel()
        await self._versions([d for d in deployments if d.status == READY and not d.topology.direct])
        if not self.in_network:
            await asyncio.to_thread(self._locate, [d for d in deployments if d.status == READY])
        if self.app is not None:
            put_behind(deployments, await self._start_app_log())
        return {d.topology.name: d for d in deployments}

    def _write_app_file(self, topologies: list[Topology]) -> Path:
        """The override that adds the user's image to the stack, in the run folder."""
        assert self.app is not None and self.app.image is not None and self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "docker-compose.app.yml"
        document = app_document(topologies, self.app.image, app_environment(self.app.image_port))
        path.write_text(
            render(document, header="# wslab run --app-image: the user's image behind the taps\n")
        )
        return path

    async def _start_app_log(self) -> ContainerAppLog:
        """Follow the app container's output, then wait until it listens on its port."""
        import docker

        assert self.app is not None and self.run_dir is not None
        found = await asyncio.to_thread(self._compose, "ps", "-a", "-q", APP_SERVICE)
        ids = found.stdout.split()
        if not ids:
            raise LabFailure(f"the {APP_SERVICE} container was not created:\n{found.stderr.strip()[-2000:]}")
        container = await asyncio.to_thread(docker.from_env().containers.get, ids[0])
        self.app_log = ContainerAppLog(container, self.run_dir / "app.log")
        self.app_log.start()
        port = self.app.image_port

        async def listens() -> bool:
            check = ["sh", "-c", listen_check(port)]
            result = await asyncio.to_thread(self._compose, "exec", "-T", PROBE_SERVICE, *check)
            return result.returncode == 0

        await wait_app_listening(listens, self.app_log, self.app.describe(), port)
        return self.app_log

    async def _versions(self, deployments: list[Deployment]) -> None:
        """Each proxy's own version, from what it wrote into the stack's versions volume at start
        (compose/render.sh): read in place by the runner, by one exec into the probe from the host.
        A stack without the volume (an older one, still running): the host execs into each proxy,
        the runner names the image."""
        written: dict[str, str] = {}
        if self.in_network:
            folder = Path(VERSIONS_DIR)
            written = {
                path.name: path.read_text(errors="replace") for path in folder.glob("*") if path.is_file()
            }
        elif deployments:
            result = await asyncio.to_thread(self._compose, "exec", "-T", PROBE_SERVICE, *READ_VERSIONS)
            if result.returncode == 0:
                with contextlib.suppress(ValueError):
                    written = json.loads(result.stdout)
        for deployment in deployments:
            kind = REGISTRY[deployment.topology.proxy]
            text = written.get(deployment.topology.name)
            if text is None and not self.in_network:
                command = kind.version_command(kind.executable)
                found = await asyncio.to_thread(
                    self._compose, "exec", "-T", deployment.topology.name, *command
                )
                text = found.stdout + found.stderr
            if text is not None:
                deployment.version = kind.parse_version(text)

    def _locate(self, deployments: list[Deployment]) -> None:
        """Give each deployment its proxy's container and its fault hops in the containers'
        namespaces (from the host only: inside the stack the runner has no Docker socket)."""
        import docker

        label = f"com.docker.compose.project={self.project}"
        running = docker.from_env().containers.list(filters={"label": label})
        by_service = {container.labels.get("com.docker.compose.service"): container for container in running}
        probe = by_service.get(PROBE_SERVICE)
        for deployment in deployments:
            topology = deployment.topology
            proxy = None if topology.direct else by_service.get(topology.name)
            if probe is None or (proxy is None and not topology.direct):
                continue
            deployment.container = proxy.id if proxy is not None else None
            deployment.hops = stack_hops(topology, proxy, probe)

    async def _wait_control(self, host: str, port: int) -> None:
        try:
            settle = 0 if self.in_network else FORWARDED_SETTLE
            await wait_answering(host, port, HEALTHY_TIMEOUT, http=False, settle=settle)
        except TimeoutError:
            # Inside the stack there is no compose CLI: the message says where to look.
            tail = f"docker compose logs {PROBE_SERVICE}"
            if not self.in_network:
                tail = (await asyncio.to_thread(self._compose, "logs", "--tail", "20", PROBE_SERVICE)).stdout
            raise LabFailure(
                f"the probe server's control channel {host}:{port} did not answer:\n{tail}"
            ) from None

    async def _watch_stopped(self, proxies: list[Topology]) -> None:
        """Add to ``self.stopped`` each proxy whose container stops (or never runs) while the run
        waits for it, so that its column says so at once rather than after the whole timeout."""
        names = [topology.name for topology in proxies]
        since: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            if self.in_network:
                # Every proxy has started before the runner (depends_on): a name Docker's DNS no
                # longer resolves is a container that has stopped.
                hosts = [network_endpoint(topology)[0] for topology in proxies]
                results = await asyncio.gather(
                    *(loop.getaddrinfo(host, None) for host in hosts), return_exceptions=True
                )
                down = {
                    name for name, found in zip(names, results, strict=True) if isinstance(found, OSError)
                }
            else:
                result = await asyncio.to_thread(
                    self._compose, "ps", "--services", "--filter", "status=running"
                )
                # A compose ps that failed says nothing about the containers.
                down = set(names) - set(result.stdout.split()) if result.returncode == 0 else set()
            now = loop.time()
            for name in names:
                if name not in down:
                    since.pop(name, None)
                elif now - since.setdefault(name, now) >= STOPPED_AFTER:
                    self.stopped.add(name)
            await asyncio.sleep(0.5 if self.in_network else 1.0)

    async def _deployment(self, topology: Topology) -> Deployment:
        host, port = network_endpoint(topology) if self.in_network else ("127.0.0.1", topology.port)
        kind = None if topology.direct else REGISTRY[topology.proxy]
        # Until _versions reads the proxy's own: the image it runs on.
        version = "" if kind is None else os.environ.get("WSLAB_PROXY_IMAGE") or kind.image
        timeout = IN_NETWORK_TIMEOUT if self.in_network else HEALTHY_TIMEOUT
        try:
            await wait_answering(
                host,
                port,
                timeout,
                http=ready_by_http(topology),
                alive=lambda: topology.name not in self.stopped,
                # From the host, a published port accepts even when the proxy does not listen.
                settle=0 if self.in_network else FORWARDED_SETTLE,
            )
        except (TimeoutError, ProcessLookupError) as error:
            if isinstance(error, ProcessLookupError):
                detail = f"the {topology.name} container stopped before answering on {host}:{port}"
            else:
                detail = f"{host}:{port} did not answer in {timeout:g} s"
            tail = ""
            if not self.in_network:
                logs = await asyncio.to_thread(self._compose, "logs", "--tail", "15", topology.name)
                tail = logs.stdout.strip()
            else:
                # The runner cannot read other containers' logs.
                detail += f" (docker compose logs {topology.name} says why)"
            return Deployment(
                topology,
                FAILED,
                detail=detail,
                log_tail=tail,
                config_text=proxy_config(topology, self.time_scale),
                arguments=proxy_arguments(topology, self.time_scale),
            )
        return Deployment(
            topology,
            READY,
            Endpoint(host, port),
            version=version,
            config_text=proxy_config(topology, self.time_scale),
            arguments=proxy_arguments(topology, self.time_scale),
        )

    def alive(self, deployment: Deployment) -> bool:
        return True

    def failure(self) -> str | None:
        if self.feed.lost:
            return f"{self.feed.lost} (the probe container stopped?)"
        return stopped(self.app_log)

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """Each proxy container's log; inside the stack the runner cannot read other containers'."""
        if self.in_network:
            return {}
        names = [name for name, d in deployments.items() if not d.topology.direct and d.status == READY]
        results = await asyncio.gather(
            *(
                asyncio.to_thread(self._compose, "logs", "--no-color", "--tail", "20000", name)
                for name in names
            )
        )
        return {name: result.stdout for name, result in zip(names, results, strict=True)}

    def app_record(self) -> AppRecord | None:
        if self.app is None:
            return None
        return AppRecord(image=self.app.image, exit=self.app_exit)

    async def stop(self) -> None:
        if self.app_log is not None and self.app_log.ended:
            self.app_exit = await asyncio.to_thread(self.app_log.exit_status)
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.feed.stop(), 2)
        if self.started_stack and not self.keep:
            # Each service's stop_grace_period bounds the wait (docker-compose.yml).
            taken = await asyncio.to_thread(self._down)
            if self.app_log is not None:
                await asyncio.to_thread(self.app_log.stop)
            if not taken.complete:
                raise LabFailure(f"compose down failed:\n{taken.result.stderr.strip()[-2000:]}")
            if taken.held_networks:
                print(taken.warning(), file=sys.stderr)
