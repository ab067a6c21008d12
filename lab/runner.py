"""Plays every (topology x scenario) cell and gathers the evidence.

Cells run concurrently under a bound. Scenarios whose connections cannot
carry a correlation id (a TCP probe) run alone on their topology, after the
others, and claim every connection the server saw meanwhile. Whatever
happens, the backend is stopped before :func:`run` returns or raises.
"""

from __future__ import annotations

import asyncio
import platform
import secrets
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import websockets

from .backends import READY, UNAVAILABLE, Deployment
from .browser import BrowserUnavailable, Chromium
from .client import Client
from .diagnosis import diagnose
from .evidence import Facts, redact_evidence
from .expectations import evaluate
from .observations import ObservationFeed
from .processes import log_tail
from .results import BLOCKED, ERROR, FAIL, INFORMATIONAL, PASS, CellResult, RunResult
from .scenario import Scenario
from .topology import Topology


class Backend(Protocol):
    name: str
    feed: ObservationFeed
    websockets_version: str
    time_scale: float

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]: ...

    def alive(self, deployment: Deployment) -> bool: ...

    async def stop(self) -> None: ...


@dataclass
class RunOptions:
    concurrency: int = 32
    step_timeout: float = 5.0
    cell_timeout: float = 30.0
    settle: float = 1.0
    """Seconds to wait for the server's report of a connection that may never come."""


def _lab_error(deployment: Deployment, scenario: Scenario, message: str) -> CellResult:
    outcome = UNAVAILABLE if deployment.status == UNAVAILABLE else ERROR
    return CellResult(
        topology=deployment.topology.name,
        scenario=scenario.id,
        suite=scenario.suite,
        outcome=outcome,
        summary="n/a" if outcome == UNAVAILABLE else "error",
        error=message,
        log_tail=deployment.log_tail,
    )


async def play_cell(
    backend: Backend,
    deployment: Deployment,
    scenario: Scenario,
    options: RunOptions,
    browser: Chromium | None = None,
) -> CellResult:
    """Run one scenario against one deployed topology and judge it."""
    if deployment.status != READY:
        return _lab_error(deployment, scenario, deployment.detail)
    if not backend.alive(deployment):
        return _proxy_died(deployment, scenario)
    if scenario.uses_browser and (missing := await _browser_missing(browser)):
        return CellResult(
            topology=deployment.topology.name,
            scenario=scenario.id,
            suite=scenario.suite,
            outcome=UNAVAILABLE,
            summary="n/a",
            error=missing,
        )
    assert deployment.endpoint is not None
    cell_id = None if scenario.exclusive else secrets.token_hex(6)
    client = Client(
        deployment.endpoint,
        cell_id,
        scenario.timeout or options.step_timeout,
        backend.time_scale,
        browser,
    )
    budget = options.cell_timeout + scenario.duration * backend.time_scale
    # Waiting for a free browser tab is not the cell's time: its clock starts with its tab.
    async with browser.tab_slot if browser is not None and scenario.uses_browser else nullcontext():
        started = time.time()
        try:
            transcript = await asyncio.wait_for(client.play(scenario.steps), budget)
        except TimeoutError:
            return _lab_error(deployment, scenario, f"cell did not finish in {budget:g} s")
    if cell_id is None:
        connections = await backend.feed.in_window(deployment.listener, started, options.settle)
    else:
        connections = await backend.feed.for_cell(cell_id, options.settle)
        if not connections:
            connections = await backend.feed.unattributed(deployment.listener, started)
    if not backend.alive(deployment):
        return _proxy_died(deployment, scenario)
    facts = Facts(*redact_evidence(transcript.to_dict(), connections))
    checks = evaluate(scenario.expect, facts)
    failed = [check for check in checks if not check.ok]
    missed = INFORMATIONAL if scenario.tier == "informational" else FAIL
    return CellResult(
        topology=deployment.topology.name,
        scenario=scenario.id,
        suite=scenario.suite,
        outcome=missed if failed else PASS,
        summary=facts.client_summary(),
        duration=round(time.time() - started, 3),
        client=facts.transcript,
        server=connections,
        checks=[check.to_dict() for check in checks],
        diagnosis=diagnose(facts, deployment.topology, failed).to_dict() if failed else None,
    )


async def _browser_missing(browser: Chromium | None) -> str:
    """Why browser cells cannot run, or '' once Chromium is up."""
    if browser is None:
        return "this run started no browser"
    try:
        await browser.ensure_started()
    except BrowserUnavailable as missing:
        return str(missing)
    return ""


