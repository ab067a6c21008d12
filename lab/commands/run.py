"""`wslab run`, and the saved runs: `wslab report`, `wslab diff`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import durations, faults, lab_lock, results, warm
from ..backends.remote import RemoteBackend
from ..errors import EXIT_FAILED, EXIT_LAB, EXIT_OK, UsageError
from ..paths import state_path
from ..records import Outcome, Run
from ..reports import terminal
from ..reports.safe_text import printable, terminal_text
from ..run_diff import changes, regressions
from ..runner import RunOptions
from ..scenario import environment_values, load_scenarios
from ..topology import Topology, select_topologies
from ..warm import LabState, WarmBackend
from .common import (
    STDOUT,
    FilesAside,
    app_spec,
    backend_for,
    check_backend_options,
    check_output_paths,
    probe_options,
    run_folder,
    run_with_progress,
    until_signal,
    write_outputs,
)


def run_command(args: argparse.Namespace, console: Console) -> int:
    topologies = [] if args.target else select_topologies(args.topology)
    scenarios = load_scenarios(args.scenarios, args.suite)
    if args.scenario:
        scenarios = [s for s in scenarios if s.id in args.scenario]
        if not scenarios:
            raise UsageError(f"no scenario matches {', '.join(args.scenario)}")
    outputs = {name: getattr(args, name) for name in RENDERERS}
    check_output_paths(outputs)
    check_backend_options(args)
    baseline = results.load(args.baseline) if args.baseline else None
    options = RunOptions(
        concurrency=args.concurrency,
        step_timeout=args.step_timeout,
        redact=args.redact,
        environment=environment_values(scenarios, os.environ),
        expected=durations.load(),
    )
    if any(s.uses_faults for s in scenarios) and args.backend == "local" and not args.target:
        # Before any thread or process: the lab moves into a private network namespace of its
        # own, where the faults' rules are made and die with it (lab/faults.py). If it cannot,
        # the fault cells say why ("not measured"); nothing touches the host's network.
        faults.isolate()
        args.fresh = True  # a warm lab's proxies run outside this namespace
    if any(s.events for s in scenarios):
        args.fresh = True  # lifecycle events restart, redeploy or scale the lab's own probe server
    kept = _warm_lab(args, topologies)
    if kept is not None:
        # A warm run starts nothing: it needs no folder, so a killed one leaves none behind.
        warm_run = run_with_progress(WarmBackend(kept), topologies, scenarios, options, args.progress)
        result = until_signal(warm_run)
    else:
        with run_folder(args) as run_dir:
            backend = backend_for(args, run_dir)
            if isinstance(backend, RemoteBackend):
                topologies = [backend.topology]
            result = until_signal(run_with_progress(backend, topologies, scenarios, options, args.progress))
    result.options.warm_lab = kept is not None
    durations.remember((durations.key(c.topology, c.scenario), c.duration) for c in result.cells)
    files = {name: path for name, path in outputs.items() if path and path != STDOUT}
    # The files are written beside the matrix, and waited for: a closed pipe (| head) loses none.
    with FilesAside(files, lambda name: render(name, result)) as aside:
        to_stdout = {name: (STDOUT, render(name, result)) for name, path in outputs.items() if path == STDOUT}
        on_stdout = write_outputs(to_stdout)
        # With --json - the results own standard output; the matrix goes to standard error.
        screen = Console(file=sys.stderr, width=console.width) if to_stdout else console
        terminal.render(result, screen, verbose=args.verbose)
    written = aside.lines if on_stdout is not None else None
    for line in written or []:
        screen.print(line, markup=False, highlight=False)
    if args.run_dir and args.backend == "local":
        screen.print(f"logs and rendered configs: {Path(args.run_dir).resolve()}", markup=False)
    verdict = _verdict(result, baseline, screen)
    return verdict if written is not None else max(verdict, EXIT_LAB)


def _warm_lab(args: argparse.Namespace, topologies: list[Topology]) -> LabState | None:
    """The running ``wslab up`` to play the cells against, if one runs these topologies with
    these options; if one runs but does not match, one line on stderr says why."""
    if args.fresh or args.target or args.backend != "local" or args.run_dir:
        return None
    kept = warm.running(state_path())
    if kept is None:
        if (holder := lab_lock.holder(state_path())) is not None:
            doing = "does not answer" if warm.read_state(state_path()) else "is still starting"
            lab = f"the warm lab (wslab up, pid {holder.pid})"
            print(f"wslab: not using {lab}: it {doing}; starting new topologies", file=sys.stderr)
        return None
    reason = warm.mismatch(kept, topologies, probe_options(args), app_spec(args))
    if reason is None:
        return kept
    print(
        printable(f"wslab: not using the warm lab (wslab up): {reason}; starting new topologies"),
        file=sys.stderr,
    )
    return None


RENDERERS = {
    "json": "wslab.results:dump",
    "html": "wslab.reports.html:render_html",
    "markdown": "wslab.reports.markdown:render_markdown",
    "junit": "wslab.reports.junit:render_junit",
}
"""Each output format's renderer, as module:function: a run imports only the ones it writes."""


def render(name: str, result: Run) -> str:
    """``result`` in output format ``name`` (a key of RENDERERS)."""
    module, function = RENDERERS[name].split(":")
    return str(getattr(importlib.import_module(module), function)(result))


def _verdict(result: Run, baseline: Run | None, console: Console) -> int:
    """0 all met (or no regression), 1 some cell did not, 3 the lab failed to run some cell."""
    if baseline is None:
        failing = [cell.outcome for cell in result.cells if cell.outcome.failing]
    else:
        found = regressions(baseline, result)
        for change in found:
            console.print(
                printable(
                    f"regression: {change.topology}/{change.scenario}: {change.before} -> {change.after} "
                    f"({change.after_summary})"
                ),
                markup=False,
                highlight=False,
            )
        console.print(f"{len(found)} regressions against the baseline")
        failing = [change.after for change in found]
    if Outcome.ERROR in failing:
        return EXIT_LAB
    return EXIT_FAILED if failing else EXIT_OK


def report_command(args: argparse.Namespace, console: Console) -> int:
    result = results.merge([results.load(path) for path in args.results])
    if args.format == "terminal":
        terminal.render(result, console, verbose=args.verbose)
        return EXIT_OK
    output = args.output or STDOUT
    check_output_paths({args.format: output})
    said = write_outputs({args.format: (output, render(args.format, result))})
    for line in said or []:
        console.print(line, markup=False, highlight=False)
    return EXIT_OK if said is not None else EXIT_LAB


def diff_command(args: argparse.Namespace, console: Console) -> int:
    old, new = results.load(args.old), results.load(args.new)
    found = changes(old, new)
    table = Table("topology", "scenario", "before", "after", "", header_style="bold")
    for change in found:
        table.add_row(
            terminal_text(change.topology),
            terminal_text(change.scenario),
            terminal_text(f"{change.before or 'absent'} {change.before_summary}"),
            terminal_text(f"{change.after} {change.after_summary}"),
            "regression" if change.regression else "",
            style="red" if change.regression else None,
        )
    console.print(table if found else "no cell changed")
    regressed = sum(change.regression for change in found)
    console.print(f"{len(found)} cells changed, {regressed} regressions")
    return EXIT_FAILED if regressed else EXIT_OK
