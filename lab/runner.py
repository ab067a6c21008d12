"""Plays every (topology x scenario) cell and gathers the evidence.

Cells run concurrently under a bound, each topology's as soon as it is up.
Scenarios whose connections cannot carry a correlation id (a TCP probe) have
their topology's listener to themselves once its other cells have started
and are done or quiet (see :func:`exclusive_may_start`), and claim every
connection without an id the server saw meanwhile. Whatever happens, the
backend is stopped before :func:`run` returns or raises.
"""

from __future__ import annotations

import asyncio
import heapq
import platform
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import websockets

from . import faults, lifecycle
from .app_log import AppLog, attribute, handshake_error
from .backends import READY, UNAVAILABLE, Backend, Deployment
from .browser import BrowserUnavailable, Chromium
from .client import Client
from .diagnosis import diagnose
from .durations import key
from .evidence import Evidence
from .expectations import evaluate
from .processes import log_tail
from .records import (
    AppLogLine,
    AppRecord,
    Cell,
    Components,
    Connection,
    Outcome,
    Run,
    ScenarioRecord,
    Settings,
)
from .redaction import redact_connection, redact_log_line, redact_transcript, sweep, transcript_secrets
from .relay_patience import RelayPatience
from .scenario import OPENING_STEPS, Scenario
from .topology import Parameter, Topology

CELL_LOG_MAX_LINES = 60
"""A cell keeps at most this many of the proxy's log lines that name it (the last ones)."""
APP_LOG_MAX_ENTRIES = 40
"""A cell keeps at most this many of the entries the user's app logged for it (the first ones)."""
UNATTRIBUTED_MAX_ENTRIES = 200
"""The run keeps at most this many of the app's entries no cell claimed (the last ones)."""


@dataclass
class RunOptions:
    concurrency: int = 32
    """Cells whose clients play at once; a cell that only waits for the server's report of its
    connections holds no place."""
    step_timeout: float = 5.0
    cell_timeout: float = 30.0
    settle: float = 1.0
    """Seconds to wait for the server's report of a connection that may never come."""
    redact: bool = True
    """Replace secrets in the client's transcript and the server's records (the probe server
    has redacted its own already); False only with ``--no-redact``."""
    environment: dict[str, str] = field(default_factory=dict)
    """Values for the scenarios' ``{env:NAME}`` placeholders (scenario.environment_values);
    secrets wherever they appear, unless ``redact`` is off."""
    expected: Mapping[str, float] = field(default_factory=dict)
    """Seconds each cell (wslab.durations.key) took last time: long ones are played first."""

    @property
    def known_secrets(self) -> set[str]:
        return set(self.environment.values()) if self.redact else set()


def _unplayed(deployment: Deployment, scenario: Scenario, outcome: Outcome, summary: str, why: str) -> Cell:
    """A cell the lab did not (or could not) play, and why."""
    return Cell(
        topology=deployment.topology.name,
        scenario=scenario.id,
        suite=scenario.suite,
        outcome=outcome,
        summary=summary,
        error=why,
        log_tail=deployment.log_tail,
    )


def _lab_error(deployment: Deployment, scenario: Scenario, message: str) -> Cell:
    if deployment.status == UNAVAILABLE:
        return _unplayed(deployment, scenario, Outcome.UNAVAILABLE, "n/a", message)
    return _unplayed(deployment, scenario, Outcome.ERROR, "error", message)


