"""``wslab compare``: the Replit deployment options side by side, and which to choose.

Runs the default suites and the timeouts suite through Replit's options, plain
Cloud Run and a self-hosted nginx, once with the server as it is and once with
the process_request fix, and sums each option up from the cells: what passes,
how long a connection lives, why the rest fails, what to change. The
recommendation is computed from those figures, not written in advance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .records import STYLES, Cell, Outcome, Run
from .reports.safe_text import markdown_text

COMPARED = (
    "replit-dev",
    "replit-autoscale",
    "replit-reserved-vm",
    "replit-static",
    "cloudrun",
    "nginx-websocket",
)
REPLIT_OPTIONS = ("replit-autoscale", "replit-reserved-vm", "replit-static")
CLIENT_SUITE = "handshake"
TRAFFIC_SUITE = "platform-traffic"
TIMEOUTS_SUITE = "timeouts"


@dataclass
class Option:
    """One deployment option, summed up from its cells."""

    name: str
    title: str
    platform: str
    clients_passed: int
    clients_total: int
    traffic: dict[str, str]
    traffic_fixed: dict[str, str]
    lives: dict[str, str]
    lifetime: float | None
    """Faithful seconds a busy connection lived before a cap, or None if it outlived the test."""
    causes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def carries_websockets(self) -> bool:
        return self.clients_passed == self.clients_total


@dataclass
class Comparison:
    options: list[Option]
    recommended: Option
    reasons: list[str]
    """Markdown lines; the names and platforms in them are escaped (a platform may be a --target URL)."""
    websockets: str
    time_scale: float


def _cells(result: Run, topology: str, suite: str) -> list[Cell]:
    return [c for c in result.cells if c.topology == topology and c.suite == suite]


def _traffic(cell: Cell) -> str:
    error = cell.server_error
    passed = cell.outcome == Outcome.PASS
    mark = STYLES[Outcome.PASS if passed else Outcome.FAIL].symbol
    return f"{mark} {cell.summary}" + (f" ({error.text})" if error and not passed else "")


def _lives(cell: Cell) -> str:
    hold = cell.client.hold if cell.client else None
    if hold is None:
        return f"✗ {cell.summary}"
    if hold.closed:
        return f"✗ cut at {hold.lived_faithful:.0f} s"
    return f"✓ ≥ {hold.seconds_faithful:.0f} s"


def summarise(result: Run, fixed: Run, topology: str) -> Option:
    """Sum one option up from the plain run and the run with the process_request fix."""
    meta = next(t for t in result.topologies if t.name == topology)
    clients = _cells(result, topology, CLIENT_SUITE)
    timeouts = {c.scenario: c for c in _cells(result, topology, TIMEOUTS_SUITE)}
    busy_cell = timeouts.get("lifetime-with-pings")
    busy = busy_cell.client.hold if busy_cell is not None and busy_cell.client else None
    failed = [c for c in result.cells if c.topology == topology and c.outcome == Outcome.FAIL and c.diagnosis]
    causes = Counter(c.diagnosis.rule for c in failed if c.diagnosis)
    fixes: list[str] = []
    for cell in failed:
        if cell.diagnosis and cell.diagnosis.fix not in fixes:
            fixes.append(cell.diagnosis.fix)
    return Option(
        name=topology,
        title=meta.title,
        platform=meta.platform or meta.title,
        clients_passed=sum(c.outcome == Outcome.PASS for c in clients),
        clients_total=len(clients),
        traffic={c.scenario: _traffic(c) for c in _cells(result, topology, TRAFFIC_SUITE)},
        traffic_fixed={c.scenario: _traffic(c) for c in _cells(fixed, topology, TRAFFIC_SUITE)},
        lives={name: _lives(cell) for name, cell in timeouts.items()},
        lifetime=busy.lived_faithful if busy is not None and busy.closed else None,
        causes=[f"{rule} ({count} cell{'' if count == 1 else 's'})" for rule, count in causes.most_common()],
        fixes=fixes,
    )


def _rank(option: Option) -> tuple:
    return (option.carries_websockets, option.lifetime is None, option.lifetime or 0)


def compare(result: Run, fixed: Run, extra: tuple[str, ...] = ()) -> Comparison:
    """Every compared option (plus ``extra`` topologies, such as a real --target), and the
    Replit option to choose with the reasons."""
    present = {t.name for t in result.topologies if t.status == "ready"}
    options = [summarise(result, fixed, name) for name in COMPARED + extra if name in present]
    replit = [o for o in options if o.name in REPLIT_OPTIONS] or options
    best = max(replit, key=_rank)
    reasons = [
        f"{markdown_text(best.platform)}: real WebSocket clients pass "
        f"({best.clients_passed}/{best.clients_total})"
        + (
            " and a busy connection outlived the test"
            if best.lifetime is None
            else f"; connections are cut at {best.lifetime:.0f} s, so clients must reconnect"
        )
        + "."
    ]
    for option in replit:
        if option is best:
            continue
        if not option.carries_websockets:
            platform, cause = markdown_text(option.platform), markdown_text(option.causes[0])
            reasons.append(f"{platform} does not carry WebSockets ({cause}).")
        elif option.lifetime is not None:
            platform = markdown_text(option.platform)
            reasons.append(f"{platform} cuts every connection at {option.lifetime:.0f} s.")
    plain_fails = any("✗" in text for o in options for text in o.traffic.values())
    plain_fixed = all(
        "✓" in text for o in options if o.carries_websockets for text in o.traffic_fixed.values()
    )
    if plain_fails and plain_fixed:
        reasons.append(
            "Whatever the option, answer non-upgrade requests in process_request: browser tabs, the "
            "preview pane and health checks then get 200 instead of 426, and the "
            "`missing Connection header` errors disappear from the log."
        )
    return Comparison(
        options=options,
        recommended=best,
        reasons=reasons,
        websockets=result.components.websockets_server,
        time_scale=result.options.time_scale,
    )
