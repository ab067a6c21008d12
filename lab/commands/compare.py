"""`wslab compare`: Replit's deployment options beside Cloud Run and nginx, and which to pick."""

from __future__ import annotations

import argparse
import asyncio
import shutil

from rich.console import Console

from .. import results
from ..backends import StackOptions
from ..backends.local import LocalBackend
from ..backends.remote import RemoteBackend
from ..deployment_choice import CLIENT_SUITE, COMPARED, TIMEOUTS_SUITE, TRAFFIC_SUITE, compare
from ..errors import EXIT_OK
from ..reports import deployment_choice as page
from ..runner import RunOptions, run
from ..scenario import load_scenarios
from .common import backend_for, make_run_dir, probe_options, select_topologies, show_page


async def compare_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(list(COMPARED))
    scenarios = load_scenarios(suites=[CLIENT_SUITE, TRAFFIC_SUITE, TIMEOUTS_SUITE])
    run_dir, temporary = make_run_dir(args)
    plain, fixed = (
        LocalBackend(run_dir / name, StackOptions(**{**vars(probe_options(args)), "answer_plain_http": ok}))
        for name, ok in (("as-is", False), ("fixed", True))
    )
    options = RunOptions(redact=args.redact)
    runs = [run(plain, topologies, scenarios, options), run(fixed, topologies, scenarios, options)]
    if args.target:
        # A real platform's limits cannot be accelerated: its timeouts rows stay empty here
        # (`wslab run --target URL --suite timeouts --faithful` measures them).
        target = backend_for(args, run_dir)
        assert isinstance(target, RemoteBackend)
        target_scenarios = [s for s in scenarios if s.suite != TIMEOUTS_SUITE]
        runs.append(run(target, [target.topology], target_scenarios, options))
    try:
        result, fixed_result, *remote = await asyncio.gather(*runs)
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    result = results.merge([result, *remote])
    extra = tuple(t.name for t in result.topologies[len(topologies) :])
    show_page(page.render_markdown(compare(result, fixed_result, extra)), args, console)
    if args.json:
        results.write(result, args.json)
    return EXIT_OK