async def play_cell(
    backend: Backend,
    deployment: Deployment,
    scenario: Scenario,
    options: RunOptions,
    browser: Chromium | None = None,
    sent_secrets: set[str] | None = None,
    cell_id: str | None = None,
    played: Callable[[], None] = lambda: None,
    relays: RelayPatience | None = None,
) -> Cell:
    """Run one scenario against one deployed topology and judge it. With redaction on, the
    secrets the client sent are added to ``sent_secrets`` (for the proxies' log lines).
    ``cell_id`` is the correlation id to use (default: a new one; none for an exclusive scenario).
    ``played`` is called once the client is done, before the wait for the server's report.
    ``relays``: the run's, shared by its cells (default: this cell's own)."""
    if deployment.status != READY:
        return _lab_error(deployment, scenario, deployment.detail)
    if (failure := backend.failure()) is not None:
        return _lab_error(deployment, scenario, failure)
    if not backend.alive(deployment):
        return _proxy_died(deployment, scenario)
    if backend.time_scale < 1 and (
        limits := deployment.topology.unmeasurable(backend.time_scale, scenario.duration)
    ):
        return _not_measured(deployment, scenario, limits, backend.time_scale)
    if deployment.behind_app and scenario.needs_probe_server:
        why = "needs the lab's probe server (its commands or settings), not your app"
        return _unplayed(deployment, scenario, Outcome.NOT_APPLICABLE, "n/a", why)
    if scenario.uses_browser and (missing := await _browser_missing(browser)):
        return _unplayed(deployment, scenario, Outcome.UNAVAILABLE, "n/a", missing)
    for cause in scenario.events:
        if (why := lifecycle.unsupported(cause, deployment.topology, backend.name)) is not None:
            if why.startswith(lifecycle.NOT_APPLICABLE):
                return _unplayed(deployment, scenario, Outcome.NOT_APPLICABLE, "n/a", why)
            return _unplayed(deployment, scenario, Outcome.NOT_MEASURED, "not here", why)
    assert deployment.endpoint is not None
    hops = _hops(backend, deployment) if scenario.uses_faults else {}
    if scenario.uses_faults and (why := _no_faults(backend, deployment)):
        return _unplayed(deployment, scenario, Outcome.NOT_MEASURED, "not measured", f"not measured: {why}")
    cell_id = None if scenario.exclusive else cell_id or new_cell_id(scenario)
    # A redeploy's grace period or a scale to zero's idle time: the topology's, scaled.
    event_waits = (
        sum(lifecycle.waits(cause, deployment.topology) for cause in scenario.events) * backend.time_scale
    )
    client = Client(
        deployment.endpoint,
        cell_id,
        scenario.timeout or options.step_timeout,
        backend.time_scale,
        browser,
        options.environment,
        deployment.gate,
        hops,
        _event_causer(backend, deployment) if scenario.events else None,
        event_waits,
        relays or RelayPatience(backend.feed.first_report),
    )
    budget = options.cell_timeout + scenario.duration * backend.time_scale + 1.5 * event_waits
    # Waiting for a free browser tab is not the cell's time: its clock starts with its tab.
    async with browser.tab_slot if browser is not None and scenario.uses_browser else nullcontext():
        started = time.time()
        try:
            async with asyncio.timeout(budget):
                transcript = await client.play(scenario.steps)
        except TimeoutError:
            return _lab_error(deployment, scenario, f"cell did not finish in {budget:g} s")
    played()
    if cell_id is None:
        closed_back = transcript.peer_closed_after is not None
        connections = await backend.feed.in_window(deployment.listener, started, options.settle, closed_back)
    else:
        # A browser page brings its own follow-ups (/favicon.ico): wait for each that got an answer.
        answered = [r for r in transcript.browser.requests if r.received] if transcript.browser else []
        connections = await backend.feed.wait_for_cell(
            cell_id, options.settle, max(1, len(answered)), deployment.listener
        )
        if not connections:
            connections = await backend.feed.unattributed(deployment.listener, started)
    # Evidence gathered while a part of the lab was dying is not evidence about the topology.
    if (failure := backend.failure()) is not None:
        return _lab_error(deployment, scenario, failure)
    if not backend.alive(deployment):
        return _proxy_died(deployment, scenario)
    logged: list[AppLogLine] = []
    if deployment.app_log is not None:
        logged, connections = _app_said(deployment.app_log, started, cell_id, client, connections)
    if options.redact:
        found = transcript_secrets(transcript) | options.known_secrets
        if sent_secrets is not None:
            sent_secrets.update(found)
        transcript = sweep(redact_transcript(transcript), options.known_secrets)
        if not backend.feed.records_redacted:  # a server that did not: done here
            connections = [redact_connection(c) for c in connections]
        connections = [sweep(c, options.known_secrets) for c in connections]
        logged = [line.model_copy(update={"text": redact_log_line(line.text, found)}) for line in logged]
    evidence = Evidence(transcript, connections)
    cell = judge(evidence, scenario, deployment.topology, cell_id, round(time.time() - started, 3))
    cell.app_log = logged
    return cell


def _no_faults(backend: Backend, deployment: Deployment) -> str | None:
    """Why this cell's fault steps cannot be played here, or None."""
    if deployment.hops is not None:
        return None  # in the containers' own namespaces: see lab/backends/container_events.py
    if backend.name != "local" or deployment.upstream is None:
        return (
            "network faults are put on the local backend's loopback hops, or from the host on the "
            "compose and containers backends' containers"
        )
    return faults.unavailable()


