"""`wslab compose-file`, `wslab list`, `wslab validate`: the project's own files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from .. import stack
from ..paths import PROJECT_ROOT, SCENARIO_DIR
from ..scenario import load_scenarios
from ..topology import load_topologies
from .common import (
    EXIT_FAILED,
    EXIT_OK,
)


async def compose_file_command(args: argparse.Namespace, console: Console) -> int:
    topologies = list(load_topologies().values())
    files = {
        stack.COMPOSE_FILE: stack.render(stack.compose_document(topologies)),
        stack.OFFLINE_FILE: stack.render(stack.offline_document(topologies), stack.OFFLINE_HEADER),
    }
    stale = (
        [name for name, text in files.items() if (PROJECT_ROOT / name).read_text() != text]
        if args.check
        else []
    )
    if args.check:
        for name in stale:
            print(f"wslab: {name} is out of date: run 'wslab compose-file --write'", file=sys.stderr)
        return EXIT_FAILED if stale else EXIT_OK
    for name, text in files.items():
        if args.write:
            (PROJECT_ROOT / name).write_text(text)
            console.print(f"wrote {name}")
        else:
            sys.stdout.write(text)
    return EXIT_OK


async def list_command(args: argparse.Namespace, console: Console) -> int:
    from ..proxies import REGISTRY

    console.print("[bold]topologies[/bold] (compose/<name>/)")
    for topology in load_topologies().values():
        available = topology.direct or REGISTRY[topology.proxy].locate() is not None
        state = "" if available else f"  [unavailable: {REGISTRY[topology.proxy].install_hint}]"
        console.print(f"  {topology.name:18} {topology.title}{state}", highlight=False)
    console.print("[bold]scenarios[/bold]")
    for scenario in load_scenarios(args.scenarios):
        console.print(f"  {scenario.id:28} {scenario.title}  ({scenario.source})", highlight=False)
    return EXIT_OK


async def validate_command(args: argparse.Namespace, console: Console) -> int:
    entries = [Path(p) for p in args.paths] or [SCENARIO_DIR]
    files = [f for e in entries for f in (sorted(e.glob("*.yaml")) if e.is_dir() else [e])]
    scenarios = load_scenarios(files)
    console.print(f"{len(scenarios)} scenarios OK")
    return EXIT_OK
