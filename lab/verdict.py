"""A run's answer in a few lines: which topologies carry WebSockets, how the others fail, what
plain HTTP makes the server log where, and every cause folded with its cells and its fix once.

Renderers (terminal, HTML, Markdown) show this; none of them decides anything of it. It is read
from the cells' outcomes and diagnoses alone, so it says nothing the run did not observe.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .records import Cell, Outcome, Run

GROUPS = {
    "direct": "no proxy",
    "bare": "self-hosted proxies, as they ship",
    "websocket": "self-hosted proxies with their WebSocket recipe",
    "platform": "platforms, emulated",
}
"""Topology roles in the order a reader meets them, and how each group is named."""

CLIENT_SUITE = "handshake"
"""The suite of real WebSocket clients: a topology carries WebSockets when all of them pass."""

HOW = {
    "proxy-removed-upgrade": "strip the upgrade",
    "proxy-rejected-upgrade": "refuse the upgrade themselves",
    "proxy-downgraded-http10": "downgrade it to HTTP/1.0",
    "upstream-speaks-http2": "speak HTTP/2 (h2c) to the server",
    "nothing-reached-server": "answer themselves, nothing reaches the server",
    "timeout": "never answer",
    "server-rejected": "pass it, and the server refuses it",
}
"""How a topology that does not carry WebSockets fails, by the rule its client cells got: a verb
phrase whose subject is the topologies ('3 strip the upgrade')."""


@dataclass(frozen=True)
class TopologyVerdict:
    name: str
    role: str
    carries: bool | None
    """Every real WebSocket client passed (None: the topology did not run, or ran none)."""
    how: str = ""
    """For one that does not carry them: what it does to the upgrade."""
    plain_http_errors: tuple[str, ...] = ()
    """What the server logged for plain requests (a browser tab, a preview pane, a health check)."""


@dataclass
class CauseGroup:
    """One cause and its fix, with every cell that showed it."""

    rule: str
    cause: str
    """One cell's cause, as an example (the others say the same of their own evidence)."""
    fix: str
    server_errors: list[str] = field(default_factory=list)
    cells: dict[str, list[str]] = field(default_factory=dict)
    """Topology -> the scenarios that showed it there, in run order."""

    @property
    def count(self) -> int:
        return sum(len(scenarios) for scenarios in self.cells.values())


@dataclass
class EventVerdict:
    """What one lifecycle scenario's event did to the open WebSockets, topology by topology."""

    title: str
    kept: list[str]
    closed: list[tuple[str, int | None]]
    """Each topology where the connection closed, with the close code its client saw."""

    def sentence(self) -> str:
        """'Proxy config reload ...: kept (2): a, b; closed with 1001 (1): c.'"""
        parts = [f"kept ({len(self.kept)}): {', '.join(self.kept)}"] if self.kept else []
        codes: dict[int | None, list[str]] = defaultdict(list)
        for name, code in self.closed:
            codes[code].append(name)
        for code, names in codes.items():
            how = f"with {code}" if code is not None else "without a code"
            parts.append(f"closed {how} ({len(names)}): {', '.join(names)}")
        return f"{self.title[:1].upper()}{self.title[1:]}: {'; '.join(parts)}."


@dataclass
class Verdict:
    topologies: list[TopologyVerdict]
    causes: list[CauseGroup]
    lab_errors: list[CauseGroup]
    events: list[EventVerdict] = field(default_factory=list)
    """The lifecycle suite's events, in run order (none if it did not run)."""

    def carrying(self) -> list[str]:
        return [t.name for t in self.topologies if t.carries]

    def failing(self) -> dict[str, list[str]]:
        """How -> the topologies that fail that way."""
        ways: dict[str, list[str]] = defaultdict(list)
        for topology in self.topologies:
            if topology.carries is False:
                ways[topology.how].append(topology.name)
        return dict(ways)

    def plain_http(self) -> dict[str, list[str]]:
        """Server error -> the topologies through which plain HTTP made the server log it."""
        errors: dict[str, list[str]] = defaultdict(list)
        for topology in self.topologies:
            for error in topology.plain_http_errors:
                errors[error].append(topology.name)
        return dict(sorted(errors.items(), key=lambda item: -len(item[1])))

    def sentences(self) -> list[str]:
        """The answer in a few sentences, most important first."""
        ran = [t for t in self.topologies if t.carries is not None]
        carrying = ", ".join(self.carrying()) or "none"
        # A run of other suites only (timeouts, faults) played no WebSocket client cell: no claim.
        lines = [f"Carry WebSockets ({len(self.carrying())} of {len(ran)}): {carrying}."] if ran else []
        for how, names in self.failing().items():
            lines.append(f"{how[:1].upper()}{how[1:]}: {', '.join(names)}.")
        plain = self.plain_http()
        if plain:
            lines.append("Plain HTTP (browser tabs, preview panes, health checks) makes the server log")
            lines += [f"  '{error}' through {', '.join(names)}" for error, names in plain.items()]
        lines += [event.sentence() for event in self.events]
        return lines


