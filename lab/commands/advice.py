"""`wslab compare` and `wslab explain`: runs turned into a decision and into causes."""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from ..backends import StackOptions
from ..backends.local import LocalBackend
from ..backends.remote import RemoteBackend
from ..compare import CLIENT_SUITE, COMPARED, TIMEOUTS_SUITE, TRAFFIC_SUITE, compare
from ..explain import explain
from ..reports import compare as compare_page
from ..reports import explain as explain_page
from ..results import merge
from ..runner import run
from ..scenario import load_scenarios
from .common import (
    EXIT_OK,
    backend_for,
    load_results,
    make_run_dir,
    probe_options,
    run_with_progress,
    select_topologies,
)


async def compare_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(list(COMPARED))
    scenarios = load_scenarios(suites=[CLIENT_SUITE, TRAFFIC_SUITE, TIMEOUTS_SUITE])
    run_dir, temporary = make_run_dir(args)
    plain, fixed = (
        LocalBackend(run_dir / name, StackOptions(**{**vars(probe_options(args)), "answer_plain_http": ok}))
        for name, ok in (("as-is", False), ("fixed", True))
    )
    runs = [run(plain, topologies, scenarios), run(fixed, topologies, scenarios)]
    if args.target:
        # A real platform's limits cannot be accelerated: its timeouts rows stay empty here
        # (`wslab run --target URL --suite timeouts --faithful` measures them).
        target = backend_for(args, run_dir)
        assert isinstance(target, RemoteBackend)
        target_scenarios = [s for s in scenarios if s.suite != TIMEOUTS_SUITE]
        runs.append(run(target, [target.topology], target_scenarios))
    try:
        result, fixed_result, *remote = await asyncio.gather(*runs)
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    result = merge([result, *remote])
    extra = tuple(t["name"] for t in result.topologies[len(topologies) :])
    _show_page(compare_page.render_markdown(compare(result, fixed_result, extra)), args, console)
    if args.json:
        result.write_json(args.json)
    return EXIT_OK


async def explain_command(args: argparse.Namespace, console: Console) -> int:
    if args.results:
        result = merge([load_results(path) for path in args.results])
    else:
        topologies = select_topologies(args.topology)
        scenarios = load_scenarios()
        run_dir, temporary = make_run_dir(args)
        backend = LocalBackend(run_dir, probe_options(args))
        result = await run_with_progress(
            backend, topologies, scenarios, scratch=run_dir if temporary else None
        )
    _show_page(explain_page.render_markdown(explain(result, args.log)), args, console)
    return EXIT_OK


def _show_page(page: str, args: argparse.Namespace, console: Console) -> None:
    """A Markdown answer on the terminal, and in ``--markdown PATH`` if asked."""
    console.print(Markdown(page))
    if args.markdown:
        Path(args.markdown).write_text(page)
        console.print(f"written: {args.markdown}")
