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
import errno
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import websockets
from rich.console import Console
from websockets.asyncio.client import ClientConnection, connect

from .. import lab_lock
from ..backends.local import LocalBackend
from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..observations import Closing, Event, Hello, parse_event
from ..paths import state_path
from ..probe.server import json_object
from ..reports.safe_text import printable
from ..topology import Topology, select_topologies
from .common import (
    app_spec,
    probe_options,
    run_folder,
    until_signal,
)
from .warm_lab import DETACH_TOKEN, KeptLab, print_deployment, warm_use


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
    with lab_lock.hold(state_path()), run_folder(args) as run_dir:
        backend = LocalBackend(run_dir, probe_options(args), app, fixed_ports=args.ports)
        return until_signal(_serve(args, console, backend, topologies, run_dir))


async def _serve(
    args: argparse.Namespace,
    console: Console,
    backend: LocalBackend,
    topologies: list[Topology],
    run_dir: Path,
) -> int:
    lab = KeptLab(backend, run_dir, console)
    try:
        await lab.start_forkserver()
        deployments = await backend.start(topologies)
        server = backend.app.describe() if backend.app else f"websockets {backend.websockets_version}"
        console.print(f"{server} behind {len(topologies)} topologies; logs in {run_dir}", markup=False)
        for deployment in deployments.values():
            print_deployment(console, deployment)
        if backend.control is not None:
            host, port = backend.control
            console.print(f"From another terminal: wslab watch --control {host}:{port}", markup=False)
        receiver = "your app" if backend.app else "the server"
        detached = bool(os.environ.get(DETACH_TOKEN))
        if detached:
            # Nothing here reads what the server receives (runs and `wslab watch` follow it on
            # channels of their own): no channel, and no reports for the server to send it.
            await backend.feed.stop()
        else:
            # From the moment the URLs are out, before the lab is published (which waits for its
            # fork server): a request sent at once is printed too. Detached, the output goes to a
            # file nobody reads as it comes: `wslab watch` shows it.
            console.print(f"What {receiver} receives is printed below. Ctrl-C stops everything.")
            backend.feed.subscribers.append(_event_printer(console))
        await lab.publish()
        if not detached:
            for line in warm_use(
                asdict(backend.probe), [t.name for t in topologies], backend.app is not None
            ):
                console.print(line, markup=False, soft_wrap=True)
        await lab.stopped.wait()
    finally:
        await lab.withdraw()
        await backend.stop()
    return EXIT_OK


WATCH_OPEN_WAIT = 2.5
"""Seconds ``wslab watch`` gives an address that accepts to complete the WebSocket handshake and
greet (a probe server greets at once): with a refused connection failing at once, it gives up
within 5 s whatever answers, Python's start included."""
COMPOSE_CONTROL = "127.0.0.1:18000"
WATCH_HINT = (
    "start `wslab up` (it prints the --control address to watch) "
    f"or the compose stack (its control channel is {COMPOSE_CONTROL}, the default)"
)


def control_address(text: str) -> tuple[str, int]:
    """``--control HOST:PORT`` as (host, port); an empty host is 127.0.0.1."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--control needs HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def control_url(host: str, port: int, history: bool) -> str:
    """The control channel's URL; without ``history`` the probe server replays nothing."""
    netloc = f"[{host}]" if ":" in host else host
    return f"ws://{netloc}:{port}/" + ("" if history else "?history=0")


def watch_command(args: argparse.Namespace, console: Console) -> int:
    """Print what the probe server at ``--control`` records from now on (with ``--history``,
    what it recorded before too); exit 2 at once when nothing there is a control channel, 1 when
    the channel ends (the lab stopped)."""
    host, port = control_address(args.control)
    return until_signal(_watch(host, port, args.history, console))


async def _watch(host: str, port: int, history: bool, console: Console) -> int:
    connection, hello = await _open_control(host, port, history)
    show = _event_printer(console)
    show(hello)
    if not history:
        console.print("Showing what it receives from now on (--history: what it received before too).")
    try:
        # Read here rather than through an ObservationFeed, which keeps every record for the
        # runner: a watch may run for days.
        async for message in connection:
            event = parse_event(json.loads(message))
            if event is not None:
                show(event)
    except websockets.ConnectionClosed:
        pass
    finally:
        await connection.close()
    print(
        f"wslab: the probe server at {host}:{port} closed its control channel (its lab stopped)",
        file=sys.stderr,
    )
    return EXIT_FAILED


async def _open_control(host: str, port: int, history: bool) -> tuple[ClientConnection, Hello]:
    """The control channel and its greeting.

    Raises UsageError, with a hint, when nothing listens there or what listens is not a probe
    server's control channel (a proxy, a probe listener, a port forwarder with nothing behind)."""
    where = f"{host}:{port}"
    deadline = asyncio.get_running_loop().time() + WATCH_OPEN_WAIT
    try:
        async with asyncio.timeout_at(deadline):
            connection = await connect(
                control_url(host, port, history),
                # websockets' keepalive pings stay on: they tell a lab that vanished from a quiet one.
                max_size=None,
                proxy=None,
            )
    except (websockets.InvalidHandshake, TimeoutError) as error:
        # Before OSError, of which TimeoutError is one: this address accepted.
        reason = str(error) or "no WebSocket handshake in time"
        raise UsageError(
            f"{where} is not a probe server's control channel ({reason}): {WATCH_HINT}"
        ) from None
    except OSError as error:
        raise UsageError(f"nothing answers on {where} ({_refusal(error)}): {WATCH_HINT}") from None
    try:
        async with asyncio.timeout_at(deadline):
            hello = greeting(await connection.recv())
    except (TimeoutError, websockets.ConnectionClosed):
        hello = None
    if hello is None:
        await connection.close()
        raise UsageError(f"{where} is not a probe server's control channel (no greeting): {WATCH_HINT}")
    return connection, hello


def greeting(message: str | bytes) -> Hello | None:
    """The probe server's greeting, if ``message`` is one (a control channel's first message)."""
    fields = json_object(message)
    if fields is None or fields.get("event") != "hello" or not isinstance(fields.get("websockets"), str):
        return None
    event = parse_event(fields)
    return event if isinstance(event, Hello) else None


def _refusal(error: OSError) -> str:
    """Why a connection failed, in words: asyncio's own message names no reason."""
    if isinstance(error, ConnectionRefusedError) or error.errno == errno.ECONNREFUSED:
        return "connection refused"
    return error.strerror or str(error)
