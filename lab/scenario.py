"""Scenario files: YAML suites validated against a JSON Schema, with file:line errors.

A scenario is data: the client's steps and the expectations on what comes of
them. Loading never runs anything; a bad file raises :class:`ScenarioError`
naming the file, the line and what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ScenarioError
from .paths import SCENARIO_DIR
from .safe_yaml import Document, YamlInputError, load_yaml
from .validation import check_against, where_in

OPENING_STEPS = ("connect", "raw", "tcp_probe", "browser_visit", "browser_websocket", "browser_connect")
"""Steps that open the cell's connection; after ``connect`` a WebSocket is left open for every
WebSocket step, after ``browser_connect`` a page's for an ``event`` step."""
PAGE_STEPS = ("event",)
"""The steps that can act on a page's WebSocket (``browser_connect``): the lab has no hand in
what the page sends but the event step's numbered messages."""
FAULT_STEPS = ("fault", "clear_fault")
"""Steps that act on the network, not on a connection: allowed before any opening step."""
ENV_PLACEHOLDER = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
"""``{env:NAME}`` in a path, a header line or a subprotocol: the environment variable's value,
so that tokens and cookies stay out of scenario files."""


@dataclass(frozen=True)
class Scenario:
    """One scenario of a suite, as written in its file."""

    id: str
    suite: str
    title: str
    steps: list[dict[str, Any]]
    expect: dict[str, Any]
    description: str = ""
    models: str = ""
    correlate: str = "query"
    timeout: float | None = None
    source: str = ""
    tier: str = "deployment"
    depends_on: tuple[str, ...] = ()
    depends_on_lines: tuple[int, ...] = ()
    """The line of each ``depends_on`` entry, for errors about it."""
    short: str = ""
    """Its column in the terminal matrix: at most 5 characters."""
    needs_probe_server: bool = False
    """It relies on the lab's probe server (its commands, subprotocol choice, pings): not
    applicable against a user's app."""

    @property
    def duration(self) -> float:
        """Faithful seconds the scenario spends waiting on purpose (idle and hold steps)."""
        total = 0.0
        for step in self.steps:
            total += float(step.get("idle", 0)) + float(step.get("hold", {}).get("seconds", 0))
        return total

    @property
    def uses_browser(self) -> bool:
        """True if a step drives real Chromium (``browser_visit``, ``browser_websocket``,
        ``browser_connect``)."""
        return any(action.startswith("browser_") for step in self.steps for action in step)

    @property
    def events(self) -> list[str]:
        """The causes of its ``event`` steps (``proxy-reload``...), in order."""
        return [step["event"]["cause"] for step in self.steps if "event" in step]

    @property
    def environment(self) -> list[str]:
        """The environment variables its ``{env:NAME}`` placeholders name, in order."""
        return list(dict.fromkeys(ENV_PLACEHOLDER.findall(" ".join(_strings(self.steps)))))

    @property
    def uses_faults(self) -> bool:
        """True if a step puts a network fault on a hop (lab/faults.py)."""
        return any("fault" in step for step in self.steps)

    @property
    def exclusive(self) -> bool:
        """True if the runner must give this scenario its topology to itself: a TCP probe carries
        no correlation id, and a fault on a hop's port would hit every other cell on that hop."""
        return (
            self.correlate == "exclusive"
            or any("tcp_probe" in step for step in self.steps)
            or self.uses_faults
        )


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def environment_values(scenarios: list[Scenario], environ: Mapping[str, str]) -> dict[str, str]:
    """The value of every environment variable the scenarios' ``{env:NAME}`` name.

    Raises ScenarioError at the first scenario naming one that is not set."""
    values = {}
    for scenario in scenarios:
        for name in scenario.environment:
            if name not in environ:
                file_name, _, line = scenario.source.rpartition(":")
                raise ScenarioError(
                    file_name,
                    int(line),
                    f"{scenario.id}: {{env:{name}}} names the environment variable {name}, which is not set",
                )
            values[name] = environ[name]
    return values


