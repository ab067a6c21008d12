"""The containers backend: each topology as a container started through testcontainers.

It runs the very service definitions of the compose stack (``lab.stack``), but
without the compose CLI: a private network, the probe server under the alias
``probe``, one container per proxy, every port published on 127.0.0.1 at a
random port. Ryuk, testcontainers' reaper, needs an image from a registry, so
it is off unless TESTCONTAINERS_RYUK_DISABLED says otherwise; :meth:`stop`
removes every container and the network itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import docker.types

from ..app import AppSpec
from ..app_container import ContainerAppLog, app_environment, put_behind, stopped, wait_app_listening
from ..compose_file import (
    CONTROL_PORT,
    LAB_IMAGE,
    OFFLINE_LAB_IMAGE,
    PROBE_SERVICE,
    PROXY_PORT,
    forward_arguments,
    listen_check,
    probe_service,
    proxy_arguments,
    proxy_config,
    proxy_service,
    resolve,
)
from ..endpoint import Endpoint
from ..observations import ObservationFeed
from ..paths import COMPOSE_DIR
from ..processes import FORWARDED_SETTLE, wait_answering
from ..proxies import REGISTRY
from ..records import AppRecord
from ..topology import Topology
from . import FAILED, READY, Deployment, StackOptions, ready_by_http
from .container_events import ContainerEvents, stack_hops

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402

READY_TIMEOUT = 60.0
APP = "app"
LOOPBACK = "127.0.0.1"


def _image(template: str, probe: StackOptions) -> str:
    values = dict(os.environ)
    if probe.websockets_version:
        values["WSLAB_WEBSOCKETS"] = probe.websockets_version
    return resolve(template, values)


def _container(spec: dict[str, Any], image: str, network: Network, ports: list[int]) -> DockerContainer:
    container = DockerContainer(image).with_network(network)
    # The service's run options as the compose file has them (docker-py's names).
    options: dict[str, Any] = {}
    if "entrypoint" in spec:
        options["entrypoint"] = spec["entrypoint"]
    if "user" in spec:
        options["user"] = spec["user"]
    for option in ("init", "stop_signal"):
        if option in spec:
            options[option] = spec[option]
    if "ulimits" in spec:
        options["ulimits"] = [
            docker.types.Ulimit(name=name, soft=limit["soft"], hard=limit["hard"])
            for name, limit in spec["ulimits"].items()
        ]
    if options:
        container.with_kwargs(**options)
    container.with_command(spec["command"])
    for name, value in spec.get("environment", {}).items():
        container.with_env(name, value)
    for volume in spec.get("volumes", []):
        source, target, *mode = volume.split(":")
        if not source.startswith("./compose/"):
            # The stack's named volumes (versions): each container here is exec'd into instead.
            continue
        # "./compose/..." in the compose file: the topology folders, wherever this copy keeps them.
        container.with_volume_mapping(str(COMPOSE_DIR / source.removeprefix("./compose/")), target, *mode)
    for port in ports:
        # A one-element tuple is docker-py's "this host address, any free port";
        # with_bind_ports has no way to say it, and publishing on 0.0.0.0 is not allowed here.
        container.ports[f"{port}/tcp"] = (LOOPBACK,)  # type: ignore[assignment]
    return container


class ContainersBackend(ContainerEvents):
    """Starts topologies as containers through testcontainers; causes lifecycle events and puts
    faults on in them (see container_events)."""

    name = "containers"

    def __init__(
        self,
        probe: StackOptions,
        *,
        offline: bool = True,
        app: AppSpec | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.probe = probe
        self.app = app
        """With ``--app-image``: the user's image behind every topology, through the probe's taps."""
        self.run_dir = run_dir
        self.app_log: ContainerAppLog | None = None
        self.app_exit = ""
        self.image = _image(OFFLINE_LAB_IMAGE if offline else LAB_IMAGE, probe)
        self.offline = offline
        self.feed = ObservationFeed()
        self.websockets_version = ""
        self.time_scale = probe.time_scale
        self.network: Network | None = None
        self.containers: list[DockerContainer] = []

    def _start_containers(self, topologies: list[Topology]) -> dict[str, DockerContainer]:
        self.network = Network()
        self.network.create()
        spec = probe_service(topologies)
        spec["environment"] = {
            "WSLAB_ANSWER_PLAIN_HTTP": "1" if self.probe.answer_plain_http else "",
            "WSLAB_NO_REDACT": "" if self.probe.redact else "1",
            "WSLAB_TIME_SCALE": str(self.probe.time_scale),
        }
        if self.app is not None:
            spec["command"] += forward_arguments(topologies, self.app.image_port)
        direct = [t.port for t in topologies if t.direct]
        probe = _container(spec, self.image, self.network, [CONTROL_PORT, *direct])
        probe.with_network_aliases(PROBE_SERVICE)
        self.containers.append(probe)
        probe.start()
        started = {PROBE_SERVICE: probe}
        if self.app is not None:
            started[APP] = self._start_app(probe)
        for topology in topologies:
            if topology.direct:
                continue
            image = self.image if self.offline else REGISTRY[topology.proxy].image
            spec = proxy_service(topology, self.probe.time_scale)
            container = _container(spec, image, self.network, [PROXY_PORT])
            self.containers.append(container)
            container.start()
            started[topology.name] = container
        return started

    def _start_app(self, probe: DockerContainer) -> DockerContainer:
        """The user's image in the probe container's network namespace, reached on 127.0.0.1."""
        assert self.app is not None and self.app.image is not None
        app = DockerContainer(self.app.image)
        app.with_kwargs(network_mode=f"container:{probe.get_wrapped_container().id}", init=True)
        for name, value in app_environment(self.app.image_port).items():
            app.with_env(name, value)
        self.containers.append(app)
        app.start()
        return app

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        started = await asyncio.to_thread(self._start_containers, topologies)
        probe = started[PROBE_SERVICE]
        control = int(probe.get_exposed_port(CONTROL_PORT))
        await wait_answering(LOOPBACK, control, READY_TIMEOUT, settle=FORWARDED_SETTLE)
        self.control = (LOOPBACK, control)
        await self.feed.start(LOOPBACK, control)
        hello = await self.feed.hello()
        # Behind taps, the websockets release that matters is the app's, which the lab cannot see.
        self.websockets_version = "" if self.app is not None else hello.websockets
        if self.app is not None:
            await self._wait_app(probe, started[APP])
        deployments = await asyncio.gather(
            *(self._deployment(t, started[PROBE_SERVICE if t.direct else t.name]) for t in topologies)
        )
        await asyncio.to_thread(self._locate, [d for d in deployments if d.status == READY], probe)
        if self.app_log is not None:
            put_behind(deployments, self.app_log)
        return {d.topology.name: d for d in deployments}

    async def _wait_app(self, probe: DockerContainer, app: DockerContainer) -> None:
        """Follow the app's output, and wait until it listens (read in the probe's socket table)."""
        assert self.app is not None and self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.app_log = ContainerAppLog(app.get_wrapped_container(), self.run_dir / "app.log")
        self.app_log.start()
        port = self.app.image_port

        async def listens() -> bool:
            result = await asyncio.to_thread(probe.exec, ["sh", "-c", listen_check(port)])
            return result.exit_code == 0

        await wait_app_listening(listens, self.app_log, self.app.describe(), port)

    async def _deployment(self, topology: Topology, container: DockerContainer) -> Deployment:
        port = int(container.get_exposed_port(topology.port if topology.direct else PROXY_PORT))
        kind = None if topology.direct else REGISTRY[topology.proxy]
        try:
            await wait_answering(
                LOOPBACK, port, READY_TIMEOUT, http=ready_by_http(topology), settle=FORWARDED_SETTLE
            )
        except TimeoutError:
            stdout, stderr = container.get_logs()
            tail = "\n".join((stdout + stderr).decode(errors="replace").strip().splitlines()[-15:])
            return Deployment(
                topology,
                FAILED,
                detail=f"no answer on port {port}",
                log_tail=tail,
                config_text=proxy_config(topology, self.time_scale),
                arguments=proxy_arguments(topology, self.time_scale),
            )
        version = ""
        if kind is not None:
            result = await asyncio.to_thread(container.exec, kind.version_command(kind.executable))
            version = kind.parse_version(result.output.decode(errors="replace"))
        return Deployment(
            topology,
            READY,
            Endpoint(LOOPBACK, port),
            version=version,
            config_text=proxy_config(topology, self.time_scale),
            arguments=proxy_arguments(topology, self.time_scale),
            handle=container,
        )

    def _locate(self, deployments: list[Deployment], probe: DockerContainer) -> None:
        """Give each deployment its proxy's container and its fault hops in the containers'
        namespaces."""
        for deployment in deployments:
            direct = deployment.topology.direct
            proxy = None if direct else deployment.handle.get_wrapped_container()
            deployment.container = proxy.id if proxy is not None else None
            deployment.hops = stack_hops(deployment.topology, proxy, probe.get_wrapped_container())

    def alive(self, deployment: Deployment) -> bool:
        return True

    def failure(self) -> str | None:
        if self.feed.lost:
            return f"{self.feed.lost} (the probe container stopped?)"
        return stopped(self.app_log)

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        def read(container: DockerContainer) -> str:
            stdout, stderr = container.get_logs()
            return (stdout + stderr).decode(errors="replace")

        proxies = {
            n: d.handle for n, d in deployments.items() if d.handle is not None and not d.topology.direct
        }
        texts = await asyncio.gather(*(asyncio.to_thread(read, c) for c in proxies.values()))
        return dict(zip(proxies, texts, strict=True))

    def _remove(self) -> None:
        for container in reversed(self.containers):
            with contextlib.suppress(Exception):
                container.stop()
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.remove()

    def app_record(self) -> AppRecord | None:
        if self.app is None:
            return None
        return AppRecord(image=self.app.image, exit=self.app_exit)

    async def stop(self) -> None:
        if self.app_log is not None and self.app_log.ended:
            self.app_exit = await asyncio.to_thread(self.app_log.exit_status)
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.feed.stop(), 2)
        await asyncio.to_thread(self._remove)
        if self.app_log is not None:
            await asyncio.to_thread(self.app_log.stop)
