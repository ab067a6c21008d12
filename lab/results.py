"""Results as data: one record per (topology x scenario) cell, and the run around them.

The JSON written by ``wslab run --json`` is :meth:`RunResult.to_dict`; its
format is documented in docs/results-format.md and described by
lab/schemas/results.schema.json. Renderers read these records and never
decide a verdict themselves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "wslab.results/1"
PASS, FAIL, ERROR, UNAVAILABLE = "pass", "fail", "error", "unavailable"
BLOCKED, INFORMATIONAL = "blocked", "informational"
OUTCOMES = (PASS, FAIL, ERROR, BLOCKED, INFORMATIONAL, UNAVAILABLE)
"""blocked: a scenario it depends on failed on this topology; informational: an
informational-tier scenario did not match (never a failure)."""


@dataclass
class CellResult:
    """Everything known about one cell: evidence, checks, verdict and diagnosis."""

    topology: str
    scenario: str
    suite: str
    outcome: str
    summary: str
    duration: float = 0.0
    client: dict[str, Any] | None = None
    server: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    diagnosis: dict[str, str] | None = None
    error: str | None = None
    log_tail: str = ""


@dataclass
class RunResult:
    """A whole run: components, topologies, scenarios and cells."""

    started_at: str
    duration: float
    backend: str
    options: dict[str, Any]
    components: dict[str, Any]
    topologies: list[dict[str, Any]]
    scenarios: list[dict[str, Any]]
    cells: list[CellResult]

    def cell(self, topology: str, scenario: str) -> CellResult:
        for cell in self.cells:
            if cell.topology == topology and cell.scenario == scenario:
                return cell
        raise KeyError((topology, scenario))

    def tool_versions(self) -> str:
        """The proxies' versions, and the browser's if one ran: 'envoy 1.40.0, haproxy 2.6.12'."""
        tools = [f"{kind} {version}" for kind, version in self.components.get("proxies", {}).items()]
        if self.components.get("browser"):
            tools.append(f"browser {self.components['browser']}")
        return ", ".join(tools)

    def counts(self) -> dict[str, int]:
        return {outcome: sum(c.outcome == outcome for c in self.cells) for outcome in OUTCOMES}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def write_json(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format: {data.get('format')!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["cells"] = [CellResult(**cell) for cell in data["cells"]]
        return cls(**fields)


def merge(results: list[RunResult]) -> RunResult:
    """Several runs as one matrix: a real deployment (--target) beside the emulations, say.

    A topology that appears in more than one run is renamed after its run (name@N).
    """
    if len(results) == 1:
        return results[0]
    topologies, cells, scenarios, seen = [], [], {}, set()
    proxies: dict[str, str] = {}
    for number, result in enumerate(results, 1):
        renames = {}
        for topology in result.topologies:
            name = topology["name"] if topology["name"] not in seen else f"{topology['name']}@{number}"
            seen.add(name)
            renames[topology["name"]] = name
            topologies.append({**topology, "name": name})
        cells += [CellResult(**{**asdict(c), "topology": renames[c.topology]}) for c in result.cells]
        scenarios.update({s["id"]: s for s in result.scenarios})
        proxies.update(result.components["proxies"])
    present = {(cell.topology, cell.scenario) for cell in cells}
    for topology in topologies:
        for scenario in scenarios.values():
            if (topology["name"], scenario["id"]) not in present:
                cells.append(
                    CellResult(
                        topology["name"],
                        scenario["id"],
                        scenario["suite"],
                        UNAVAILABLE,
                        "not run",
                        error="this scenario was not part of that run",
                    )
                )
    servers = sorted({r.components["websockets_server"] for r in results})
    first = results[0]
    return RunResult(
        started_at=first.started_at,
        duration=round(sum(r.duration for r in results), 3),
        backend="+".join(dict.fromkeys(r.backend for r in results)),
        options=first.options,
        components={**first.components, "websockets_server": ", ".join(servers), "proxies": proxies},
        topologies=topologies,
        scenarios=list(scenarios.values()),
        cells=cells,
    )
