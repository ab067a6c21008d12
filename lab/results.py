"""Results at the edge: a :class:`~wslab.records.Run` written to JSON, read back, merged.

This is the only place runs become text and text becomes runs. Reading
treats the file as untrusted input: its size is bounded, its contents are
validated against the records (unknown fields refused), and any problem is
one :class:`~wslab.errors.ResultsError` naming the file and the first field
that is wrong.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ResultsError
from .records import FORMAT, Cell, Outcome, Run, ScenarioRecord, TopologyRecord

MAX_RESULTS_BYTES = 256 << 20
"""A results file larger than this is refused unread (a full default run is a few MB)."""


def dump(run: Run) -> str:
    """The run as the JSON document ``--json`` writes."""
    return run.model_dump_json(indent=2) + "\n"


def write(run: Run, path: Path | str) -> None:
    Path(path).write_text(dump(run))


def schema() -> dict[str, Any]:
    """The JSON Schema of a results document, generated from the records."""
    document = Run.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://wslab.invalid/schemas/results.schema.json",
        **document,
        "title": f"wslab results (format {FORMAT})",
    }


def _read_bounded(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise ResultsError(path, None, f"cannot read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ResultsError(path, None, "not a regular file")
        data = file.read(MAX_RESULTS_BYTES + 1)
    if len(data) > MAX_RESULTS_BYTES:
        raise ResultsError(path, None, f"larger than {MAX_RESULTS_BYTES} bytes")
    return data


def _first_problem(error: ValidationError) -> str:
    problem = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or "top level"
    return f"{where}: {problem['msg']}"


def load(path: Path | str) -> Run:
    """Read a results file written by ``--json``; raises ResultsError for anything else."""
    path = Path(path)
    data = _read_bounded(path)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ResultsError(path, None, f"not JSON ({str(error)[:200]})") from None
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ResultsError(
            path, None, "holds a lone surrogate (\\ud800-\\udfff), which no output can write"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ResultsError(path, None, f"not a {FORMAT} document (format: {str(found)[:80]!r})")
    try:
        return Run.model_validate(document)
    except ValidationError as error:
        raise ResultsError(path, None, f"not a wslab results file: {_first_problem(error)}") from None
    except RecursionError:
        raise ResultsError(path, None, "nested too deeply") from None


def merge(runs: list[Run]) -> Run:
    """Several runs as one matrix: a real deployment (--target) beside the emulations, say.

    A topology that appears in more than one run is renamed after its run
    (``name@N``); a scenario one run did not play is an unavailable cell there.
    """
    if len(runs) == 1:
        return runs[0]
    topologies: list[TopologyRecord] = []
    cells: list[Cell] = []
    scenarios: dict[str, ScenarioRecord] = {}
    proxies: dict[str, str] = {}
    seen: set[str] = set()
    for number, run in enumerate(runs, 1):
        renames = {}
        for topology in run.topologies:
            name = topology.name if topology.name not in seen else f"{topology.name}@{number}"
            seen.add(name)
            renames[topology.name] = name
            topologies.append(topology.model_copy(update={"name": name}))
        cells += [cell.model_copy(update={"topology": renames[cell.topology]}) for cell in run.cells]
        scenarios.update({scenario.id: scenario for scenario in run.scenarios})
        proxies.update(run.components.proxies)
    present = {(cell.topology, cell.scenario) for cell in cells}
    for topology in topologies:
        for scenario in scenarios.values():
            if (topology.name, scenario.id) not in present:
                cells.append(
                    Cell(
                        topology=topology.name,
                        scenario=scenario.id,
                        suite=scenario.suite,
                        outcome=Outcome.UNAVAILABLE,
                        summary="not run",
                        error="this scenario was not part of that run",
                    )
                )
    first = runs[0]
    servers = sorted({run.components.websockets_server for run in runs})
    return first.model_copy(
        update={
            "duration": round(sum(run.duration for run in runs), 3),
            "backend": "+".join(dict.fromkeys(run.backend for run in runs)),
            "components": first.components.model_copy(
                update={"websockets_server": ", ".join(servers), "proxies": proxies}
            ),
            "topologies": topologies,
            "scenarios": list(scenarios.values()),
            "cells": cells,
        }
    )
