"""`wslab up` and `wslab watch`: topologies kept up, and what the probe server receives.

What they print comes from the network (any client may connect to a topology
kept up), so every part of a request goes through
:func:`~wslab.reports.safe_text.printable` on its own: an ESC sequence in a
header value shows as ``\\x1b[2J``, a bare newline as ``\\n``, and no value can
pass for another line.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from ..backends import READY
from ..backends.local import LocalBackend
from ..errors import EXIT_OK, UsageError
from ..observations import Closing, Event, Hello, ObservationFeed
from ..processes import wait_answering
from ..reports.safe_text import printable
from ..topology import Topology, select_topologies
from .common import (
    app_spec,
    probe_options,
    run_folder,
    until_signal,
)


def describe_event(event: Event) -> str:
    """One observation as ``wslab up`` and ``wslab watch`` print it (print it with markup=False):
    the request line, then one line per header; every text from the wire escaped."""
    if isinstance(event, Hello):
        secrets = "" if event.redacted else "; secrets NOT redacted (--no-redact)"
        return printable(f"probe server running websockets {event.websockets}{secrets}")
    if isinstance(event, Closing):
        listener, number = event.key
        closed = event.closed
        return printable(f"[{listener}] #{number} closed by {closed.closed_by} (code {closed.code})")
    connection = event.connection
    request = connection.request
    line = (
        f"{request.method} {request.target} {request.version}"
        if request
        else f"{connection.bytes_received} bytes, no request line"
    )
    outcome = str(connection.response.status) if connection.response else "no response"
    error = f" — {connection.error.text}" if connection.error else ""
    lines = [f"[{connection.listener}] #{connection.conn} {line} -> {outcome}{error}"]
    lines += [f"    {name}: {value}" for name, value in request.headers] if request else []
    for stream in event.streams:
        lines.append(f"    HTTP/2 stream {stream.stream}: {stream.method} {stream.target}")
        lines += [f"      {name}: {value}" for name, value in stream.headers if not name.startswith(":")]
    return "\n".join(printable(line) for line in lines)


def _event_printer(console: Console) -> Callable[[Event], None]:
    """Events are log lines: never wrapped by rich, so a line stays greppable whatever the width."""
    return lambda event: console.print(describe_event(event), markup=False, highlight=False, soft_wrap=True)


def up_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(args.topology)
    app = app_spec(args)
    with run_folder(args) as run_dir:
        backend = LocalBackend(run_dir, probe_options(args), app, fixed_ports=args.ports)
        return until_signal(_serve(args, console, backend, topologies, run_dir))


async def _serve(
    args: argparse.Namespace,
    console: Console,
    backend: LocalBackend,
    topologies: list[Topology],
    run_dir: Path,
) -> int:
    try:
        deployments = await backend.start(topologies)
        server = backend.app.describe() if backend.app else f"websockets {backend.websockets_version}"
        console.print(f"{server} behind {len(topologies)} topologies; logs in {run_dir}", markup=False)
        for deployment in deployments.values():
            if deployment.status == READY:
                assert deployment.endpoint is not None
                console.print(f"  {deployment.topology.name:18} {deployment.endpoint.ws_url()}", markup=False)
            else:
                detail = printable(f"{deployment.status}: {deployment.detail}")
                console.print(f"  {deployment.topology.name:18} {detail}", markup=False)
        receiver = "your app" if backend.app else "the server"
        console.print(f"What {receiver} receives is printed below. Ctrl-C stops everything.")
        backend.feed.subscribers.append(_event_printer(console))
        await asyncio.Event().wait()
    finally:
        await backend.stop()
    return EXIT_OK


def watch_command(args: argparse.Namespace, console: Console) -> int:
    host, _, port = args.control.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--control needs HOST:PORT, got {args.control!r}")
    return until_signal(_watch(host or "127.0.0.1", int(port), console))


async def _watch(host: str, port: int, console: Console) -> int:
    feed = ObservationFeed()
    feed.subscribers.append(_event_printer(console))
    await wait_answering(host, port, 60)
    await feed.start(host, port)
    try:
        await feed.closed()
    finally:
        await feed.stop()
    return EXIT_OK
