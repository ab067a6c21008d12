"""What the commands share: arguments turned into topologies, backends and runs."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from ..backends import Backend, StackOptions
from ..backends.compose import ComposeBackend
from ..backends.local import LocalBackend
from ..backends.remote import RemoteBackend
from ..errors import UsageError
from ..records import Run
from ..reports.progress import RunProgress
from ..runner import RunOptions, run
from ..scenario import Scenario
from ..topology import Topology, load_topologies


def select_topologies(names: list[str] | None) -> list[Topology]:
    topologies = load_topologies()
    if not names:
        return list(topologies.values())
    unknown = [name for name in names if name not in topologies]
    if unknown:
        raise UsageError(f"unknown topology {', '.join(unknown)} (known: {', '.join(topologies)})")
    return [topologies[name] for name in names]


def probe_options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        websockets_version=args.websockets,
        answer_plain_http=args.answer_plain_http,
        ping_interval=args.ping_interval,
        time_scale=args.time_scale,
        redact=args.redact,
    )


def make_run_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.run_dir:
        return Path(args.run_dir), False
    return Path(tempfile.mkdtemp(prefix="wslab-")), True


def backend_for(args: argparse.Namespace, run_dir: Path) -> Backend:
    if args.target:
        token = args.token or os.environ.get("WSLAB_TOKEN")
        if not token:
            raise UsageError("--target needs the probe server's report token: --token or WSLAB_TOKEN")
        return RemoteBackend(
            args.target, token, probe_options(args), insecure=args.insecure, ca_file=args.ca_file
        )
    if args.insecure or args.ca_file:
        raise UsageError("--insecure and --ca-file go with --target")
    if args.backend == "compose":
        return ComposeBackend(
            probe_options(args), in_network=args.in_network, offline=args.offline, keep=args.keep
        )
    if args.in_network or args.keep:
        raise UsageError("--in-network and --keep go with --backend compose")
    if args.backend == "containers":
        from ..backends.containers import ContainersBackend

        return ContainersBackend(probe_options(args), offline=args.offline)
    if args.offline:
        raise UsageError("--offline goes with --backend compose or containers")
    return LocalBackend(run_dir, probe_options(args))


def parse_upstream(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--upstream needs HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


async def run_with_progress(
    backend: Backend,
    topologies: list[Topology],
    scenarios: list[Scenario],
    options: RunOptions | None = None,
    scratch: Path | None = None,
) -> Run:
    """Play the cells with live progress on stderr; remove ``scratch`` (a temporary run
    directory) afterwards, whatever happens."""
    progress = RunProgress(len(topologies) * len(scenarios), len(scenarios), sys.stderr)
    try:
        with progress:
            return await run(
                backend, topologies, scenarios, options, on_cell=progress.finished, on_start=progress.started
            )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def show_page(page: str, args: argparse.Namespace, console: Console) -> None:
    """A Markdown answer on the terminal, and in ``--markdown PATH`` if asked."""
    console.print(Markdown(page))
    if args.markdown:
        Path(args.markdown).write_text(page)
        console.print(f"written: {args.markdown}")
