"""`wslab up` and `wslab watch`: topologies kept up, and what the probe server receives."""

from __future__ import annotations

import argparse
import asyncio
import shutil

from rich.console import Console

from ..backends import READY
from ..backends.local import LocalBackend
from ..errors import EXIT_OK
from ..observations import Closing, Event, Hello, ObservationFeed
from ..processes import wait_answering
from .common import (
    make_run_dir,
    parse_upstream,
    probe_options,
    select_topologies,
)


def describe_event(event: Event) -> str:
    """One observation as ``wslab up`` and ``wslab watch`` print it."""
    if isinstance(event, Hello):
        secrets = "" if event.redacted else "; secrets NOT redacted (--no-redact)"
        return f"probe server running websockets {event.websockets}{secrets}"
    if isinstance(event, Closing):
        listener, number = event.key
        closed = event.closed
        return f"[{listener}] #{number} closed by {closed.closed_by} (code {closed.code})"
    connection = event.connection
    request = connection.request
    line = (
        f"{request.method} {request.target} {request.version}"
        if request
        else f"{connection.bytes_received} bytes, no request line"
    )
    outcome = str(connection.response.status) if connection.response else "no response"
    error = f" — {connection.error.text}" if connection.error else ""
    headers = "".join(f"\n    {name}: {value}" for name, value in request.headers) if request else ""
    streams = "".join(
        f"\n    HTTP/2 stream {stream.stream}: {stream.method} {stream.target}"
        + "".join(f"\n      {name}: {value}" for name, value in stream.headers if not name.startswith(":"))
        for stream in event.streams
    )
    return f"[{connection.listener}] #{connection.conn} {line} -> {outcome}{error}{headers}{streams}"


async def up_command(args: argparse.Namespace, console: Console) -> int:
    topologies = select_topologies(args.topology)
    run_dir, temporary = make_run_dir(args)
    backend = LocalBackend(run_dir, probe_options(args), parse_upstream(args.upstream))
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
            lambda event: console.print(describe_event(event), markup=False, highlight=False)
        )
        await asyncio.Event().wait()
    finally:
        await backend.stop()
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    return EXIT_OK


async def watch_command(args: argparse.Namespace, console: Console) -> int:
    feed = ObservationFeed()
    feed.subscribers.append(lambda event: console.print(describe_event(event), markup=False, highlight=False))
    host, _, port = args.control.rpartition(":")
    await wait_answering(host, int(port), 60)
    await feed.start(host, int(port))
    try:
        await feed.closed()
    finally:
        await feed.stop()
    return EXIT_OK
