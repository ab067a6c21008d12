"""Lifecycle events and fault hops on a stack of containers: the compose and containers backends.

A proxy reload reaches the container as the local backend's reaches a process. Its signal goes
to the container's main process, tini (``init: true`` in the stack), which passes it on to the
one process it started, the proxy (compose/render.sh exec's it). A reload command (caddy reload)
is exec'd in the container with the config and run folder the container uses. A server restart
goes through the probe server's control channel, as locally (:func:`~wslab.observations.command_listener`).
A reload by a changed file (Traefik's watched directory) writes the file in the container with its
shell, aside and then renamed, as the local backend does in the run folder.

A fault is made in the network namespace of the container that listens on the hop, from the host
(``nsenter --target PID --net``, see lab/faults.py): the proxy's container for client-proxy, the
probe server's for proxy-server. A bandwidth or latency fault adds an ifb device there too, to
which both directions of the hop are redirected. Those rules, qdiscs and ifb devices die with the
containers when the stack goes down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from ..compose_file import PROXY_PORT, RUN_DIR, container_config, reload_command
from ..faults import Hop
from ..lifecycle import RELOAD_TIMEOUT, EventFailed, reload_failed, reload_timed_out
from ..observations import command_listener
from ..proxies import REGISTRY
from ..topology import Topology
from . import Deployment

DEFAULT_DEVICE = "eth0"
"""A container's interface on its first network, when its routing table names none."""


def default_device(route_table: str) -> str | None:
    """The device of the default route in a /proc/PID/net/route table, or None."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and fields[1] == "00000000":
            return fields[0]
    return None


def listener_hop(container: Container, port: int) -> Hop:
    """The hop whose listening side is ``port`` in ``container``: its main process's network
    namespace, and the device its traffic from other containers and the host crosses there."""
    container.reload()
    pid = int(container.attrs["State"]["Pid"])
    try:
        device = default_device(Path(f"/proc/{pid}/net/route").read_text())
    except OSError:
        device = None
    return Hop(port, device or DEFAULT_DEVICE, pid, f"container {container.name}")


def stack_hops(topology: Topology, proxy: Container | None, probe: Container) -> dict[str, Hop]:
    """A topology's hops in the stack: the proxy's listening port in its container, and its
    listener's port in the probe server's (through ``direct`` the client talks to that listener,
    so both hops are that one)."""
    server = listener_hop(probe, topology.port)
    client = server if proxy is None else listener_hop(proxy, PROXY_PORT)
    return {"client-proxy": client, "proxy-server": server}


def docker_container(container_id: str) -> Container:
    """The Docker SDK's view of a container, by id."""
    return docker.from_env().containers.get(container_id)


class ContainerEvents:
    """The event calls of lab/lifecycle.py's ``EventBackend`` for a backend whose proxies run in
    containers (each deployment's ``container``) and whose probe server's control channel is
    ``control``."""

    control: tuple[str, int] | None = None

    async def signal_proxy(self, deployment: Deployment, signal_name: str) -> None:
        """Send the proxy's container a signal by name (tini passes it on to the proxy)."""
        container = await _running(deployment)
        try:
            await asyncio.to_thread(container.kill, signal=signal_name)
        except docker.errors.APIError as error:
            raise EventFailed(f"{deployment.topology.name}: {error.explanation or error}") from None

    async def reload_by_command(self, deployment: Deployment) -> None:
        """Run the documented reload command of the proxy's kind in its container."""
        container = await _running(deployment)
        await _exec_reload(deployment, container, reload_command(deployment.topology))

    async def write_reload_change(self, deployment: Deployment, text: str) -> None:
        """Put ``text`` where the proxy watches for a changed file in its container, whole at once."""
        container = await _running(deployment)
        reload = REGISTRY[deployment.topology.proxy].reload
        assert reload is not None and reload.change_file
        aside = f"{RUN_DIR}/.{reload.change_file}.tmp"
        target = str(container_config(deployment.topology).parent / reload.change_file)
        # The text is an argument, not part of the script: nothing in it is the shell's to read.
        argv = ["sh", "-c", 'printf %s "$1" > "$2" && mv "$2" "$3"', "sh", text, aside, target]
        await _exec_reload(deployment, container, argv)

    async def restart_server(self, listener: str, down: float) -> dict[str, Any]:
        """Have the probe server restart a listener, through its published control channel."""
        return await self.command_server({"restart": listener, "down": down}, "restarted")

    async def command_server(self, command: dict[str, Any], answer: str) -> dict[str, Any]:
        """Send the probe server a listener command through its published control channel."""
        if self.control is None:
            raise EventFailed("the probe server's control channel cannot be reached from here")
        return await command_listener(self.control, command, answer)


async def _exec_reload(deployment: Deployment, container: Container, argv: list[str]) -> None:
    """Run one step of a reload in the proxy's container, bounded by RELOAD_TIMEOUT; a failure
    says what the container printed."""
    try:
        result: Any = await asyncio.wait_for(asyncio.to_thread(container.exec_run, argv), RELOAD_TIMEOUT)
    except TimeoutError:
        raise reload_timed_out(deployment.topology) from None
    if result.exit_code != 0:
        raise reload_failed(deployment.topology, result.output)


async def _running(deployment: Deployment) -> Container:
    """The deployment's proxy container, which must be running."""
    if deployment.container is None:
        raise EventFailed(
            f"{deployment.topology.name}: the lab cannot reach its proxy's container from here "
            "(inside the stack the runner has no Docker socket)"
        )
    try:
        container = await asyncio.to_thread(docker_container, deployment.container)
    except docker.errors.NotFound:
        raise EventFailed(f"{deployment.topology.name}: its proxy's container is gone") from None
    if container.status != "running":
        raise EventFailed(f"{deployment.topology.name}: its proxy's container is {container.status}")
    return container
