"""Topologies: one folder each under compose/, holding topology.yaml and its config.

The config file is a template shared by every backend: only ``${WSLAB_*}``
placeholders are filled in (listen and upstream addresses, a scratch dir, time
limits), so the local processes and the compose containers run the very same
file. topology.yaml is checked against lab/schemas/topology.schema.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .errors import TopologyError, UsageError
from .paths import COMPOSE_DIR
from .proxies import REGISTRY
from .safe_yaml import YamlInputError, load_yaml
from .validation import check_against

PLACEHOLDER = re.compile(r"\$\{(WSLAB_[A-Z0-9_]+)\}")

SCALE_TOLERANCE = 0.1
"""How far a scaled limit may land from its exact value (the proxy's own steps) and still
count as measured: the tests hold measured limits to the same 10%."""


@dataclass(frozen=True)
class Parameter:
    """A time limit the topology imposes, and where its value comes from.

    Templates use it as ``${WSLAB_P_<NAME>_MS}`` (integer milliseconds),
    ``${WSLAB_P_<NAME>_S}`` (seconds, 3 decimals) or ``${WSLAB_P_<NAME>_WHOLE_S}``
    (whole seconds, for proxies that take nothing finer); accelerated runs scale it.
    """

    name: str
    seconds: float
    source: str
    limit: str = "idle"
    """idle, lifetime, close-delay or handshake; or how the platform ends an instance:
    shutdown-delay, shutdown-grace or idle-to-zero (see the topology schema)."""
    granularity: float = 0.001
    """The smallest step the proxy takes, in seconds."""

    def scaled(self, scale: float) -> float:
        """The value the proxy really gets at a time scale: scaled, then rounded to its steps."""
        steps = max(1, round(self.seconds * scale / self.granularity))
        return steps * self.granularity

    def holds_at(self, scale: float) -> bool:
        """Whether the proxy can be given this limit at ``scale`` within :data:`SCALE_TOLERANCE`."""
        exact = self.seconds * scale
        return abs(self.scaled(scale) - exact) <= SCALE_TOLERANCE * exact

    def placeholders(self, scale: float) -> dict[str, str]:
        seconds = self.seconds * scale
        prefix = f"WSLAB_P_{self.name.upper()}"
        return {
            f"{prefix}_MS": str(max(1, round(seconds * 1000))),
            f"{prefix}_S": f"{seconds:.3f}",
            f"{prefix}_WHOLE_S": str(max(1, round(seconds))),
        }


INSTANCE_LIMITS = ("shutdown-delay", "shutdown-grace", "idle-to-zero")
"""Parameters about how the platform ends an app instance (the lifecycle suite plays them)."""

FACTS = ("scale_to_zero", "cold_start", "several_instances", "cost")
"""The facts a topology may state about the option it models (topology.yaml ``facts:``)."""

FACT_STATUSES = ("documented", "inferred", "assumed", "measured")
"""How a fact or a figure is known, from the most to the least certain (measured apart)."""

SOURCE_TAG = re.compile(
    r"\[(DOC|DOC-2nd|CODE|VERIFIED|INFERRED|UNVERIFIED|ISSUE|3P)(, older revision)?\]|\bassumption\b"
)
"""The evidence tags of the lab's platform reference (platform-facts.md), and 'assumption'.
``[DOC, older revision]`` marks what only an older revision of a vendor's page says."""


def source_status(source: str) -> str:
    """How a limit's or a fact's value is known, from its source's first tag: [DOC] (or
    [DOC-2nd], [CODE]) is documented; 'assumption' assumed; anything else inferred, a claim
    only an older revision of a vendor's page makes ([DOC, older revision]) included, and
    [INFERRED], [3P], [ISSUE]..."""
    tag = SOURCE_TAG.search(source)
    if tag is None:
        return "inferred"
    if tag.group(1) is None:
        return "assumed"
    if tag.group(1) in ("DOC", "DOC-2nd", "CODE") and tag.group(2) is None:
        return "documented"
    return "inferred"


@dataclass(frozen=True)
class Fact:
    """What a deployment option is like beyond its time limits (scale to zero, cold starts,
    instances, cost): not something the lab can measure, so it says how it is known."""

    name: str
    """One of :data:`FACTS`."""
    value: str
    """A few words, as the comparison shows them."""
    status: str
    """One of :data:`FACT_STATUSES`."""
    source: str
    holds: bool | None = None
    """Whether the statement its name makes holds (None: it does not apply)."""


RELOAD_OUTCOMES = ("kept", "closed")
"""What a topology's documentation (or assumption) says becomes of open WebSockets at a reload."""


@dataclass(frozen=True)
class DocumentedReload:
    """What becomes of an open WebSocket when this topology's proxy reloads its config, as the
    proxy's documentation says for this config (topology.yaml ``reload:``), or as assumed for a
    platform whose front end documents nothing: the lifecycle suite's proxy-reload cell is
    compared with it."""

    open_websockets: str
    """One of :data:`RELOAD_OUTCOMES`."""
    source: str

    @property
    def kept(self) -> bool:
        return self.open_websockets == "kept"

    @property
    def status(self) -> str:
        """documented, inferred or assumed (:func:`source_status`)."""
        return source_status(self.source)

    def describe(self) -> str:
        """'kept (documented: [DOC] https://...)'."""
        return f"{self.open_websockets} ({self.status}: {self.source})"


class Limit(Protocol):
    """A time limit as a topology declares it or a run records it (``wslab.records.Parameter``)."""

    @property
    def seconds(self) -> float: ...

    @property
    def limit(self) -> str: ...


L = TypeVar("L", bound=Limit)


def cutting_limit(parameters: Iterable[L], held: float, ping_every: float | None) -> tuple[L, float] | None:
    """The limit that should end a WebSocket held ``held`` faithful seconds with pings every
    ``ping_every`` seconds (None: silence), and when (close delays added), or None if none does.

    Idle limits count silence in either direction, so pings more often than the limit
    defeat it; a lifetime limit ends the connection whatever crosses it; close delays add.
    It reads the limits alone, so a run's recorded parameters predict the same as the topology.
    """
    parameters = list(parameters)
    delay = sum(p.seconds for p in parameters if p.limit == "close-delay")
    cuts = [
        p
        for p in parameters
        if p.limit == "lifetime" or (p.limit == "idle" and (ping_every is None or ping_every >= p.seconds))
    ]
    first = min(cuts, key=lambda p: p.seconds, default=None)
    if first is None or first.seconds + delay >= held:
        return None
    return first, first.seconds + delay


@dataclass(frozen=True)
class Topology:
    """A deployment shape: a proxy kind with its config, or nothing (direct)."""

    name: str
    title: str
    proxy: str
    port: int
    """Stable port of this topology in the compose stack (127.0.0.1:port on the host)."""
    summary: str
    folder: Path
    role: str = "bare"
    """direct, bare (as it ships), websocket (its project's recipe) or platform (an emulation)."""
    config: Path | None = None
    websocket_fix: str = ""
    sources: list[str] = field(default_factory=list)
    platform: str = ""
    """The deployment option this topology emulates, if any (e.g. 'Google Cloud Run')."""
    parameters: tuple[Parameter, ...] = ()
    behaviours: tuple[str, ...] = ()
    """Emulated platform behaviours, each naming its source or saying it is an assumption."""
    arguments: tuple[str, ...] = ()
    """Command-line arguments beyond the kind's, with the config's placeholders."""
    basis: str = ""
    """What the config is: a distribution's default, or a project's documented recipe."""
    facts: tuple[Fact, ...] = ()
    """What the option is like beyond its time limits, each with how it is known."""
    reload: DocumentedReload | None = None
    """What its documentation says a config reload does to open WebSockets (None: direct)."""

    def placeholders(self, scale: float) -> dict[str, str]:
        """Values of every ``${WSLAB_P_*}`` placeholder at a time scale (1.0: faithful). How the
        platform ends an instance is the probe server's to play, not the proxy's: not here."""
        values: dict[str, str] = {}
        for parameter in self.parameters:
            if parameter.limit not in INSTANCE_LIMITS:
                values.update(parameter.placeholders(scale))
        return values

    @property
    def log_dumped(self) -> bool:
        """Its proxy keeps its log elsewhere (Varnish's shared memory): a dump, after its cells,
        writes it out, which takes a while (0.1 s for varnishncsa)."""
        kind = REGISTRY.get(self.proxy)
        return kind is not None and bool(kind.log_dump_argv)

    @property
    def direct(self) -> bool:
        return self.proxy == "none"

    def render_config(self, values: dict[str, str]) -> str:
        """The config text with its ``${WSLAB_*}`` placeholders filled in."""
        assert self.config is not None
        return self._fill(self.config.read_text(), values, self.config)

    def render_arguments(self, values: dict[str, str]) -> list[str]:
        """The topology's own command-line arguments with their placeholders filled in."""
        return [self._fill(argument, values, self.folder / "topology.yaml") for argument in self.arguments]

    @staticmethod
    def _fill(text: str, values: dict[str, str], where: Path) -> str:
        missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
        if missing:
            raise TopologyError(where, None, f"no value for {', '.join(missing)}")
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)

    def predicted_cut(self, held: float, ping_every: float | None) -> float | None:
        """When (faithful seconds) this topology's limits should end a WebSocket held ``held``
        seconds with pings every ``ping_every`` seconds (None: silence), or None if none does
        (see :func:`cutting_limit`)."""
        cut = cutting_limit(self.parameters, held, ping_every)
        return cut[1] if cut else None

    def unmeasurable(self, scale: float, seconds: float) -> list[Parameter]:
        """The limits a run at ``scale`` cannot give this proxy truthfully, among those that
        could end a connection held ``seconds`` (faithful)."""
        return [
            p
            for p in self.parameters
            if p.limit in ("idle", "lifetime") and p.seconds < seconds and not p.holds_at(scale)
        ]


