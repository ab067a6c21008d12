"""`wslab run`, and the saved runs: `wslab report`, `wslab diff`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import results
from ..backends.remote import RemoteBackend
from ..errors import EXIT_FAILED, EXIT_LAB, EXIT_OK, UsageError
from ..records import Outcome, Run
from ..reports import terminal
from ..reports.html import render_html
from ..reports.junit import render_junit
from ..reports.markdown import render_markdown
from ..run_diff import changes, regressions
from ..runner import RunOptions
from ..scenario import load_scenarios
from .common import (
    backend_for,
    make_run_dir,
    run_with_progress,
    select_topologies,
)


async def run_command(args: argparse.Namespace, console: Console) -> int:
    topologies = [] if args.target else select_topologies(args.topology)
    scenarios = load_scenarios(args.scenarios, args.suite)
    if args.scenario:
        scenarios = [s for s in scenarios if s.id in args.scenario]
        if not scenarios:
            raise UsageError(f"no scenario matches {', '.join(args.scenario)}")
    run_dir, temporary = make_run_dir(args)
    backend = backend_for(args, run_dir)
    if isinstance(backend, RemoteBackend):
        topologies = [backend.topology]
    options = RunOptions(concurrency=args.concurrency, step_timeout=args.step_timeout, redact=args.redact)
    baseline = results.load(args.baseline) if args.baseline else None
    result = await run_with_progress(backend, topologies, scenarios, options, run_dir if temporary else None)
    terminal.render(result, console)
    _write_outputs(result, args, console)
    if not temporary and args.backend == "local":
        console.print(f"logs and rendered configs: {run_dir}")
    return _verdict(result, baseline, console)


RENDERERS = {
    "json": results.dump,
    "html": render_html,
    "markdown": render_markdown,
    "junit": render_junit,
}


def _write_outputs(result: Run, args: argparse.Namespace, console: Console) -> None:
    for name, render in RENDERERS.items():
        path = getattr(args, name, None)
        if path:
            Path(path).write_text(render(result))
            console.print(f"{name}: {path}")


def _verdict(result: Run, baseline: Run | None, console: Console) -> int:
    """0 all met (or no regression), 1 some cell did not, 3 the lab failed to run some cell."""
    if baseline is None:
        failing = [cell.outcome for cell in result.cells if cell.outcome.failing]
    else:
        found = regressions(baseline, result)
        for change in found:
            console.print(
                f"regression: {change.topology}/{change.scenario}: {change.before} -> {change.after} "
                f"({change.after_summary})",
                markup=False,
            )
        console.print(f"{len(found)} regressions against the baseline")
        failing = [change.after for change in found]
    if Outcome.ERROR in failing:
        return EXIT_LAB
    return EXIT_FAILED if failing else EXIT_OK


async def report_command(args: argparse.Namespace, console: Console) -> int:
    result = results.merge([results.load(path) for path in args.results])
    if args.format == "terminal":
        terminal.render(result, console)
        return EXIT_OK
    text = RENDERERS[args.format](result)
    if args.output:
        Path(args.output).write_text(text)
        console.print(f"{args.format}: {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def diff_command(args: argparse.Namespace, console: Console) -> int:
    old, new = results.load(args.old), results.load(args.new)
    found = changes(old, new)
    table = Table("topology", "scenario", "before", "after", "", header_style="bold")
    for change in found:
        table.add_row(
            change.topology,
            change.scenario,
            f"{change.before or 'absent'} {change.before_summary}",
            f"{change.after} {change.after_summary}",
            "regression" if change.regression else "",
            style="red" if change.regression else None,
        )
    console.print(table if found else "no cell changed")
    regressed = sum(change.regression for change in found)
    console.print(f"{len(found)} cells changed, {regressed} regressions")
    return EXIT_FAILED if regressed else EXIT_OK