def _hops(backend: Backend, deployment: Deployment) -> dict[str, faults.Hop]:
    """Where each hop is: the backend's own (in containers), else on loopback the proxy's
    listening port and its upstream's (through ``direct`` the client talks to the server itself,
    so both hops are that one port)."""
    if deployment.hops is not None:
        return deployment.hops
    if deployment.endpoint is None or deployment.upstream is None:
        return {}
    return {
        "client-proxy": faults.Hop(deployment.endpoint.port),
        "proxy-server": faults.Hop(deployment.upstream[1]),
    }


def _event_causer(backend: Backend, deployment: Deployment) -> lifecycle.CauseEvent:
    """The client's way to have the lab cause an event on this topology (lifecycle.unsupported
    has said the backend can)."""
    events = cast(lifecycle.EventBackend, backend)
    return lambda cause, argument: lifecycle.cause_on(events, deployment, cause, argument)


def _app_said(
    log: AppLog, started: float, cell_id: str | None, client: Client, connections: list[Connection]
) -> tuple[list[AppLogLine], list[Connection]]:
    """What the user's app logged for this cell, and its connections with the websockets error
    read from those lines where the tap could not know it."""
    ports = {c.tap.upstream_local_port for c in connections if c.tap and c.tap.upstream_local_port}
    # Time ties nothing to a cell none of whose connections reached the app (a proxy that
    # answered itself): whatever the app wrote meanwhile was about another cell's.
    turns = client.turns if connections else []
    logged = attribute(log.between(started, time.time()), cell_id, ports, turns)[:APP_LOG_MAX_ENTRIES]
    error = handshake_error(logged)
    if error is None or not connections:
        return logged, connections
    # The refused connection is the one the error is about: the first without an upgrade.
    refused = next((c for c in connections if not c.upgraded and c.error is None), None)
    if refused is None:
        return logged, connections
    return logged, [c.model_copy(update={"error": error}) if c is refused else c for c in connections]


def judge(
    evidence: Evidence, scenario: Scenario, topology: Topology, cell_id: str | None, duration: float
) -> Cell:
    """A cell from its evidence: the scenario's checks, the verdict, and if it did not pass, why."""
    unmeasured = next((f.not_measured for f in evidence.transcript.faults if f.not_measured), None)
    if unmeasured is not None:
        # A fault this kernel (or this run) cannot make: what happened without it proves nothing.
        return Cell(
            topology=topology.name,
            scenario=scenario.id,
            suite=scenario.suite,
            outcome=Outcome.NOT_MEASURED,
            summary="not measured",
            duration=duration,
            cell_id=cell_id,
            client=evidence.transcript,
            server=evidence.connections,
            error=f"not measured: {unmeasured}",
        )
    checks = evaluate(scenario.expect, evidence)
    failed = [check for check in checks if not check.ok]
    missed = Outcome.INFORMATIONAL if scenario.tier == "informational" else Outcome.FAIL
    return Cell(
        topology=topology.name,
        scenario=scenario.id,
        suite=scenario.suite,
        outcome=missed if failed else Outcome.PASS,
        summary=evidence.summary(),
        duration=duration,
        cell_id=cell_id,
        client=evidence.transcript,
        server=evidence.connections,
        checks=checks,
        diagnosis=diagnose(evidence, topology, failed) if failed else None,
    )


def _not_measured(deployment: Deployment, scenario: Scenario, limits: list[Parameter], scale: float) -> Cell:
    """A cell an accelerated run would get wrong: a limit the proxy cannot be given at this scale."""
    why = "; ".join(
        f"{p.name} ({p.seconds:g} s) would be {p.scaled(scale):g} s at ×{scale:g}, not "
        f"{p.seconds * scale:g} s (the proxy takes steps of {p.granularity:g} s)"
        for p in limits
    )
    message = f"not measured when accelerated: {why}; run with --faithful to measure it"
    return _unplayed(deployment, scenario, Outcome.NOT_MEASURED, "not measured", message)


async def _browser_missing(browser: Chromium | None) -> str:
    """Why browser cells cannot run, or '' once Chromium is up."""
    if browser is None:
        return "this run started no browser"
    try:
        await browser.ensure_started()
    except BrowserUnavailable as missing:
        return str(missing)
    return ""


def _proxy_died(deployment: Deployment, scenario: Scenario) -> Cell:
    tail = log_tail(deployment.log_path) if deployment.log_path else ""
    cell = _lab_error(deployment, scenario, f"{deployment.topology.proxy} exited during the run")
    cell.log_tail = tail
    return cell


