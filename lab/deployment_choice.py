"""``wslab compare``: the Replit deployment options side by side, and which to choose.

Runs the default suites and the timeouts suite through Replit's options, plain
Cloud Run and a self-hosted nginx, once with the server as it is and once with
the process_request fix, and sums each option up as one column of figures:

- measured ones, read from the cells: whether real WebSocket clients pass, what
  plain HTTP (a browser tab, the preview pane, a health check, HEAD, a TCP
  probe) gets and what the server logs, with and without the fix, and when an
  idle or a busy connection is cut, beside the limit the topology is configured
  with (:func:`wslab.topology.cutting_limit`);
- facts that no run can measure (scale to zero, cold starts, several instances,
  cost), from each topology.yaml's ``facts:``, each documented, inferred or
  assumed.

Every figure says how it is known. A cell keeps the outcome ``wslab run`` gave
it (and its symbol, :data:`wslab.records.STYLES`): nothing here judges a cell
again. The recommendation (:func:`recommend`) is computed from the figures, for
two kinds of app, each reason naming the row it comes from; it changes when the
measurements or the facts do.

Everything is plain text: renderers escape it for their medium.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .records import Cell, Fact, Outcome, Run, TopologyRecord
from .topology import SCALE_TOLERANCE, cutting_limit, source_status
from .verdict import CLIENT_SUITE, judge_run

COMPARED = (
    "replit-dev",
    "replit-autoscale",
    "replit-reserved-vm",
    "replit-static",
    "cloudrun",
    "nginx-websocket",
)
REPLIT_DEPLOYMENTS = ("replit-autoscale", "replit-reserved-vm", "replit-static")
"""The options the recommendation chooses from: Replit's deployments (a dev URL lives only
while you work in the app; Cloud Run and nginx are there to compare with)."""
LABELS = {
    "replit-dev": "Replit dev URL",
    "replit-autoscale": "Replit Autoscale",
    "replit-reserved-vm": "Replit Reserved VM",
    "replit-static": "Replit Static",
    "cloudrun": "Cloud Run",
    "nginx-websocket": "self-hosted nginx",
}
"""Column headings; any other option (a --target) is headed by its name."""
TRAFFIC_SUITE = "platform-traffic"
TIMEOUTS_SUITE = "timeouts"
LIFECYCLE_SUITE = "lifecycle"
FAULTS_SUITE = "faults"
LIFECYCLE_ROWS = {
    "proxy-reload": "survives proxy reload",
    "redeploy-no-sigterm": "redeploy behaviour",
    "scale-to-zero": "scale to zero",
    "stall-proxy-server": "under a network stall",
}
"""The lifecycle and fault scenarios (scenarios/lifecycle.yaml, faults.yaml) compare plays, and
their rows, read from measured cells. Not server-restart: its reconnection time follows
websockets' randomised backoff, so the page would change from run to run (`wslab run --suite
lifecycle` shows it). The redeploy row is the app without a SIGTERM handler: when the platform's
SIGKILL cuts it (its grace period) is what tells platforms apart; with a handler every one gives
1001 at once."""

ROW_CLIENTS = "real WebSocket clients"
TRAFFIC_ROWS = {
    "browser-tab-get": "browser tab GET /",
    "preview-pane-get": "preview pane GET /",
    "deploy-health-check": "health check GET /",
    "head-root": "HEAD /",
    "tcp-probe": "TCP probe",
}
"""Plain traffic a platform or a person sends to the WebSocket port, and its row."""
LIMIT_ROWS = {"idle-without-pings": "idle cut", "lifetime-with-pings": "lifetime cap"}
"""The timeouts scenario each limit row reads: an idle connection, one kept busy by pings."""
LIMIT_KINDS = {"idle-without-pings": "idle", "lifetime-with-pings": "lifetime"}
"""The kind of limit (topology.yaml ``parameters``) each limit row is about."""
FACT_ROWS = {
    "scale_to_zero": "scales to zero",
    "cold_start": "cold starts",
    "several_instances": "several instances",
    "cost": "cost, in kind",
}
"""topology.yaml ``facts:`` keys and their rows (see lab/schemas/topology.schema.json)."""

STATUSES = {
    "documented": "a vendor's documentation says so",
    "inferred": (
        "not in a vendor's current documentation: reasoned from documented or observed facts, or said "
        "only by a third party or by an older revision of the vendor's page"
    ),
    "assumed": "nothing found: the profile assumes it",
    "measured": "observed in this run, on the emulation (real proxies in front of a real websockets server)",
}
"""How a figure is known, and what each status means (the page's legend)."""


@dataclass(frozen=True)
class Seen:
    """What one cell showed, as ``wslab run`` judged it."""

    outcome: Outcome
    summary: str
    server_error: str | None = None
    """What the server logged for it, if anything."""


def _seen(cell: Cell | None) -> Seen | None:
    if cell is None:
        return None
    error = cell.server_error
    return Seen(cell.outcome, cell.summary, error.text if error else None)


@dataclass(frozen=True)
class Traffic:
    """One kind of plain traffic through one option, as it is and with the process_request fix."""

    plain: Seen | None
    fixed: Seen | None


@dataclass(frozen=True)
class Event:
    """What one lifecycle event did to an open WebSocket through one option."""

    cell: Seen
    assumed: bool
    """On a platform's emulation: measured on its proxy, but that the platform's own redeploy
    behaves so is an assumption (lifecycle.assumption)."""

    def text(self) -> str:
        """'kept [measured]', or on an emulation 'kept, on the emulation [assumed]'."""
        if self.cell.outcome in (Outcome.NOT_MEASURED, Outcome.UNAVAILABLE):
            return "not measured here"
        if self.cell.outcome == Outcome.NOT_APPLICABLE:
            return "n/a"
        if self.cell.outcome == Outcome.BLOCKED:
            return f"{self.cell.summary}: no WebSocket"
        if self.assumed:
            return f"{self.cell.summary}, on the emulation [assumed]"
        return f"{self.cell.summary} [measured]"


@dataclass(frozen=True)
class Limit:
    """An idle or a busy connection's life through one option, beside the configured limit."""

    cell: Seen | None
    """None: the run did not play this scenario there (a real --target plays no timeouts)."""
    held: float | None = None
    """Faithful seconds the scenario holds the connection."""
    configured: float | None = None
    """The configured limit that should end it (close delays added), or, when none should
    within the hold, the smallest limit of the row's kind; None: the topology sets none."""
    parameter: str = ""
    source: str = ""
    """The configured limit's source (topology.yaml), which gives its status."""
    status: str = "assumed"
    """How the configured value is known; 'assumed' when the topology sets no such limit."""
    expected: float | None = None
    """When the configuration says the connection should end, within the hold."""
    measured: float | None = None
    """When it ended, faithful seconds; None if it outlived the hold or never opened."""
    lived: float | None = None
    """How long it lived when it was not cut."""

    @property
    def opened(self) -> bool:
        return self.measured is not None or self.lived is not None

    @property
    def agrees(self) -> bool | None:
        """The measurement agrees with the configuration within SCALE_TOLERANCE (None: no
        measurement: no WebSocket there, or not measured in this mode)."""
        if not self.opened:
            return None
        if self.expected is None or self.measured is None:
            return self.expected is None and self.measured is None
        return abs(self.measured - self.expected) <= SCALE_TOLERANCE * self.expected

    @property
    def no_websocket(self) -> bool:
        """The scenario ran here, and no WebSocket opened (a static host, a refused upgrade)."""
        unmeasured = (Outcome.NOT_MEASURED, Outcome.UNAVAILABLE)
        return self.cell is not None and self.cell.outcome not in unmeasured and not self.opened

    @property
    def cut(self) -> float | None:
        """When a connection ends here: measured, or, where it was not measured, as configured;
        None if it outlived the hold, or if no WebSocket opens here."""
        if self.opened:
            return self.measured
        return None if self.no_websocket else self.expected

    def text(self) -> str:
        """The figure in words: '300 s [inferred] (measured 297 s)', 'none [assumed]; lived
        ≥ 150 s', or the disagreement: '⚠ measured 150 s, but 300 s [inferred] is configured'."""
        configured = "none" if self.configured is None else f"{self.configured:.0f} s"
        configured += f" [{self.status}]"
        if self.cell is None:
            return f"{configured}; not run"
        if self.cell.outcome == Outcome.NOT_MEASURED:
            return f"{configured}; not measured in this mode"
        if self.cell.outcome == Outcome.UNAVAILABLE:
            return f"{configured}; {self.cell.summary}" if self.configured else self.cell.summary
        if self.no_websocket:
            return f"{self.cell.summary}: no WebSocket"
        if self.agrees:
            if self.measured is not None:
                return f"{configured} (measured {self.measured:.0f} s)"
            return f"{configured}; lived ≥ {self.lived:.0f} s"
        if self.measured is None:
            return f"⚠ lived ≥ {self.lived:.0f} s, but {configured} should have cut it"
        if self.expected is None:
            return f"⚠ cut at {self.measured:.0f} s, but {configured} is configured"
        return f"⚠ measured {self.measured:.0f} s, but {configured} is configured"


UNPLAYED_HOLDS = {"idle": (150.0, None), "lifetime": (400.0, 20.0)}
"""(seconds held, server ping interval) of the timeouts suite's scenarios, for a run that did not
play them: the configured limits still say when a connection would end."""


def _limit(topology: TopologyRecord, cell: Cell | None, kind: str) -> Limit:
    if cell is None:
        held, ping = UNPLAYED_HOLDS[kind]
        record = None
    else:
        connect = next((s for s in (cell.client.steps if cell.client else []) if s.step == "connect"), None)
        hold = next((s for s in (cell.client.steps if cell.client else []) if s.step == "hold"), None)
        ping = connect.argument.get("server_ping") if connect and isinstance(connect.argument, dict) else None
        seconds = hold.argument.get("seconds") if hold and isinstance(hold.argument, dict) else None
        record = cell.client.hold if cell.client else None
        held = record.seconds_faithful if record else float(seconds) if seconds else math.inf
    cut = cutting_limit(topology.parameters, held, ping)
    fields: dict = {"cell": _seen(cell) if cell else None, "held": held if math.isfinite(held) else None}
    if cut is not None:
        parameter, expected = cut
        fields |= {
            "configured": expected,
            "parameter": parameter.name,
            "source": parameter.source,
            "status": source_status(parameter.source),
            "expected": expected,
        }
    else:
        same = [p for p in topology.parameters if p.limit == kind]
        if same:
            smallest = min(same, key=lambda p: p.seconds)
            fields |= {
                "configured": smallest.seconds,
                "parameter": smallest.name,
                "source": smallest.source,
                "status": source_status(smallest.source),
            }
    if record is not None:
        if record.closed:
            fields["measured"] = record.lived_faithful
        else:
            fields["lived"] = record.seconds_faithful
    return Limit(**fields)


@dataclass(frozen=True)
class Cause:
    """Why some of an option's cells failed: a diagnosis rule, how many cells, which fix."""

    rule: str
    cells: int
    fix: int
    """Index into :attr:`Comparison.fixes`."""


@dataclass
class Option:
    """One deployment option, summed up as the table's column."""

    name: str
    label: str
    platform: str
    carries: bool | None
    """Every real WebSocket client passed (:func:`wslab.verdict.judge_run`'s verdict)."""
    clients_passed: int
    clients_total: int
    clients_failed: Seen | None
    """The first failing client cell, to show how it failed."""
    traffic: dict[str, Traffic]
    limits: dict[str, Limit]
    facts: dict[str, Fact]
    causes: list[Cause] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict)
    """The lifecycle rows this run measured (``--suite lifecycle`` ran)."""

    @property
    def carries_websockets(self) -> bool:
        return bool(self.carries)

    @property
    def lifetime(self) -> float | None:
        """When a busy connection is cut (measured, or configured where not measured)."""
        limit = self.limits.get("lifetime-with-pings")
        return limit.cut if limit else None

    def disagreements(self) -> list[tuple[str, Limit]]:
        """The limit rows whose measurement disagrees with the configuration."""
        return [(row, limit) for row, limit in self.limits.items() if limit.agrees is False]


def _cells(result: Run, topology: str, suite: str) -> list[Cell]:
    return [c for c in result.cells if c.topology == topology and c.suite == suite]


def _find(result: Run | None, topology: str, scenario: str) -> Cell | None:
    if result is None:
        return None
    return next((c for c in result.cells if c.topology == topology and c.scenario == scenario), None)


def _assumed(role: str, cell: Cell) -> bool:
    """Whether a lifecycle cell on this option holds for the platform only by assumption: a
    reload standing for the platform's redeploy, or an event timed by a figure the profile
    assumes (its source says 'assumption'). A stall meets the emulation's documented idle limit."""
    if role != "platform" or cell.suite != LIFECYCLE_SUITE:
        return False
    life = cell.client.lifecycle if cell.client is not None else None
    if life is None:
        return cell.scenario == "proxy-reload"
    return bool(life.event.assumption) or life.event.source.startswith("assumption")


def summarise(
    result: Run, fixed: Run | None, topology: str, carries: bool | None = None, fixes: list[str] | None = None
) -> Option:
    """Sum one option up from the plain run and the run with the process_request fix (if any).

    ``fixes`` collects the distinct fixes across options; each cause points into it."""
    meta = next(t for t in result.topologies if t.name == topology)
    clients = _cells(result, topology, CLIENT_SUITE)
    passed = sum(c.outcome == Outcome.PASS for c in clients)
    if carries is None and clients:
        carries = not any(c.outcome in (Outcome.FAIL, Outcome.BLOCKED) for c in clients)
    failed_client = next((c for c in clients if c.outcome == Outcome.FAIL), None)
    traffic = {
        scenario: Traffic(_seen(_find(result, topology, scenario)), _seen(_find(fixed, topology, scenario)))
        for scenario in TRAFFIC_ROWS
        if _find(result, topology, scenario) is not None
    }
    limits = {
        scenario: _limit(
            meta, _find(result, topology, scenario), "idle" if "idle" in scenario else "lifetime"
        )
        for scenario in LIMIT_ROWS
    }
    events = {
        scenario: Event(seen, assumed=_assumed(meta.role, cell))
        for scenario in LIFECYCLE_ROWS
        if (seen := _seen(cell := _find(result, topology, scenario))) is not None and cell is not None
    }
    fixes = [] if fixes is None else fixes
    counts: Counter[tuple[str, str]] = Counter()
    for cell in result.cells:
        if cell.topology == topology and cell.outcome == Outcome.FAIL and cell.diagnosis:
            counts[(cell.diagnosis.rule, cell.diagnosis.fix)] += 1
    causes = []
    for (rule, fix), count in counts.most_common():
        if fix not in fixes:
            fixes.append(fix)
        causes.append(Cause(rule, count, fixes.index(fix)))
    return Option(
        name=topology,
        label=LABELS.get(topology, topology),
        platform=meta.platform or meta.title,
        carries=carries,
        clients_passed=passed,
        clients_total=len(clients),
        clients_failed=_seen(failed_client),
        traffic=traffic,
        limits=limits,
        facts=dict(meta.facts),
        causes=causes,
        events=events,
    )


# -- the recommendation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """One reason for a choice, and the table rows it comes from."""

    text: str
    rows: tuple[str, ...]

    @property
    def row(self) -> str:
        return self.rows[0]


@dataclass(frozen=True)
class Choice:
    """The option to choose for one kind of app, and why."""

    app: str
    option: str
    """The topology's name."""
    label: str
    reasons: tuple[Reason, ...]
    """For the chosen option first, then why not each other one."""


@dataclass(frozen=True)
class Recommendation:
    """Which Replit deployment to choose for each kind of app, computed from the figures."""

    choices: tuple[Choice, ...]
    common: tuple[Reason, ...] = ()
    """What to do whatever the option (answer plain HTTP in process_request)."""

    def headline(self) -> str:
        """One line: 'For a long-lived WebSocket app (chat, dashboards), choose Replit Reserved
        VM; for a request/response app with occasional WebSockets, Replit Autoscale.'"""
        said = [
            f"{'For' if index == 0 else 'for'} {choice.app}, {'choose ' if index == 0 else ''}{choice.label}"
            for index, choice in enumerate(self.choices)
        ]
        return "; ".join(said) + "." if said else ""


LONG_LIVED = "a long-lived WebSocket app (chat, dashboards)"
REQUEST_RESPONSE = "a request/response app with occasional WebSockets"


def _holds(option: Option, fact: str) -> bool | None:
    found = option.facts.get(fact)
    return found.holds if found else None


def _good(value: bool | None, wanted: bool) -> int:
    """2 when a fact is as wanted, 0 when it is not, 1 when unknown."""
    return 1 if value is None else 2 if value is wanted else 0


LIFETIME = LIMIT_ROWS["lifetime-with-pings"]
IDLE = LIMIT_ROWS["idle-without-pings"]


def _long_lived_rank(option: Option) -> list[tuple[str, object]]:
    """What a long-lived WebSocket app needs, most important first: each value with its row."""
    busy = option.lifetime
    idle = option.limits.get("idle-without-pings")
    return [
        (ROW_CLIENTS, option.carries_websockets),
        (LIFETIME, busy is None),
        (LIFETIME, busy or 0),
        (FACT_ROWS["several_instances"], _good(_holds(option, "several_instances"), False)),
        (FACT_ROWS["scale_to_zero"], _good(_holds(option, "scale_to_zero"), False)),
        (IDLE, idle is None or idle.cut is None),
    ]


def _request_response_rank(option: Option) -> list[tuple[str, object]]:
    """What a request/response app with occasional WebSockets needs, most important first."""
    return [
        (ROW_CLIENTS, option.carries_websockets),
        (FACT_ROWS["cost"], _good(_holds(option, "cost"), False)),
        (FACT_ROWS["scale_to_zero"], _good(_holds(option, "scale_to_zero"), True)),
        (LIFETIME, option.lifetime is None),
        (LIFETIME, option.lifetime or 0),
        (FACT_ROWS["several_instances"], _good(_holds(option, "several_instances"), False)),
    ]


def _fact(option: Option, name: str) -> str:
    fact = option.facts[name]
    return f"{fact.value} [{fact.status}]"


def _clients_reason(option: Option) -> Reason:
    if option.carries_websockets:
        text = f"real WebSocket clients pass ({option.clients_passed}/{option.clients_total})"
    else:
        how = f", they get {option.clients_failed.summary}" if option.clients_failed else ""
        text = f"no WebSockets: {option.clients_passed}/{option.clients_total} real clients pass{how}"
    return Reason(text, (ROW_CLIENTS,))


def _lifetime_reason(option: Option) -> Reason | None:
    limit = option.limits.get("lifetime-with-pings")
    if limit is None or limit.no_websocket or (limit.cell is None and limit.configured is None):
        return None
    if option.lifetime is None:
        return Reason(f"a connection kept busy with pings is not cut: {limit.text()}", (LIFETIME,))
    return Reason(
        f"every connection is cut after {option.lifetime:.0f} s, pings or not, so clients must "
        f"reconnect: {limit.text()}",
        (LIFETIME,),
    )


def _idle_reason(option: Option) -> Reason | None:
    limit = option.limits.get("idle-without-pings")
    if limit is None or limit.cut is None:
        return None
    return Reason(
        f"an idle connection is cut after {limit.cut:.0f} s: keep websockets' pings on ({limit.text()})",
        (IDLE,),
    )


def _fact_reason(option: Option, name: str, if_true: str, if_false: str) -> Reason | None:
    holds = _holds(option, name)
    if holds is None:
        return None
    return Reason(f"{if_true if holds else if_false} ({_fact(option, name)})", (FACT_ROWS[name],))


def _long_lived_reasons(option: Option) -> list[Reason]:
    reasons = [
        _clients_reason(option),
        _lifetime_reason(option),
        _idle_reason(option),
        _fact_reason(
            option,
            "several_instances",
            "several instances: keep chat state out of memory (a database, Redis)",
            "one instance, so state kept in memory is every client's",
        ),
        _fact_reason(
            option,
            "scale_to_zero",
            "it scales to zero: the first client after a quiet spell waits for a cold start",
            "always on: no client waits for a cold start",
        ),
        _fact_reason(option, "cost", "you pay while it is idle", "you pay for use"),
    ]
    return [reason for reason in reasons if reason is not None]


def _request_response_reasons(option: Option) -> list[Reason]:
    reasons = [
        _clients_reason(option),
        _fact_reason(option, "cost", "you pay while it is idle", "you pay for use, not while idle"),
        _fact_reason(
            option,
            "scale_to_zero",
            "it scales to zero when idle, and the first request after a quiet spell waits for a cold start",
            "it never scales to zero",
        ),
        _lifetime_reason(option),
        _fact_reason(
            option,
            "several_instances",
            "it adds instances under load: keep state out of memory",
            "one instance",
        ),
    ]
    return [reason for reason in reasons if reason is not None]


Rank = Callable[[Option], list[tuple[str, object]]]


def _choose(app: str, options: list[Option], rank: Rank, reasons: Callable[[Option], list[Reason]]) -> Choice:
    """The best option by ``rank``; its reasons, then for each other option the row that put
    it below (the first where the two differ)."""
    best = max(options, key=lambda option: tuple(value for _, value in rank(option)))
    why = list(reasons(best))
    for other in options:
        if other is best:
            continue
        row = next((a[0] for a, b in zip(rank(best), rank(other), strict=True) if a[1] != b[1]), None)
        reason = next((r for r in reasons(other) if r.row == row), None)
        if reason is not None:
            why.append(Reason(f"not {other.label}: {reason.text}", reason.rows))
    return Choice(app, best.name, best.label, tuple(why))


def join_and(names: list[str]) -> str:
    """'a, b and c'."""
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def _plain_http_reasons(options: list[Option]) -> tuple[Reason, ...]:
    """Whatever the option: what the process_request fix changed, where it was measured."""
    fixed: dict[str, list[Option]] = {}
    for scenario in ("browser-tab-get", "preview-pane-get", "deploy-health-check"):
        for option in options:
            traffic = option.traffic.get(scenario)
            plain, after = (traffic.plain, traffic.fixed) if traffic else (None, None)
            if plain and after and plain.outcome == Outcome.FAIL and after.outcome == Outcome.PASS:
                fixed.setdefault(scenario, []).append(option)
    if not fixed:
        return ()
    seen = [(option.traffic[s], option) for s, by in fixed.items() for option in by]
    before = sorted({t.plain.summary for t, _ in seen if t.plain})
    after = sorted({t.fixed.summary for t, _ in seen if t.fixed})
    errors = sorted({t.plain.server_error for t, _ in seen if t.plain and t.plain.server_error})
    where = join_and(list(dict.fromkeys(option.label for _, option in seen)))
    text = (
        "answer non-upgrade requests in process_request: "
        + join_and([TRAFFIC_ROWS[s] for s in fixed])
        + f" then get {'/'.join(after)} instead of {'/'.join(before)} on {where}"
        + (f", and the server stops logging '{', '.join(errors)}'" if errors else "")
    )
    return (Reason(text, tuple(TRAFFIC_ROWS[s] for s in fixed)),)


def _recommend(options: list[Option]) -> Recommendation | None:
    """None when no Replit option carried WebSockets in the run: choosing among options that
    all fail would name one the lab saw fail."""
    candidates = [o for o in options if o.name in REPLIT_DEPLOYMENTS]
    if not any(o.carries_websockets for o in candidates):
        return None
    return Recommendation(
        choices=(
            _choose(LONG_LIVED, candidates, _long_lived_rank, _long_lived_reasons),
            _choose(REQUEST_RESPONSE, candidates, _request_response_rank, _request_response_reasons),
        ),
        common=_plain_http_reasons(candidates),
    )


def recommend(result: Run, fixed: Run | None = None) -> Recommendation | None:
    """Which Replit deployment to choose, for a long-lived WebSocket app and for a
    request/response app with occasional WebSockets, computed from one run (``fixed``: the same
    run with the process_request fix, for the reason that says what it changes).

    None unless one of Replit's deployment profiles (:data:`REPLIT_DEPLOYMENTS`) was ready in
    the run and carried WebSockets. The HTML report can show :meth:`Recommendation.headline` in
    its summary band."""
    ready = {t.name for t in result.topologies if t.status == "ready"}
    names = [name for name in REPLIT_DEPLOYMENTS if name in ready]
    if not names:
        return None
    carries = {v.name: v.carries for v in judge_run(result).topologies}
    return _recommend([summarise(result, fixed, name, carries.get(name)) for name in names])


@dataclass
class Comparison:
    options: list[Option]
    fixes: list[str]
    """Every distinct fix, once; each option's causes point into it."""
    recommendation: Recommendation | None
    websockets: str
    time_scale: float

    def disagreements(self) -> list[tuple[Option, str, Limit]]:
        return [(o, row, limit) for o in self.options for row, limit in o.disagreements()]


def compare(result: Run, fixed: Run, extra: tuple[str, ...] = ()) -> Comparison:
    """Every compared option (plus ``extra`` topologies, such as a real --target) and the
    Replit option to choose for each kind of app, with the reasons."""
    present = {t.name for t in result.topologies if t.status == "ready"}
    carries = {v.name: v.carries for v in judge_run(result).topologies}
    fixes: list[str] = []
    options = [
        summarise(result, fixed, name, carries.get(name), fixes)
        for name in COMPARED + extra
        if name in present
    ]
    return Comparison(
        options=options,
        fixes=fixes,
        recommendation=_recommend(options),
        websockets=result.components.websockets_server,
        time_scale=result.options.time_scale,
    )
