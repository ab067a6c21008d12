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
from ..topology import select_topologies
from .common import (
    check_output_paths,
    probe_options,
    run_folder,
    run_with_progress,
    show_page,
    until_signal,
)


def explain_command(args: argparse.Namespace, console: Console) -> int:
    check_output_paths({"markdown": args.markdown})
    if args.results:
        result = results.merge([results.load(path) for path in args.results])
    else:
        topologies = select_topologies(args.topology)
        scenarios = load_scenarios()
        with run_folder(args) as run_dir:
            backend = LocalBackend(run_dir, probe_options(args))
            result = until_signal(
                run_with_progress(backend, topologies, scenarios, RunOptions(redact=args.redact))
            )
    show_page(page.render_markdown(explain(result, args.log, args.websockets)), args, console)
    return EXIT_OK