PROBE_SERVER_STEPS = {"command", "event"}
"""Steps that rely on the probe server: its commands, and its echo of the event step's numbered
messages (and its restartable listeners)."""
PROBE_SERVER_OPTIONS = {"server_ping"}


def _uses_probe_server(steps: list[dict[str, Any]]) -> bool:
    """Whether a step talks to the lab's probe server itself: a JSON command, or a connect that
    sets the server's pings."""
    for step in steps:
        ((action, argument),) = step.items()
        if action in PROBE_SERVER_STEPS:
            return True
        if isinstance(argument, dict) and PROBE_SERVER_OPTIONS & argument.keys():
            return True
    return False


def short_code(scenario_id: str) -> str:
    """A column code for a scenario without one: the initials of its id's words, or its first
    letters (``http10-upgrade`` -> ``hu``, ``subprotocol`` -> ``subpr``)."""
    words = scenario_id.split("-")
    return "".join(word[0] for word in words)[:5] if len(words) > 1 else scenario_id[:5]


@dataclass
class Suite:
    name: str
    path: Path
    description: str = ""
    default: bool = True
    scenarios: list[Scenario] = field(default_factory=list)


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("wslab.schemas").joinpath("scenarios.schema.json").read_text()
    return json.loads(text)


def load_suite(path: Path | str) -> Suite:
    """Load and validate one scenario file."""
    path = Path(path)
    try:
        document = load_yaml(path)
    except YamlInputError as error:
        raise ScenarioError(error.path, error.line, error.message) from None
    check_against(document, _schema(), ScenarioError)
    data, lines = document.data, document.lines
    suite = Suite(
        name=data["suite"],
        path=path,
        description=data.get("description", ""),
        default=data.get("default", True),
    )
    for index, raw in enumerate(data["scenarios"]):
        _check_step_order(document, index, raw["steps"])
        uses_probe_server = _uses_probe_server(raw["steps"])
        if uses_probe_server and raw.get("needs_probe_server") is False:
            raise ScenarioError(
                path,
                document.line_of(("scenarios", index, "needs_probe_server")) or lines[("scenarios", index)],
                f"{raw['id']}: needs_probe_server is false, but its steps talk to the lab's probe "
                "server (a command, server_ping)",
            )
        if any("event" in step for step in raw["steps"]) and raw.get("correlate") != "exclusive":
            raise ScenarioError(
                path,
                document.line_of(("scenarios", index, "correlate")) or lines[("scenarios", index)],
                f"{raw['id']}: an event step (a proxy reload, a server restart) hits every connection on "
                "its topology, so the scenario must say correlate: exclusive",
            )
        suite.scenarios.append(
            Scenario(
                id=raw["id"],
                suite=suite.name,
                title=raw["title"],
                steps=raw["steps"],
                expect=raw["expect"],
                description=raw.get("description", ""),
                models=raw.get("models", ""),
                correlate=raw.get("correlate", "query"),
                timeout=raw.get("timeout"),
                source=f"{path}:{lines[('scenarios', index)]}",
                tier=raw.get("tier", "deployment"),
                depends_on=tuple(raw.get("depends_on", [])),
                short=raw.get("short") or short_code(raw["id"]),
                needs_probe_server=raw.get("needs_probe_server", uses_probe_server),
                depends_on_lines=tuple(
                    document.line_of(("scenarios", index, "depends_on", number)) or 0
                    for number in range(len(raw.get("depends_on", [])))
                ),
            )
        )
    return suite


