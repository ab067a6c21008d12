"""Backends stand topologies up and tell the runner where to connect.

Every backend yields, per topology, a :class:`Deployment`: an endpoint and the
name of the probe listener behind it when ready, or why it is not. Each also
provides an :class:`~lab.observations.ObservationFeed`. The runner knows
nothing else about how a topology runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import Endpoint
from ..topology import Topology

READY, UNAVAILABLE, FAILED = "ready", "unavailable", "failed"


ACCELERATED = 0.02
"""Time scale of accelerated runs: platform limits and pings 50 times shorter."""


@dataclass
class StackOptions:
    """How the probe server and the topologies behind it are set up."""

    websockets_version: str | None = None
    answer_plain_http: bool = False
    ping_interval: float = 20.0
    """The probe server's keepalive pings in faithful seconds (websockets' default); 0 for none."""
    time_scale: float = 1.0
    """1.0 runs every time limit as documented; ACCELERATED shortens them all in proportion."""


@dataclass
class Deployment:
    """One topology as a backend stood it up (or could not)."""

    topology: Topology
    status: str
    endpoint: Endpoint | None = None
    detail: str = ""
    log_path: Path | None = None
    log_tail: str = ""
    config_path: Path | None = None
    version: str = ""
    handle: Any = None

    @property
    def listener(self) -> str:
        return self.topology.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.topology.name,
            "title": self.topology.title,
            "proxy": self.topology.proxy,
            "proxy_version": self.version,
            "summary": self.topology.summary,
            "platform": self.topology.platform,
            "parameters": [
                {"name": p.name, "seconds": p.seconds, "source": p.source} for p in self.topology.parameters
            ],
            "behaviours": list(self.topology.behaviours),
            "sources": list(self.topology.sources),
            "status": self.status,
            "endpoint": self.endpoint.ws_url() if self.endpoint else None,
            "detail": self.detail,
            "log": str(self.log_path) if self.log_path else None,
            "log_tail": self.log_tail,
            "config": str(self.config_path) if self.config_path else None,
        }