def _event_verdicts(run: Run) -> list[EventVerdict]:
    """Per lifecycle scenario that ran, where its event kept and where it closed the connection
    (cells whose WebSocket never opened, or that were not played, say nothing here)."""
    titles = {scenario.id: scenario.title for scenario in run.scenarios}
    events: dict[str, EventVerdict] = {}
    for cell in run.cells:
        life = cell.client.lifecycle if cell.client is not None else None
        if life is None or cell.outcome == Outcome.ERROR:
            continue
        event = events.setdefault(
            cell.scenario, EventVerdict(titles.get(cell.scenario, cell.scenario), [], [])
        )
        if life.survived:
            event.kept.append(cell.topology)
        elif life.closed_after is not None:
            event.closed.append((cell.topology, life.code))
    return list(events.values())


def _client_cells(cells: list[Cell]) -> list[Cell]:
    return [cell for cell in cells if cell.suite == CLIENT_SUITE and cell.outcome != Outcome.BLOCKED]


def _topology_verdict(name: str, role: str, cells: list[Cell]) -> TopologyVerdict:
    clients = [
        c for c in _client_cells(cells) if c.outcome in (Outcome.PASS, Outcome.FAIL, Outcome.INFORMATIONAL)
    ]
    plain = sorted(
        {
            connection.error.text
            for cell in cells
            if cell.client and cell.client.sent and not cell.client.sent.asks_upgrade
            for connection in cell.server
            if connection.error
            and ("Connection" in connection.error.text or "Upgrade" in connection.error.text)
        }
    )
    if not clients:
        return TopologyVerdict(name, role, None, plain_http_errors=tuple(plain))
    failed = [c for c in clients if c.outcome == Outcome.FAIL]
    if not failed:
        return TopologyVerdict(name, role, True, plain_http_errors=tuple(plain))
    rules = Counter(c.diagnosis.rule for c in failed if c.diagnosis)
    rule = rules.most_common(1)[0][0] if rules else ""
    return TopologyVerdict(name, role, False, HOW.get(rule, rule or "fail"), tuple(plain))


def _by_weight(groups: list[CauseGroup]) -> list[CauseGroup]:
    """Causes with the most cells first; the groups of one rule together."""
    per_rule = Counter[str]()
    for group in groups:
        per_rule[group.rule] += group.count
    return sorted(groups, key=lambda group: (-per_rule[group.rule], group.rule, -group.count))


def judge_run(run: Run) -> Verdict:
    """The verdict of a run (pure: the same run gives the same verdict)."""
    by_topology: dict[str, list[Cell]] = defaultdict(list)
    for cell in run.cells:
        by_topology[cell.topology].append(cell)
    order = {role: index for index, role in enumerate(GROUPS)}
    topologies = sorted(
        (_topology_verdict(t.name, t.role, by_topology[t.name]) for t in run.topologies),
        key=lambda verdict: order.get(verdict.role, len(order)),
    )
    causes: dict[tuple[str, str], CauseGroup] = {}
    lab_errors: dict[str, CauseGroup] = {}
    for cell in run.cells:
        if cell.outcome == Outcome.FAIL and cell.diagnosis:
            key = (cell.diagnosis.rule, cell.diagnosis.fix)
            group = causes.setdefault(
                key, CauseGroup(cell.diagnosis.rule, cell.diagnosis.cause, cell.diagnosis.fix)
            )
            if cell.server_error and cell.server_error.text not in group.server_errors:
                group.server_errors.append(cell.server_error.text)
        elif cell.outcome == Outcome.ERROR:
            group = lab_errors.setdefault(cell.error or "", CauseGroup("lab-error", cell.error or "", ""))
        else:
            continue
        group.cells.setdefault(cell.topology, []).append(cell.scenario)
    return Verdict(
        topologies=topologies,
        causes=_by_weight(list(causes.values())),
        lab_errors=list(lab_errors.values()),
        events=_event_verdicts(run),
    )