def new_cell_id(scenario: Scenario) -> str | None:
    """A fresh correlation id for a cell of ``scenario``; None if its connections cannot carry one."""
    return None if scenario.exclusive else secrets.token_hex(6)


def quiet_once_seen(scenario: Scenario) -> bool:
    """Whether a cell of ``scenario`` opens nothing more once its first connection has reached the
    server: its only opening step is its first, and it is no browser's (a page brings follow-ups)."""
    opening = [number for number, step in enumerate(scenario.steps) if set(step) & set(OPENING_STEPS)]
    return opening == [0] and not scenario.uses_browser


def exclusive_may_start(waiting: int, playing: list[tuple[Scenario, bool]]) -> bool:
    """Whether an exclusive cell may have its listener now, with ``waiting`` other cells of its
    topology not started yet and ``playing`` the ones under way (each with whether a connection
    carrying its id has been reported).

    An exclusive cell claims the id-less connections opened on its listener during its window,
    and a cell whose own connection never shows up claims the id-less ones opened during its own:
    the windows must not share a connection that could belong to either. A cell whose only
    connection has reached the server carrying its id (a request waiting for an answer that may
    take the whole step timeout) opens nothing more and claims nothing else: the exclusive cell
    can run beside it rather than after it.
    """
    return waiting == 0 and all(seen and quiet_once_seen(scenario) for scenario, seen in playing)


LONG_CELL = 0.25
"""Seconds from which a cell counts as long (it waited out a patience or a limit)."""


class Places:
    """The run's ``concurrency`` places to play a cell in, in the order asked, but for two kinds
    of cells. A long one (it took LONG_CELL s or more last time: lab/durations.py) goes first,
    longest first, so that the run's slowest cell does not start behind a queue of quick ones;
    the others keep their order (topology by topology, so that each topology finishes, its
    exclusive cells and its log read, while the next plays). An exclusive cell, which has already
    waited for its topology to go quiet, goes before every cell still queued."""

    def __init__(self, count: int) -> None:
        self.free = count
        self.queue: list[tuple[bool, float, int, asyncio.Future[None]]] = []
        self.asked = 0
        self.granting = False

    async def take(self, exclusive: bool = False, expected: float = 0.0) -> None:
        self.asked += 1
        turn = asyncio.get_running_loop().create_future()
        long = expected if expected >= LONG_CELL else 0.0
        heapq.heappush(self.queue, (not exclusive, -long, self.asked, turn))
        self._grant_soon()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # given just as it was cancelled: pass it on
            raise

    def give(self) -> None:
        self.free += 1
        self._grant_soon()

    def _grant_soon(self) -> None:
        """Grant on the loop's next turn, once every cell asking in this one has asked."""
        if self.free and not self.granting:
            self.granting = True
            asyncio.get_running_loop().call_soon(self._grant)

    def _grant(self) -> None:
        self.granting = False
        while self.free and self.queue:
            turn = heapq.heappop(self.queue)[-1]
            if not turn.done():
                self.free -= 1
                turn.set_result(None)


class _Slot:
    """One of the run's places, held while a cell's client plays: waiting for the server's
    report of a connection (up to ``settle`` s, often for one that never comes) needs none, so
    the next cell need not wait for it."""

    def __init__(self, places: Places) -> None:
        self.places = places
        self.held = False

    async def take(self, exclusive: bool = False, expected: float = 0.0) -> None:
        await self.places.take(exclusive, expected)
        self.held = True

    def give_back(self) -> None:
        """Release the place; again is nothing."""
        if self.held:
            self.held = False
            self.places.give()


EXCLUSIVE_POLL = 0.02
"""Seconds between two looks at whether an exclusive cell may start."""


