"""`wslab compose-file`, `wslab schema`, `wslab list`, `wslab validate`: the project's own files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from .. import compose_file, results
from ..errors import EXIT_FAILED, EXIT_OK
from ..paths import PACKAGE_DIR, PROJECT_ROOT, SCENARIO_DIR
from ..reports.safe_text import printable
from ..scenario import load_scenarios
from ..topology import load_topologies

RESULTS_SCHEMA = PACKAGE_DIR / "schemas" / "results.schema.json"


def _generated(files: dict[Path, str], args: argparse.Namespace, console: Console, command: str) -> int:
    """Print generated files, or ``--write`` them, or ``--check`` that they are current."""
    if args.check:
        stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"wslab: {path.name} is out of date: run 'wslab {command} --write'", file=sys.stderr)
        return EXIT_FAILED if stale else EXIT_OK
    for path, text in files.items():
        if args.write:
            path.write_text(text)
            console.print(f"wrote {path}")
        else:
            sys.stdout.write(text)
    return EXIT_OK


def compose_file_command(args: argparse.Namespace, console: Console) -> int:
    topologies = list(load_topologies().values())
    files = {
        PROJECT_ROOT / compose_file.COMPOSE_FILE: compose_file.render(
            compose_file.compose_document(topologies)
        ),
        PROJECT_ROOT / compose_file.OFFLINE_FILE: compose_file.render(
            compose_file.offline_document(topologies), compose_file.OFFLINE_HEADER
        ),
    }
    return _generated(files, args, console, "compose-file")


def schema_command(args: argparse.Namespace, console: Console) -> int:
    """The results format's JSON Schema, generated from the records."""
    return _generated(
        {RESULTS_SCHEMA: json.dumps(results.schema(), indent=2) + "\n"}, args, console, "schema"
    )


def list_command(args: argparse.Namespace, console: Console) -> int:
    from ..proxies import REGISTRY

    console.print("[bold]topologies[/bold] (compose/<name>/)")
    for topology in load_topologies().values():
        available = topology.direct or REGISTRY[topology.proxy].locate() is not None
        state = "" if available else f"  [unavailable: {REGISTRY[topology.proxy].install_hint}]"
        console.print(
            printable(f"  {topology.name:18} {topology.title}{state}"), markup=False, highlight=False
        )
    console.print("[bold]scenarios[/bold]")
    for scenario in load_scenarios(args.scenarios):
        line = printable(f"  {scenario.id:28} {scenario.title}  ({scenario.source})")
        console.print(line, markup=False, highlight=False)
    return EXIT_OK


def validate_command(args: argparse.Namespace, console: Console) -> int:
    # Every shipped file, non-default suites included, when no path is given.
    scenarios = load_scenarios(args.paths or sorted(SCENARIO_DIR.glob("*.yaml")))
    console.print(f"{len(scenarios)} scenarios OK")
    return EXIT_OK