def _proxy_died(deployment: Deployment, scenario: Scenario) -> CellResult:
    tail = log_tail(deployment.log_path) if deployment.log_path else ""
    cell = _lab_error(deployment, scenario, f"{deployment.topology.proxy} exited during the run")
    cell.log_tail = tail
    return cell


async def _play_topology(
    backend: Backend,
    deployment: Deployment,
    scenarios: list[Scenario],
    options: RunOptions,
    bound: asyncio.Semaphore,
    on_cell: Callable[[CellResult], None],
    on_start: Callable[[str, str], None],
    browser: Chromium | None,
) -> list[CellResult]:
    async def bounded(scenario: Scenario) -> CellResult:
        async with bound:
            on_start(deployment.topology.name, scenario.id)
            cell = await play_cell(backend, deployment, scenario, options, browser)
        on_cell(cell)
        return cell

    results = list(await asyncio.gather(*(bounded(s) for s in scenarios if not s.exclusive)))
    for scenario in [s for s in scenarios if s.exclusive]:
        results.append(await bounded(scenario))
    return _block_dependents(results, scenarios)


def _block_dependents(cells: list[CellResult], scenarios: list[Scenario]) -> list[CellResult]:
    """Cells whose prerequisites failed on the same topology are blocked, not failed."""
    outcome = {cell.scenario: cell.outcome for cell in cells}
    needs = {scenario.id: scenario.depends_on for scenario in scenarios}
    for cell in cells:
        broken = [dep for dep in needs[cell.scenario] if outcome.get(dep) in (FAIL, ERROR)]
        if broken and cell.outcome in (FAIL, ERROR):
            cell.outcome = BLOCKED
            cell.error = f"blocked: needs {', '.join(broken)}, which did not pass on {cell.topology}"
    return cells


async def run(
    backend: Backend,
    topologies: list[Topology],
    scenarios: list[Scenario],
    options: RunOptions | None = None,
    on_cell: Callable[[CellResult], None] = lambda cell: None,
    on_start: Callable[[str, str], None] = lambda topology, scenario: None,
) -> RunResult:
    """Start the topologies, play every cell, stop everything, return the results."""
    options = options or RunOptions()
    started = time.time()
    browser = Chromium() if any(s.uses_browser for s in scenarios) else None
    try:
        deployments = await backend.start(topologies)
        if browser is not None:
            browser.hosts = {d.endpoint.name or d.endpoint.host for d in deployments.values() if d.endpoint}
        bound = asyncio.Semaphore(options.concurrency)
        per_topology = await asyncio.gather(
            *(
                _play_topology(
                    backend, deployments[t.name], scenarios, options, bound, on_cell, on_start, browser
                )
                for t in topologies
            )
        )
    finally:
        if browser is not None:
            await browser.stop()
        await backend.stop()
    order = {s.id: index for index, s in enumerate(scenarios)}
    cells = [cell for cells in per_topology for cell in sorted(cells, key=lambda c: order[c.scenario])]
    return RunResult(
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        duration=round(time.time() - started, 3),
        backend=backend.name,
        options={**_options_record(options), "time_scale": backend.time_scale},
        components=_components(backend, deployments, browser),
        topologies=[deployments[t.name].to_dict() for t in topologies],
        scenarios=[_scenario_record(s) for s in scenarios],
        cells=cells,
    )


def _options_record(options: RunOptions) -> dict[str, Any]:
    return {
        "concurrency": options.concurrency,
        "step_timeout": options.step_timeout,
        "cell_timeout": options.cell_timeout,
        "settle": options.settle,
    }


def _components(
    backend: Backend, deployments: dict[str, Deployment], browser: Chromium | None
) -> dict[str, Any]:
    proxies = {
        d.topology.proxy: d.version for d in deployments.values() if d.version and not d.topology.direct
    }
    return {
        "websockets_server": backend.websockets_version,
        "websockets_client": websockets.__version__,
        "python": platform.python_version(),
        "proxies": dict(sorted(proxies.items())),
        **({"browser": browser.version} if browser is not None and browser.version else {}),
    }


def _scenario_record(scenario: Scenario) -> dict[str, Any]:
    return {
        "id": scenario.id,
        "suite": scenario.suite,
        "tier": scenario.tier,
        "depends_on": list(scenario.depends_on),
        "title": scenario.title,
        "models": scenario.models,
        "description": scenario.description,
        "expect": scenario.expect,
        "source": scenario.source,
    }