async def _play_topology(
    backend: Backend,
    starting: Awaitable[Deployment],
    scenarios: list[Scenario],
    options: RunOptions,
    places: Places,
    on_cell: Callable[[Cell], None],
    on_start: Callable[[str, str], None],
    browser: Chromium | None,
    sent_secrets: set[str],
    relays: RelayPatience,
) -> list[Cell]:
    deployment = await starting
    # Chromium takes the hosts it may reach when it starts: a topology ready after that would
    # be missed, but backends that start topologies one by one (local) serve on loopback only.
    if browser is not None and deployment.endpoint is not None:
        browser.hosts.add(deployment.endpoint.name or deployment.endpoint.host)
    waiting = [s for s in scenarios if not s.exclusive]
    playing: dict[str, Scenario] = {}

    async def bounded(scenario: Scenario, cell_id: str | None = None) -> Cell:
        slot = _Slot(places)
        took = options.expected.get(key(deployment.topology.name, scenario.id), 0.0)
        await slot.take(scenario.exclusive, took)
        if cell_id is not None:
            waiting.remove(scenario)
            playing[cell_id] = scenario
        try:
            on_start(deployment.topology.name, scenario.id)
            cell = await play_cell(
                backend, deployment, scenario, options, browser, sent_secrets, cell_id, slot.give_back, relays
            )
        finally:
            slot.give_back()
            playing.pop(cell_id or "", None)
        on_cell(cell)
        return cell

    def exclusive_turn(scenario: Scenario) -> bool:
        seen = getattr(backend.feed, "seen", None)
        # Without a report of each connection (a remote target), with the user's app's log to
        # attribute by time too, or for a fault or a lifecycle event (a rule on a port, a reload, a
        # redeploy hits every connection through it, a quiet hold too), exclusive cells wait for
        # every other cell to end.
        if seen is None or deployment.app_log is not None or scenario.uses_faults or scenario.events:
            return not waiting and not playing
        return exclusive_may_start(len(waiting), [(s, seen(cell)) for cell, s in playing.items()])

    others = [asyncio.ensure_future(bounded(s, new_cell_id(s))) for s in list(waiting)]
    alone = []
    try:
        for scenario in [s for s in scenarios if s.exclusive]:
            while not exclusive_turn(scenario):
                await asyncio.sleep(EXCLUSIVE_POLL)
            alone.append(await bounded(scenario))
        results = [*await asyncio.gather(*others), *alone]
    finally:
        for task in others:
            task.cancel()
    ahead = getattr(backend, "read_log_ahead", None)
    if ahead is not None:
        ahead(deployment)
    return _block_dependents(results, scenarios)


async def _start(backend: Backend, topologies: list[Topology]) -> dict[str, asyncio.Future[Deployment]]:
    """Each topology's deployment, to be awaited. A backend that can start topologies one by one
    (``start_each``) lets the cells of the first one ready begin before the last is up."""
    each = getattr(backend, "start_each", None)
    # An accelerated run measures limits of a second or so: its cells wait for every proxy, so
    # that none shares the CPU (a C compiler, process starts that hold the event loop) with a
    # measurement. Seen: idle cuts measured 0.24 s early at x0.02 with cells beside start-ups.
    if each is not None and backend.time_scale >= 1:
        return await each(topologies)
    deployments = await backend.start(topologies)
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[Deployment]] = {}
    for name, deployment in deployments.items():
        done[name] = loop.create_future()
        done[name].set_result(deployment)
    return done


def _block_dependents(cells: list[Cell], scenarios: list[Scenario]) -> list[Cell]:
    """Cells whose prerequisites failed on the same topology are blocked, not failed."""
    outcome = {cell.scenario: cell.outcome for cell in cells}
    needs = {scenario.id: scenario.depends_on for scenario in scenarios}
    for cell in cells:
        broken = [dep for dep in needs[cell.scenario] if outcome.get(dep, Outcome.PASS).failing]
        if broken and cell.outcome == Outcome.FAIL:  # a lab error stays one: it says more
            cell.outcome = Outcome.BLOCKED
            cell.error = f"blocked: needs {', '.join(broken)}, which did not pass on {cell.topology}"
    return cells


def _attach_logs(cells: list[Cell], logs: dict[str, str], sent_secrets: set[str] | None) -> None:
    """Give each cell the proxy's log lines that carry its correlation id; with ``sent_secrets``
    (redaction on), those lines and the cells' log tails without the secrets any cell sent."""
    lines = {name: text.splitlines() for name, text in logs.items()}
    for cell in cells:
        if cell.cell_id and cell.topology in lines:
            named = [line for line in lines[cell.topology] if cell.cell_id in line]
            cell.proxy_log = named[-CELL_LOG_MAX_LINES:]
        if sent_secrets is not None:
            cell.proxy_log = [redact_log_line(line, sent_secrets) for line in cell.proxy_log]
            cell.log_tail = redact_log_line(cell.log_tail, sent_secrets) if cell.log_tail else cell.log_tail


