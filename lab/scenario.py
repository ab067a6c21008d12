"""Scenario files: YAML suites validated against a JSON Schema, with file:line errors.

A scenario is data: the client's steps and the expectations on what comes of
them. Loading never runs anything; a bad file raises :class:`ScenarioError`
naming the file, the line and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .errors import ScenarioError
from .paths import SCENARIO_DIR
from .safe_yaml import Document, YamlInputError, load_yaml

OPENING_STEPS = ("connect", "raw", "tcp_probe", "browser_visit", "browser_websocket")
"""Steps that open the cell's connection; only after ``connect`` is a WebSocket left open."""


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

    @property
    def duration(self) -> float:
        """Faithful seconds the scenario spends waiting on purpose (idle and hold steps)."""
        total = 0.0
        for step in self.steps:
            total += float(step.get("idle", 0)) + float(step.get("hold", {}).get("seconds", 0))
        return total

    @property
    def uses_browser(self) -> bool:
        """True if a step drives real Chromium (``browser_visit``, ``browser_websocket``)."""
        return any(action.startswith("browser_") for step in self.steps for action in step)

    @property
    def exclusive(self) -> bool:
        """True if the runner must give this scenario its topology to itself."""
        return self.correlate == "exclusive" or any("tcp_probe" in step for step in self.steps)


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


def _where(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "top level"


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.context:
        error = jsonschema.exceptions.best_match(error.context)
    if error.validator in ("minProperties", "maxProperties") and "steps" in error.absolute_path:
        return "a step has exactly one action (connect, raw, tcp_probe, send, ...)"
    return error.message


def _culprit(error: jsonschema.ValidationError, where: tuple) -> tuple:
    """The path whose line best shows the error: an unexpected key's own line, if any."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = [key for key in error.instance if key not in error.schema.get("properties", {})]
        if extra:
            return (*where, extra[0])
    return where


def load_suite(path: Path | str) -> Suite:
    """Load and validate one scenario file."""
    path = Path(path)
    try:
        document = load_yaml(path)
    except YamlInputError as error:
        raise ScenarioError(error.path, error.line, error.message) from None
    data, lines = document.data, document.lines
    errors = sorted(
        jsonschema.Draft202012Validator(_schema()).iter_errors(data),
        key=lambda error: document.line_of(error.absolute_path) or 0,
    )
    if errors:
        error = errors[0]
        where = tuple(error.absolute_path)
        line = document.line_of(_culprit(error, where))
        raise ScenarioError(path, line, f"{_where(where)}: {_schema_message(error)}")
    suite = Suite(
        name=data["suite"],
        path=path,
        description=data.get("description", ""),
        default=data.get("default", True),
    )
    for index, raw in enumerate(data["scenarios"]):
        _check_step_order(document, index, raw["steps"])
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
        elif open_kind != "connect":
            raise ScenarioError(
                document.path,
                document.line_of(where),
                f"{_where(where)}: '{action}' needs an open WebSocket; put a 'connect' step before it",
            )


def load_scenarios(paths: list[Path | str] | None = None, suites: list[str] | None = None) -> list[Scenario]:
    """Load scenarios from files or folders (default: the scenarios/ folder).

    From a folder, suites marked ``default: false`` are left out unless named in
    ``suites``; a file named explicitly is always loaded. With ``suites``, only
    those suites are kept. Scenario ids must be unique across everything loaded.
    """
    files: list[tuple[Path, bool]] = []
    for entry in [Path(p) for p in (paths or [SCENARIO_DIR])]:
        if entry.is_dir():
            files.extend((file, False) for file in sorted(entry.glob("*.yaml")))
        else:
            files.append((entry, True))
    if not files:
        raise ScenarioError(paths[0] if paths else SCENARIO_DIR, None, "no scenario files")
    loaded = [(load_suite(file), named) for file, named in files]
    known = {suite.name for suite, _ in loaded}
    unknown = sorted(set(suites or []) - known)
    if unknown:
        raise ScenarioError(
            SCENARIO_DIR, None, f"no suite named {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
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
