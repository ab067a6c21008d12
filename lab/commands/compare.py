"""`wslab compare`: Replit's deployment options beside Cloud Run and nginx, and which to pick."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from .. import faults, results
from ..backends import StackOptions
from ..backends.local import LocalBackend
from ..backends.remote import RemoteBackend
from ..deployment_choice import (
    CLIENT_SUITE,
    COMPARED,
    FAULTS_SUITE,
    LIFECYCLE_ROWS,
    LIFECYCLE_SUITE,
    TIMEOUTS_SUITE,
    TRAFFIC_SUITE,
    compare,
)
from ..errors import EXIT_OK
from ..records import Run
from ..reports import deployment_choice as page
from ..runner import RunOptions, run
from ..scenario import Scenario, load_scenarios
from ..topology import Topology, select_topologies
from .common import (
    backend_for,
    check_backend_options,
    check_output_paths,
    probe_options,
    run_folder,
    show_page,
    until_signal,
    write_outputs,
)


def compare_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(list(COMPARED))
    events = (LIFECYCLE_SUITE, FAULTS_SUITE)
    suites = [CLIENT_SUITE, TRAFFIC_SUITE, TIMEOUTS_SUITE, *events]
    scenarios = [s for s in load_scenarios(suites=suites) if s.suite not in events or s.id in LIFECYCLE_ROWS]
    if not args.target:
        # Before any thread: the stall's rules live in the lab's own network namespace (as for
        # `wslab run`); a --target is reached over the host's network, so then the row is empty.
        faults.isolate()
    else:
        scenarios = [s for s in scenarios if not s.uses_faults]
    check_output_paths({"markdown": args.markdown, "json": args.json})
    if args.target:
        check_backend_options(args)
    with run_folder(args) as run_dir:
        result, fixed_result, *remote = until_signal(_compare(args, run_dir, topologies, scenarios))
    result = results.merge([result, *remote])
    extra = tuple(t.name for t in result.topologies[len(topologies) :])
    said = write_outputs({"json": (args.json, results.dump(result))}) if args.json else []
    show_page(page.render_markdown(compare(result, fixed_result, extra)), args, console)
    for line in said or []:
        console.print(line, markup=False, highlight=False)
    return EXIT_OK


async def _compare(
    args: argparse.Namespace, run_dir: Path, topologies: list[Topology], scenarios: list[Scenario]
) -> list[Run]:
    """The options as they are and with the process_request fix (and a real --target), at once."""
    plain, fixed = (
        LocalBackend(run_dir / name, StackOptions(**{**vars(probe_options(args)), "answer_plain_http": ok}))
        for name, ok in (("as-is", False), ("fixed", True))
    )
    options = RunOptions(redact=args.redact)
    # The process_request fix changes nothing a reload, a restart or a stall does: measured once.
    unchanged = [s for s in scenarios if s.suite not in (LIFECYCLE_SUITE, FAULTS_SUITE)]
    runs = [run(plain, topologies, scenarios, options), run(fixed, topologies, unchanged, options)]
    if args.target:
        # A real platform's limits cannot be accelerated: its timeouts rows stay empty here
        # (`wslab run --target URL --suite timeouts --faithful` measures them).
        target = backend_for(args, run_dir)
        assert isinstance(target, RemoteBackend)
        target_scenarios = [
            s for s in scenarios if s.suite not in (TIMEOUTS_SUITE, LIFECYCLE_SUITE, FAULTS_SUITE)
        ]
        runs.append(run(target, [target.topology], target_scenarios, options))
    return list(await asyncio.gather(*runs))