@cache
def _schema() -> dict[str, Any]:
    return json.loads(resources.files("wslab.schemas").joinpath("topology.schema.json").read_text())


def load_topology(folder: Path) -> Topology:
    meta_path = folder / "topology.yaml"
    try:
        document = load_yaml(meta_path, max_bytes=256 << 10)
    except YamlInputError as error:
        raise TopologyError(error.path, error.line, error.message) from None
    check_against(document, _schema(), TopologyError)
    meta = document.data
    if meta["name"] != folder.name:
        raise TopologyError(
            meta_path, document.line_of(("name",)), f"name {meta['name']!r} differs from its folder"
        )
    if meta["proxy"] != "none" and meta["proxy"] not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise TopologyError(
            meta_path, document.line_of(("proxy",)), f"unknown proxy {meta['proxy']!r} (known: {known}, none)"
        )
    config = folder / meta["config"] if meta.get("config") else None
    if meta["proxy"] != "none" and (config is None or not config.is_file()):
        raise TopologyError(
            meta_path, document.line_of(("config",)), f"config file {meta.get('config')!r} not found"
        )
    parameters = tuple(
        Parameter(
            name,
            float(spec["seconds"]),
            spec["source"].strip(),
            spec["limit"],
            spec.get("granularity", 0.001),
        )
        for name, spec in (meta.get("parameters") or {}).items()
    )
    for parameter in parameters:
        if parameter.limit in INSTANCE_LIMITS and SOURCE_TAG.search(parameter.source) is None:
            raise TopologyError(
                meta_path,
                document.line_of(("parameters", parameter.name, "source")),
                f"parameter {parameter.name} ({parameter.limit}) names no evidence: tag its source "
                "([DOC], [3P], [INFERRED]...) or say 'assumption'",
            )
    facts = tuple(
        Fact(name, spec["value"], spec["status"], " ".join(spec["source"].split()), spec.get("holds"))
        for name, spec in (meta.get("facts") or {}).items()
    )
    for fact in facts:
        said = source_status(fact.source)
        if fact.status != "measured" and fact.status != said:
            raise TopologyError(
                meta_path,
                document.line_of(("facts", fact.name, "status")),
                f"fact {fact.name} is {fact.status}, but its source's first tag makes it {said} ([DOC]: "
                "documented; [DOC, older revision], [INFERRED], [3P]...: inferred; 'assumption': assumed)",
            )
    reload = None
    if (spec := meta.get("reload")) is not None:
        reload = DocumentedReload(spec["open_websockets"], " ".join(spec["source"].split()))
        if SOURCE_TAG.search(reload.source) is None:
            raise TopologyError(
                meta_path,
                document.line_of(("reload", "source")),
                "reload names no evidence: tag its source ([DOC], [3P], [INFERRED]...) or say 'assumption'",
            )
    return Topology(
        name=meta["name"],
        title=meta["title"],
        proxy=meta["proxy"],
        port=int(meta["port"]),
        role=meta["role"],
        summary=meta["summary"].strip(),
        folder=folder,
        config=config,
        websocket_fix=meta.get("websocket_fix", "").strip(),
        sources=list(meta.get("sources", [])),
        platform=meta.get("platform", ""),
        parameters=parameters,
        behaviours=tuple(b.strip() for b in meta.get("behaviours", [])),
        arguments=tuple(meta.get("arguments", [])),
        basis=" ".join(meta.get("basis", "").split()),
        facts=facts,
        reload=reload,
    )