def _check_step_order(document: Document, index: int, steps: list[dict]) -> None:
    """Reject step sequences that cannot run, such as a send before any connect."""
    open_kind = None
    for number, step in enumerate(steps):
        (action,) = step
        where = ("scenarios", index, "steps", number)
        if action in OPENING_STEPS:
            open_kind = action
        elif action in FAULT_STEPS:
            continue
        elif open_kind == "browser_connect" and action not in PAGE_STEPS:
            raise ScenarioError(
                document.path,
                document.line_of(where),
                f"{where_in(where)}: '{action}' needs the lab's own WebSocket client; after "
                "'browser_connect' only an 'event' step acts on the page's WebSocket",
            )
        elif open_kind not in ("connect", "browser_connect"):
            raise ScenarioError(
                document.path,
                document.line_of(where),
                f"{where_in(where)}: '{action}' needs an open WebSocket; put a 'connect' step before it",
            )


def load_scenarios(paths: list[Path | str] | None = None, suites: list[str] | None = None) -> list[Scenario]:
    """Load scenarios from files or folders (default: the scenarios/ folder).

    From a folder, suites marked ``default: false`` are left out unless named in
    ``suites``; a file named explicitly is always loaded. With ``suites``, only
    those suites are kept. Scenario ids must be unique across everything loaded,
    and every ``depends_on`` must name a scenario (of these files, or a shipped
    one) without a cycle.
    """
    entries = [Path(p) for p in (paths if paths is not None else [SCENARIO_DIR])]
    files: list[tuple[Path, bool]] = []
    for entry in entries:
        if entry.is_dir():
            files.extend((file, False) for file in sorted(entry.glob("*.yaml")))
        else:
            files.append((entry, True))
    if not files:
        where = ", ".join(str(entry) for entry in entries) or "(no path given)"
        raise ScenarioError(where, None, "no scenario files (*.yaml) here")
    loaded = [(load_suite(file), named) for file, named in files]
    known = {suite.name for suite, _ in loaded}
    unknown = sorted(set(suites or []) - known)
    if unknown:
        raise ScenarioError(
            entries[0], None, f"no suite named {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    everything = [scenario for suite, _ in loaded for scenario in suite.scenarios]
    shipped = [] if paths is None else _shipped_ids()
    _check_dependencies(everything, {s.id for s in everything} | set(shipped))
    seen: dict[str, str] = {}
    scenarios = []
    for suite, named in loaded:
        wanted = suite.name in suites if suites else named or suite.default
        if not wanted:
            continue
        for scenario in suite.scenarios:
            if scenario.id in seen:
                file_name, _, line = scenario.source.rpartition(":")
                raise ScenarioError(
                    file_name,
                    int(line),
                    f"scenario id '{scenario.id}' is already used at {seen[scenario.id]}",
                )
            seen[scenario.id] = scenario.source
            scenarios.append(scenario)
    return scenarios


def _shipped_ids() -> list[str]:
    """The ids of the shipped scenarios, which a user's file may depend on."""
    return [s.id for file in sorted(SCENARIO_DIR.glob("*.yaml")) for s in load_suite(file).scenarios]


def _check_dependencies(scenarios: list[Scenario], known: set[str]) -> None:
    """Every depends_on names a known scenario, and no scenario depends on itself, even through others."""
    needs = {scenario.id: scenario.depends_on for scenario in scenarios}
    for scenario in scenarios:
        file_name = scenario.source.rpartition(":")[0]
        for dependency, line in zip(scenario.depends_on, scenario.depends_on_lines, strict=True):
            if dependency not in known:
                raise ScenarioError(file_name, line or None, f"depends_on '{dependency}': no such scenario")
            chain = _chain_back(dependency, scenario.id, needs)
            if chain is not None:
                loop = " -> ".join([scenario.id, *chain])
                raise ScenarioError(file_name, line or None, f"depends_on makes a cycle: {loop}")


def _chain_back(start: str, target: str, needs: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The dependency path from ``start`` back to ``target``, if there is one (iterative, no recursion)."""
    stack, came_from = [start], {start: ""}
    while stack:
        current = stack.pop()
        if current == target:
            path = [current]
            while came_from[path[-1]]:
                path.append(came_from[path[-1]])
            return list(reversed(path))
        for following in needs.get(current, ()):
            if following not in came_from:
                came_from[following] = current
                stack.append(following)
    return None
