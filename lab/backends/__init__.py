"""Backends stand topologies up and tell the runner where to connect.

Every backend yields, per topology, a :class:`Deployment`: an endpoint and the
name of the probe listener behind it when ready, or why it is not. Each also
provides a feed of what the server received (an
:class:`~wslab.observations.ObservationFeed`), and, before it stops, each
proxy's log text, so that results carry the log lines of every cell. The
runner knows nothing else about how a topology runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..app_log import AppLog, HandshakeGate
from ..endpoint import Endpoint
from ..faults import Hop
from ..observations import Hello
from ..proxies import REGISTRY
from ..records import AppRecord, Connection, DeploymentStatus, Fact, Parameter, TopologyRecord
from ..topology import Topology

READY, UNAVAILABLE, FAILED = DeploymentStatus.READY, DeploymentStatus.UNAVAILABLE, DeploymentStatus.FAILED

ACCELERATED = 0.02
"""Time scale of accelerated runs: platform limits and pings 50 times shorter."""

CONFIG_MAX_CHARS = 40_000
"""A rendered config longer than this is kept cut, with a note saying so."""


@dataclass
class StackOptions:
    """How the probe server and the topologies behind it are set up."""

    websockets_version: str | None = None
    answer_plain_http: bool = False
    ping_interval: float = 20.0
    """The probe server's keepalive pings in faithful seconds (websockets' default); 0 for none."""
    time_scale: float = 1.0
    """1.0 runs every time limit as documented; ACCELERATED shortens them all in proportion."""
    redact: bool = True
    """The probe server redacts secrets from its records before it keeps or publishes them
    (False: ``--no-redact``)."""


def ready_by_http(topology: Topology) -> bool:
    """Whether the lab checks that ``topology`` is up with an HTTP request (GET /.wslab-ready)
    rather than a bare connection: for a proxy that accepts before it can answer, and for
    ``direct``, the probe server's own listener (or its tap), which answers that request itself
    and records nothing, where it would record a bare connection as one that sent no request."""
    return topology.direct or REGISTRY[topology.proxy].ready_by_http


def kept_config(text: str) -> str:
    """A rendered config as results keep it: whole, or cut at :data:`CONFIG_MAX_CHARS` with a note."""
    if len(text) <= CONFIG_MAX_CHARS:
        return text
    return text[:CONFIG_MAX_CHARS] + f"\n[cut: {len(text) - CONFIG_MAX_CHARS} more characters]\n"


@dataclass
class Deployment:
    """One topology as a backend stood it up (or could not)."""

    topology: Topology
    status: DeploymentStatus
    endpoint: Endpoint | None = None
    detail: str = ""
    log_path: Path | None = None
    log_tail: str = ""
    config_text: str | None = None
    """The proxy's config as rendered for this run."""
    arguments: list[str] = field(default_factory=list)
    """The topology's own command-line arguments as rendered for this run."""
    version: str = ""
    handle: Any = None
    behind_app: bool = False
    """The user's app stands behind the proxy (through the recording tap), not the probe server."""
    app_log: AppLog | None = None
    """What that app writes, when the lab started it."""
    gate: HandshakeGate | None = None
    """One opening handshake at a time to that app, so that its log lines can be tied to cells."""
    upstream: tuple[str, int] | None = None
    """Where the proxy sends its traffic (the probe listener or tap), when the backend runs it on
    this machine's loopback: the proxy-server hop a fault step may act on. None elsewhere."""
    container: str | None = None
    """The proxy's container (compose, containers backends), by id: where an event reloads it."""
    hops: dict[str, Hop] | None = None
    """Each hop a fault step may name, in the network namespaces of the containers that listen on
    it (compose, containers backends); None: loopback hops from ``endpoint`` and ``upstream``."""

    @property
    def listener(self) -> str:
        return self.topology.name

    def record(self) -> TopologyRecord:
        topology = self.topology
        return TopologyRecord(
            name=topology.name,
            title=topology.title,
            proxy=topology.proxy,
            role=topology.role,
            proxy_version=self.version,
            summary=topology.summary,
            platform=topology.platform,
            parameters=[
                Parameter(
                    name=p.name, seconds=p.seconds, source=p.source, limit=p.limit, granularity=p.granularity
                )
                for p in topology.parameters
            ],
            behaviours=list(topology.behaviours),
            sources=list(topology.sources),
            status=self.status,
            endpoint=self.endpoint.ws_url() if self.endpoint else None,
            detail=self.detail,
            log_tail=self.log_tail,
            config=kept_config(self.config_text) if self.config_text is not None else None,
            arguments=self.arguments,
            basis=topology.basis,
            facts={
                fact.name: Fact(value=fact.value, status=fact.status, source=fact.source, holds=fact.holds)
                for fact in topology.facts
            },
        )


class Feed(Protocol):
    """Where the runner learns what the server received (see ObservationFeed)."""

    async def hello(self, timeout: float = 10.0) -> Hello: ...

    @property
    def records_redacted(self) -> bool:
        """Whether every record this feed passes on was redacted by the lab's own probe server
        (it says so in its greeting), with the rules the runner would apply again."""
        ...

    async def wait_for_cell(
        self, cell: str, settle: float, expected: int = 1, listener: str | None = None
    ) -> list[Connection]: ...

    async def in_window(
        self, listener: str, start: float, settle: float, closed_back: bool = False
    ) -> list[Connection]: ...

    async def unattributed(self, listener: str, start: float) -> list[Connection]: ...

    async def first_report(self, cell: str) -> Connection:
        """The first connection reported with ``cell``'s id, once there is one (a raw step races
        it: wslab.relay_patience); never returning is allowed."""
        ...

    async def stop(self) -> None: ...


class Backend(Protocol):
    """What the runner needs of a backend."""

    name: str
    feed: Feed
    websockets_version: str
    time_scale: float

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        """Stand every topology up; never raises for one topology (it is FAILED instead)."""
        ...

    def alive(self, deployment: Deployment) -> bool:
        """False once the topology's proxy has died."""
        ...

    def failure(self) -> str | None:
        """Which part every topology needs (the probe server, a --target) has stopped, and its
        last log lines; None while all is well."""
        ...

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """Each proxy's log text (topology name -> text), read while the proxies still run. A
        backend may also have ``read_log_ahead(deployment)``, which the runner calls once a
        topology's cells are all done: it may start reading that log then (a Varnish dump)."""
        ...

    def app_record(self) -> AppRecord | None:
        """The user's app behind the topologies, and what it logged that no cell claimed; None
        when the lab's probe server stood there."""
        ...

    async def stop(self) -> None:
        """Stop everything :meth:`start` started, whatever happened."""
        ...
