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
from typing import Any

import docker.types

from ..compose_file import (
    CONTROL_PORT,
    LAB_IMAGE,
    OFFLINE_LAB_IMAGE,
    PROBE_SERVICE,
    PROXY_PORT,
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
from ..topology import Topology
from . import FAILED, READY, Deployment, StackOptions

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402

READY_TIMEOUT = 60.0
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


class ContainersBackend:
    """Starts topologies as containers through testcontainers."""

    name = "containers"

    def __init__(self, probe: StackOptions, *, offline: bool = True) -> None:
        self.probe = probe
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
        direct = [t.port for t in topologies if t.direct]
        probe = _container(spec, self.image, self.network, [CONTROL_PORT, *direct])
        probe.with_network_aliases(PROBE_SERVICE)
        self.containers.append(probe)
        probe.start()
        started = {PROBE_SERVICE: probe}
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

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        started = await asyncio.to_thread(self._start_containers, topologies)
        probe = started[PROBE_SERVICE]
        control = int(probe.get_exposed_port(CONTROL_PORT))
        await wait_answering(LOOPBACK, control, READY_TIMEOUT, settle=FORWARDED_SETTLE)
        await self.feed.start(LOOPBACK, control)
        self.websockets_version = (await self.feed.hello()).websockets
        deployments = await asyncio.gather(
            *(self._deployment(t, started[PROBE_SERVICE if t.direct else t.name]) for t in topologies)
        )
        return {d.topology.name: d for d in deployments}

    async def _deployment(self, topology: Topology, container: DockerContainer) -> Deployment:
        port = int(container.get_exposed_port(topology.port if topology.direct else PROXY_PORT))
        kind = None if topology.direct else REGISTRY[topology.proxy]
        try:
            await wait_answering(
                LOOPBACK, port, READY_TIMEOUT, http=bool(kind and kind.ready_by_http), settle=FORWARDED_SETTLE
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

    def alive(self, deployment: Deployment) -> bool:
        return True

    def failure(self) -> str | None:
        return f"{self.feed.lost} (the probe container stopped?)" if self.feed.lost else None

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

    def app_record(self) -> None:
        """No user's app stands behind this backend's topologies."""
        return None

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.feed.stop(), 2)
        await asyncio.to_thread(self._remove)
