"""What each ``wslab`` command does, once its arguments are parsed (see lab/cli.py).

Exit codes: 0 every cell met its expectation, 1 some cell did not, 2 usage or
configuration error (a bad scenario file, an unknown topology), 3 the lab
itself failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from . import stack
from .backends import READY, StackOptions
from .backends.compose import ComposeBackend
from .backends.local import LocalBackend
from .backends.remote import RemoteBackend
from .baseline import FAILING, changes, regressions
from .compare import CLIENT_SUITE, COMPARED, TIMEOUTS_SUITE, TRAFFIC_SUITE, compare
from .explain import explain
from .observations import ObservationFeed
from .paths import PROJECT_ROOT, SCENARIO_DIR
from .processes import wait_answering
from .reports import compare as compare_page
from .reports import explain as explain_page
from .reports import terminal
from .reports.html import render_html
from .reports.junit import render_junit
from .reports.markdown import render_markdown
from .reports.progress import RunProgress
from .results import ERROR, RunResult, merge
from .runner import Backend, RunOptions, run
from .scenario import load_scenarios
from .topology import Topology, load_topologies

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LAB, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    pass


def _select(names: list[str] | None) -> list[Topology]:
    topologies = load_topologies()
    if not names:
        return list(topologies.values())
    unknown = [name for name in names if name not in topologies]
    if unknown:
        raise UsageError(f"unknown topology {', '.join(unknown)} (known: {', '.join(topologies)})")
    return [topologies[name] for name in names]


def _probe_options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        websockets_version=args.websockets,
        answer_plain_http=args.answer_plain_http,
        ping_interval=args.ping_interval,
        time_scale=args.time_scale,
    )


def _run_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.run_dir:
        return Path(args.run_dir), False
    return Path(tempfile.mkdtemp(prefix="wslab-")), True


async def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    topologies = [] if args.target else _select(args.topology)
    scenarios = load_scenarios(args.scenarios, args.suite)
    if args.scenario:
        scenarios = [s for s in scenarios if s.id in args.scenario]
        if not scenarios:
            raise UsageError(f"no scenario matches {', '.join(args.scenario)}")
    run_dir, temporary = _run_dir(args)
    backend = _backend(args, run_dir)
    if isinstance(backend, RemoteBackend):
        topologies = [backend.topology]
    options = RunOptions(concurrency=args.concurrency, step_timeout=args.step_timeout)
    baseline = _load_results(args.baseline) if args.baseline else None
    progress = RunProgress(len(topologies) * len(scenarios), len(scenarios), sys.stderr)
    try:
        with progress:
            result = await run(
                backend, topologies, scenarios, options, on_cell=progress.finished, on_start=progress.started
            )
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    terminal.render(result, console)
    _write_outputs(result, args, console)
    if not temporary and args.backend == "local":
        console.print(f"logs and rendered configs: {run_dir}")
    return _verdict(result, baseline, console)


def _load_results(path: str) -> RunResult:
    try:
        return RunResult.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UsageError(f"{path}: not a wslab results file ({error})") from None


RENDERERS = {
    "json": lambda result: json.dumps(result.to_dict(), indent=2) + "\n",
    "html": render_html,
    "markdown": render_markdown,
    "junit": render_junit,
}


def _write_outputs(result: RunResult, args: argparse.Namespace, console: Console) -> None:
    for name, render in RENDERERS.items():
        path = getattr(args, name, None)
        if path:
            Path(path).write_text(render(result))
            console.print(f"{name}: {path}")


def _verdict(result: RunResult, baseline: RunResult | None, console: Console) -> int:
    """0 all met (or no regression), 1 some cell did not, 3 the lab failed to run some cell."""
    if baseline is None:
        failing = [cell.outcome for cell in result.cells if cell.outcome in FAILING]
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
    if ERROR in failing:
        return EXIT_LAB
    return EXIT_FAILED if failing else EXIT_OK


async def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    result = merge([_load_results(path) for path in args.results])
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


async def _cmd_diff(args: argparse.Namespace, console: Console) -> int:
    old, new = _load_results(args.old), _load_results(args.new)
    found = changes(old, new)
    table = Table("topology", "scenario", "before", "after", "", header_style="bold")
    for change in found:
        table.add_row(
            change.topology,
            change.scenario,
            f"{change.before} {change.before_summary}",
            f"{change.after} {change.after_summary}",
            "regression" if change.regression else "",
            style="red" if change.regression else None,
        )
    console.print(table if found else "no cell changed")
    regressed = sum(change.regression for change in found)
    console.print(f"{len(found)} cells changed, {regressed} regressions")
    return EXIT_FAILED if regressed else EXIT_OK


def _backend(args: argparse.Namespace, run_dir: Path) -> Backend:
    if args.target:
        token = args.token or os.environ.get("WSLAB_TOKEN")
        if not token:
            raise UsageError("--target needs the probe server's report token: --token or WSLAB_TOKEN")
        return RemoteBackend(
            args.target, token, _probe_options(args), insecure=args.insecure, ca_file=args.ca_file
        )
    if args.insecure or args.ca_file:
        raise UsageError("--insecure and --ca-file go with --target")
    if args.backend == "compose":
        return ComposeBackend(
            _probe_options(args), in_network=args.in_network, offline=args.offline, keep=args.keep
        )
    if args.in_network or args.keep:
        raise UsageError("--in-network and --keep go with --backend compose")
    if args.backend == "containers":
        from .backends.containers import ContainersBackend

        return ContainersBackend(_probe_options(args), offline=args.offline)
    if args.offline:
        raise UsageError("--offline goes with --backend compose or containers")
    return LocalBackend(run_dir, _probe_options(args))


def _upstream(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--upstream needs HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _describe_event(event: dict[str, Any]) -> str:
    if event["event"] == "hello":
        return f"probe server running websockets {event['websockets']}"
    if event["event"] == "closed":
        return f"[{event['listener']}] #{event['conn']} closed by {event['closed_by']} (code {event['code']})"
    request = event["request"]
    line = (
        f"{request['method']} {request['target']} {request['version']}"
        if request
        else (f"{event['bytes_received']} bytes, no request line")
    )
    response = event["response"]
    outcome = str(response["status"]) if response else "no response"
    error = f" — {event['error']['text']}" if event["error"] else ""
    headers = "".join(f"\n    {name}: {value}" for name, value in (request or {}).get("headers", []))
    streams = "".join(
        f"\n    HTTP/2 stream {stream['stream']}: {stream['method']} {stream['target']}"
        + "".join(f"\n      {name}: {value}" for name, value in stream["headers"] if not name.startswith(":"))
        for stream in event.get("http2_requests", [])
    )
    return f"[{event['listener']}] #{event['conn']} {line} -> {outcome}{error}{headers}{streams}"


async def _cmd_up(args: argparse.Namespace, console: Console) -> int:
    topologies = _select(args.topology)
    run_dir, temporary = _run_dir(args)
    backend = LocalBackend(run_dir, _probe_options(args), _upstream(args.upstream))
    try:
        deployments = await backend.start(topologies)
        server = args.upstream or f"websockets {backend.websockets_version}"
        console.print(f"{server} behind {len(topologies)} topologies; logs in {run_dir}")
        for deployment in deployments.values():
            if deployment.status == READY:
                assert deployment.endpoint is not None
                console.print(f"  {deployment.topology.name:18} {deployment.endpoint.ws_url()}")
            else:
                console.print(f"  {deployment.topology.name:18} {deployment.status}: {deployment.detail}")
        if args.upstream:
            console.print("Ctrl-C stops everything.")
        else:
            console.print("What the server receives is printed below. Ctrl-C stops everything.")
        backend.feed.subscribers.append(
            lambda event: console.print(_describe_event(event), markup=False, highlight=False)
        )
        await asyncio.Event().wait()
    finally:
        await backend.stop()
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    return EXIT_OK


async def _cmd_watch(args: argparse.Namespace, console: Console) -> int:
    feed = ObservationFeed()
    feed.subscribers.append(
        lambda event: console.print(_describe_event(event), markup=False, highlight=False)
    )
    host, _, port = args.control.rpartition(":")
    await wait_answering(host, int(port), 60)
    await feed.start(host, int(port))
    try:
        await feed.closed()
    finally:
        await feed.stop()
    return EXIT_OK


async def _cmd_compose_file(args: argparse.Namespace, console: Console) -> int:
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


async def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    topologies = _select(list(COMPARED))
    scenarios = load_scenarios(suites=[CLIENT_SUITE, TRAFFIC_SUITE, TIMEOUTS_SUITE])
    run_dir, temporary = _run_dir(args)
    plain, fixed = (
        LocalBackend(run_dir / name, StackOptions(**{**vars(_probe_options(args)), "answer_plain_http": ok}))
        for name, ok in (("as-is", False), ("fixed", True))
    )
    runs = [run(plain, topologies, scenarios), run(fixed, topologies, scenarios)]
    if args.target:
        # A real platform's limits cannot be accelerated: its timeouts rows stay empty here
        # (`wslab run --target URL --suite timeouts --faithful` measures them).
        target = _backend(args, run_dir)
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
    page = compare_page.render_markdown(compare(result, fixed_result, extra))
    console.print(Markdown(page))
    if args.markdown:
        Path(args.markdown).write_text(page)
        console.print(f"written: {args.markdown}")
    if args.json:
        result.write_json(args.json)
    return EXIT_OK


async def _cmd_explain(args: argparse.Namespace, console: Console) -> int:
    if args.results:
        result = merge([_load_results(path) for path in args.results])
    else:
        topologies = _select(args.topology)
        scenarios = load_scenarios()
        run_dir, temporary = _run_dir(args)
        progress = RunProgress(len(topologies) * len(scenarios), len(scenarios), sys.stderr)
        try:
            with progress:
                result = await run(
                    LocalBackend(run_dir, _probe_options(args)),
                    topologies,
                    scenarios,
                    on_cell=progress.finished,
                    on_start=progress.started,
                )
        finally:
            if temporary:
                shutil.rmtree(run_dir, ignore_errors=True)
    page = explain_page.render_markdown(explain(result, args.log))
    console.print(Markdown(page))
    if args.markdown:
        Path(args.markdown).write_text(page)
        console.print(f"written: {args.markdown}")
    return EXIT_OK


async def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from .proxies import REGISTRY

    console.print("[bold]topologies[/bold] (compose/<name>/)")
    for topology in load_topologies().values():
        available = topology.direct or REGISTRY[topology.proxy].locate() is not None
        state = "" if available else f"  [unavailable: {REGISTRY[topology.proxy].install_hint}]"
        console.print(f"  {topology.name:18} {topology.title}{state}", highlight=False)
    console.print("[bold]scenarios[/bold]")
    for scenario in load_scenarios(args.scenarios):
        console.print(f"  {scenario.id:28} {scenario.title}  ({scenario.source})", highlight=False)
    return EXIT_OK


async def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    entries = [Path(p) for p in args.paths] or [SCENARIO_DIR]
    files = [f for e in entries for f in (sorted(e.glob("*.yaml")) if e.is_dir() else [e])]
    scenarios = load_scenarios(files)
    console.print(f"{len(scenarios)} scenarios OK")
    return EXIT_OK


COMMANDS = {
    "run": _cmd_run,
    "up": _cmd_up,
    "watch": _cmd_watch,
    "report": _cmd_report,
    "diff": _cmd_diff,
    "compare": _cmd_compare,
    "explain": _cmd_explain,
    "compose-file": _cmd_compose_file,
    "list": _cmd_list,
    "validate": _cmd_validate,
}