async def run(
    backend: Backend,
    topologies: list[Topology],
    scenarios: list[Scenario],
    options: RunOptions | None = None,
    on_cell: Callable[[Cell], None] = lambda cell: None,
    on_start: Callable[[str, str], None] = lambda topology, scenario: None,
) -> Run:
    """Start the topologies, play every cell, stop everything, return the results.

    The proxies' logs are read before they stop, so the results hold every
    cell's log lines and need nothing from the run folder afterwards.
    """
    options = options or RunOptions()
    started = time.time()
    browser = Chromium() if any(s.uses_browser for s in scenarios) else None
    sent_secrets: set[str] = set(options.known_secrets)
    starting: dict[str, asyncio.Future[Deployment]] = {}
    try:
        starting = await _start(backend, topologies)
        places = Places(options.concurrency)
        relays = RelayPatience(backend.feed.first_report)
        # Topologies whose log takes a dump to read play first: the dump (read ahead where the
        # backend can) overlaps the other topologies' cells. The results keep the given order.
        first = sorted(topologies, key=lambda t: not t.log_dumped)
        played = await asyncio.gather(
            *(
                _play_topology(
                    backend,
                    starting[t.name],
                    scenarios,
                    options,
                    places,
                    on_cell,
                    on_start,
                    browser,
                    sent_secrets,
                    relays,
                )
                for t in first
            )
        )
        by_name = {t.name: cells for t, cells in zip(first, played, strict=True)}
        per_topology = [by_name[t.name] for t in topologies]
        deployments = {name: future.result() for name, future in starting.items()}
        logs = await backend.proxy_logs(deployments)
    finally:
        for future in starting.values():
            future.cancel()
        if browser is not None:
            await browser.stop()
        if any(s.uses_faults for s in scenarios):
            # Cells take their own faults off; this is for a cell cut short between two awaits
            # (and for a stack that stays up after the run, whose containers keep their rules).
            await faults.controller().clear_all()
        await backend.stop()
    order = {s.id: index for index, s in enumerate(scenarios)}
    cells = [cell for cells in per_topology for cell in sorted(cells, key=lambda c: order[c.scenario])]
    _attach_logs(cells, logs, sent_secrets if options.redact else None)
    return Run(
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        duration=round(time.time() - started, 3),
        backend=backend.name,
        options=Settings(
            concurrency=options.concurrency,
            step_timeout=options.step_timeout,
            cell_timeout=options.cell_timeout,
            settle=options.settle,
            time_scale=backend.time_scale,
            redacted=options.redact,
        ),
        components=_components(backend, deployments, browser),
        topologies=[deployments[t.name].record() for t in topologies],
        scenarios=[_scenario_record(s) for s in scenarios],
        cells=cells,
        app=_app_record(backend, deployments, cells, sent_secrets if options.redact else None),
    )


def _app_record(
    backend: Backend, deployments: dict[str, Deployment], cells: list[Cell], secrets: set[str] | None
) -> AppRecord | None:
    """The user's app, with the entries it logged that no cell claimed (the last ones)."""
    record = backend.app_record()
    if record is None:
        return None

    def key(line: AppLogLine) -> tuple[float, str, str]:
        return line.at, line.stream, line.text.split("\n", 1)[0]

    def shown(line: AppLogLine) -> AppLogLine:
        return (
            line if secrets is None else line.model_copy(update={"text": redact_log_line(line.text, secrets)})
        )

    claimed = {key(line) for cell in cells for line in cell.app_log}
    logs = {id(d.app_log): d.app_log for d in deployments.values() if d.app_log is not None}
    entries = sorted((shown(entry) for log in logs.values() for entry in log.entries), key=lambda e: e.at)
    left = [entry for entry in entries if key(entry) not in claimed][-UNATTRIBUTED_MAX_ENTRIES:]
    if secrets is not None and record.command:
        record.command = redact_log_line(record.command, secrets)
    record.unattributed = left
    return record


def _components(backend: Backend, deployments: dict[str, Deployment], browser: Chromium | None) -> Components:
    proxies = {
        d.topology.proxy: d.version for d in deployments.values() if d.version and not d.topology.direct
    }
    return Components(
        websockets_server=backend.websockets_version,
        websockets_client=websockets.__version__,
        python=platform.python_version(),
        proxies=dict(sorted(proxies.items())),
        browser=browser.version if browser is not None and browser.version else None,
    )


def _scenario_record(scenario: Scenario) -> ScenarioRecord:
    return ScenarioRecord(
        id=scenario.id,
        short=scenario.short,
        suite=scenario.suite,
        tier=scenario.tier,
        depends_on=list(scenario.depends_on),
        title=scenario.title,
        models=scenario.models,
        description=scenario.description,
        expect=scenario.expect,
        source=scenario.source,
        needs_probe_server=scenario.needs_probe_server,
    )
