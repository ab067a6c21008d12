"""`wslab explain`: a server's log line, read back to every cause that produces it."""

from __future__ import annotations

import argparse

from rich.console import Console

from .. import results
from ..backends.local import LocalBackend
from ..errors import EXIT_OK
from ..explain import explain
from ..reports import explain as page
from ..runner import RunOptions
from ..scenario import load_scenarios
from .common import make_run_dir, probe_options, run_with_progress, select_topologies, show_page


async def explain_command(args: argparse.Namespace, console: Console) -> int:
    if args.results:
        result = results.merge([results.load(path) for path in args.results])
    else:
        topologies = select_topologies(args.topology)
        scenarios = load_scenarios()
        run_dir, temporary = make_run_dir(args)
        backend = LocalBackend(run_dir, probe_options(args))
        result = await run_with_progress(
            backend,
            topologies,
            scenarios,
            RunOptions(redact=args.redact),
            scratch=run_dir if temporary else None,
        )
    show_page(page.render_markdown(explain(result, args.log)), args, console)
    return EXIT_OK
