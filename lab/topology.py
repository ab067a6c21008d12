"""Topologies: one folder each under compose/, holding topology.yaml and its config.

The config file is a template shared by every backend: only ``${WSLAB_*}``
placeholders are filled in (listen and upstream addresses, a scratch dir), so
the local processes and the compose containers run the very same file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import TopologyError
from .paths import COMPOSE_DIR
from .proxies import REGISTRY

PLACEHOLDER = re.compile(r"\$\{(WSLAB_[A-Z0-9_]+)\}")
REQUIRED_FIELDS = ("name", "title", "proxy", "port", "summary")


@dataclass(frozen=True)
class Parameter:
    """A time limit the topology's config is built with, and where its value comes from.

    Templates use it as ``${WSLAB_P_<NAME>_MS}`` (integer milliseconds) or
    ``${WSLAB_P_<NAME>_S}`` (seconds); accelerated runs scale it down.
    """

    name: str
    seconds: float
    source: str

    def placeholders(self, scale: float) -> dict[str, str]:
        seconds = self.seconds * scale
        prefix = f"WSLAB_P_{self.name.upper()}"
        return {f"{prefix}_MS": str(max(1, round(seconds * 1000))), f"{prefix}_S": f"{seconds:.3f}"}


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
    config: Path | None = None
    websocket_fix: str = ""
    sources: list[str] = field(default_factory=list)
    platform: str = ""
    """The deployment option this topology emulates, if any (e.g. 'Google Cloud Run')."""
    parameters: tuple[Parameter, ...] = ()
    behaviours: tuple[str, ...] = ()
    """Emulated platform behaviours, each naming its source or saying it is an assumption."""

    def placeholders(self, scale: float) -> dict[str, str]:
        """Values of every ``${WSLAB_P_*}`` placeholder at a time scale (1.0: faithful)."""
        values: dict[str, str] = {}
        for parameter in self.parameters:
            values.update(parameter.placeholders(scale))
        return values

    @property
    def direct(self) -> bool:
        return self.proxy == "none"

    def render_config(self, values: dict[str, str]) -> str:
        """The config text with its ``${WSLAB_*}`` placeholders filled in."""
        assert self.config is not None
        text = self.config.read_text()
        missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
        if missing:
            raise TopologyError(self.config, None, f"no value for {', '.join(missing)}")
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def load_topology(folder: Path) -> Topology:
    meta_path = folder / "topology.yaml"
    try:
        meta = yaml.safe_load(meta_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(meta_path, None, str(exc)) from None
    if not isinstance(meta, dict):
        raise TopologyError(meta_path, None, "expected a mapping")
    missing = [name for name in REQUIRED_FIELDS if name not in meta]
    if missing:
        raise TopologyError(meta_path, None, f"missing {', '.join(missing)}")
    if meta["name"] != folder.name:
        raise TopologyError(meta_path, None, f"name {meta['name']!r} differs from its folder")
    if meta["proxy"] != "none" and meta["proxy"] not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise TopologyError(meta_path, None, f"unknown proxy {meta['proxy']!r} (known: {known}, none)")
    config = folder / meta["config"] if meta.get("config") else None
    parameters = []
    for name, spec in (meta.get("parameters") or {}).items():
        if not isinstance(spec, dict) or "seconds" not in spec or not spec.get("source"):
            raise TopologyError(meta_path, None, f"parameter {name!r} needs 'seconds' and a 'source'")
        parameters.append(Parameter(name, float(spec["seconds"]), str(spec["source"]).strip()))
    for key in ("sources", "behaviours"):
        entries = meta.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            raise TopologyError(
                meta_path, None, f"'{key}' must be a list of strings (quote entries holding ': ')"
            )
    if meta["proxy"] != "none" and (config is None or not config.is_file()):
        raise TopologyError(meta_path, None, f"config file {meta.get('config')!r} not found")
    return Topology(
        name=meta["name"],
        title=meta["title"],
        proxy=meta["proxy"],
        port=int(meta["port"]),
        summary=meta["summary"].strip(),
        folder=folder,
        config=config,
        websocket_fix=str(meta.get("websocket_fix", "")).strip(),
        sources=list(meta.get("sources", [])),
        platform=str(meta.get("platform", "")),
        parameters=tuple(parameters),
        behaviours=tuple(str(b).strip() for b in meta.get("behaviours", [])),
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