def load_topologies(root: Path = COMPOSE_DIR) -> dict[str, Topology]:
    """Every topology folder under ``root``, by name, in a stable order (direct first)."""
    topologies = [load_topology(meta.parent) for meta in sorted(root.glob("*/topology.yaml"))]
    topologies.sort(key=lambda topology: (not topology.direct, topology.name))
    ports: dict[int, str] = {}
    for topology in topologies:
        if topology.port in ports:
            raise TopologyError(
                topology.folder / "topology.yaml",
                None,
                f"port {topology.port} is already used by {ports[topology.port]}",
            )
        ports[topology.port] = topology.name
    return {topology.name: topology for topology in topologies}


ROLES = ("direct", "bare", "websocket", "platform")


def select_topologies(names: Iterable[str] | None, root: Path = COMPOSE_DIR) -> list[Topology]:
    """The topologies ``names`` asks for, in the order asked (a group's in the lab's order), each
    once (default: all).

    A name is a topology, ``all``, a role (``direct``, ``bare``, ``websocket``, ``platform``),
    or the first word of topology names (``replit``: every replit-* topology; ``nginx``)."""
    topologies = load_topologies(root)
    names = list(names or [])
    if not names:
        return list(topologies.values())
    chosen: dict[str, None] = {}
    for name in names:
        group = _group(name, topologies)
        if not group:
            known = ", ".join(dict.fromkeys([*topologies, "all", *ROLES]))
            raise UsageError(f"unknown topology {name} (known: {known}, or a first word such as replit)")
        chosen.update(dict.fromkeys(group))
    return [topologies[name] for name in chosen]


def _group(name: str, topologies: dict[str, Topology]) -> list[str]:
    if name in topologies:
        return [name]
    if name == "all":
        return list(topologies)
    if name in ROLES:
        return [t.name for t in topologies.values() if t.role == name]
    return [t.name for t in topologies.values() if t.name.split("-", 1)[0] == name]
