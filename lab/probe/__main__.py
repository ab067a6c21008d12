"""Run the observing server: ``python -m wslab.probe --listen NAME=HOST:PORT ...``.

A listener named in ``--forward NAME=HOST:PORT`` too is a recording tap
instead (:mod:`wslab.probe.tap`): it forwards everything to the app at that
loopback address and records what the app received and answered, in the
same events (``--answer-plain-http`` and ``--ping-interval`` are the
websockets listeners' only; ``--open-timeout`` is the taps').

Once every listener is bound it prints one JSON line on stdout::

    {"websockets": "15.0.1", "listeners": {"direct": ["127.0.0.1", 40123]},
     "control": ["127.0.0.1", 40124]}

and then serves until SIGINT or SIGTERM. Observations are streamed as JSON
text messages to every client of the control WebSocket: first a greeting
(``{"event": "hello", "websockets": ...}``), then everything recorded so far,
then each new record; a client that connects to ``/?history=0`` gets no history, only what is
recorded after it connected (``wslab watch`` without ``--history``). A control client may send
commands about a websockets listener NAME; each is answered with an event naming the listener
(or an ``"error"``), which the lifecycle suite's causes use. Each listen is a new *instance* of the
app, numbered from 1 and named in the ``X-Wslab-Instance`` header of every upgrade:

- ``{"restart": NAME, "down": S}``: NAME stops as a SIGTERM'd websockets server does (every
  connection closed with 1001 Going Away), stays down S seconds and listens again on its port;
  answered once down: ``{"event": "restarted", "closed_at": T, "down": S, ...}``.
- ``{"redeploy": NAME, "drain": S, "grace": S, "handles_sigterm": B}``: a platform's redeploy.
  The next instance listens on the port at once; the old one keeps its connections ``drain``
  seconds, then gets "SIGTERM": an app that handles it closes them with 1001, one that does not
  keeps them until ``grace`` more seconds pass, when "SIGKILL" aborts them (no close frame);
  answered at once: ``{"event": "redeployed", "at": T, "old": N, "new": N + 1, "open": K}``.
- ``{"settle": NAME, "id": N}``: a barrier. Once every connection NAME had accepted when it
  arrived has published its record, answered ``{"event": "settled", "id": N, "settled": true}``,
  after every record published before (a record is published before the response leaves, so
  a client that has its response and then this answer has every record of its request); false
  for a tap or after :data:`SETTLE_LIMIT` s.
- ``{"scale_to_zero": NAME, "idle": S}``: from now on, once the current instance has had no open
  connection for S seconds it is removed and the next one listens (a cold start awaits the next
  client); an open WebSocket is a request in progress and keeps it; answered at once:
  ``{"event": "armed", "instance": N, "open": K}``.

Every record is redacted before it is kept or sent (:mod:`wslab.probe.redact`) unless
``--no-redact`` is given. The history a new control client gets is bounded (:data:`HISTORY_MESSAGES`,
:data:`HISTORY_BYTES`), the oldest dropped first. WSLAB_ANSWER_PLAIN_HTTP=1,
WSLAB_NO_REDACT=1 and WSLAB_TIME_SCALE in the environment stand for
``--answer-plain-http``, ``--no-redact`` and ``--time-scale``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import ServerConnection, serve

from .server import json_object, serve_listener
from .standalone import MemoryTrimmer, QuietFilter
from .tap import OPEN_TIMEOUT, serve_tap


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _listener(text: str) -> tuple[str, str, int]:
    name, sep, address = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    try:
        return (name, *_address(address))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}") from None


def _forward(text: str) -> tuple[str, str, int]:
    """A tap's upstream: a loopback address only, since the tap forwards a proxy's traffic
    in clear and the app it records runs beside it."""
    name, host, port = _listener(text)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the app must be on a loopback address (127.0.0.1, ::1, localhost), not {host!r}"
        )
    return name, host.strip("[]"), port


HISTORY_MESSAGES = 50_000
HISTORY_BYTES = 32 << 20
"""What the control channel replays to a new client: at most this many events and bytes."""


HISTORY_PARAM = "history"
"""``/?history=0`` on the control channel: no replay, only new events."""


def replays_history(path: str) -> bool:
    """Whether a control client that asked for ``path`` wants the history replayed (the default,
    which the runner relies on: it may connect after the first records)."""
    return parse_qs(urlsplit(path).query).get(HISTORY_PARAM) != ["0"]


class ControlChannel:
    """Fans observation events out to the runner's control connections (and ``wslab watch``'s)."""

    def __init__(
        self,
        hello: dict[str, Any],
        max_messages: int = HISTORY_MESSAGES,
        max_bytes: int = HISTORY_BYTES,
        commands: Commands | None = None,
    ) -> None:
        self.commands = commands
        """What the listener commands call; None: every such command is refused."""
        self.hello = json.dumps({"event": "hello", **hello})
        self.history: deque[str] = deque()
        self.history_bytes = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.clients: set[ServerConnection] = set()
        self.joining: dict[ServerConnection, list[str]] = {}
        """Clients still being sent the greeting and the history, and what was published since."""
        self.published = 0

    def publish(self, event: dict[str, Any]) -> None:
        # Not ASCII-escaped: a raw head of binary garbage stays one byte per byte, not six.
        message = json.dumps(event, ensure_ascii=False)
        self.published += 1
        self.history.append(message)
        self.history_bytes += len(message)
        while len(self.history) > self.max_messages or self.history_bytes > self.max_bytes:
            self.history_bytes -= len(self.history.popleft())
        for client in list(self.clients):
            asyncio.ensure_future(self._send(client, message))
        for backlog in self.joining.values():
            backlog.append(message)

    @staticmethod
    async def _send(client: ServerConnection, message: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await client.send(message)

    async def handler(self, client: ServerConnection) -> None:
        request = client.request
        replay = list(self.history) if request is None or replays_history(request.path) else []
        # Sending the history may wait for the client to read: what is published meanwhile is
        # kept for it, in order, rather than lost between the snapshot and the live stream.
        backlog = self.joining[client] = []
        try:
            await client.send(self.hello)
            for message in replay:
                await client.send(message)
            while backlog:
                await client.send(backlog.pop(0))
            # No await since the backlog was found empty: nothing published can fall in between.
            self.clients.add(client)
        except websockets.ConnectionClosed:
            return
        finally:
            del self.joining[client]
        try:
            async for message in client:
                await self._obey(client, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)

    async def _obey(self, client: ServerConnection, message: str | bytes) -> None:
        """Answer a listener command; anything else a client sends is ignored, as it always was."""
        command = json_object(message)
        if command is not None and "settle" in command:
            # In a task: a barrier that waits must not hold up this client's next ones.
            asyncio.ensure_future(self._settle(client, command))
            return
        verb = next((verb for verb in ANSWERS if command and verb in command), None)
        if command is None or verb is None:
            return
        name = command[verb]
        arguments = _arguments(command, NUMBERS[verb])
        if self.commands is None or arguments is None:
            answer: dict[str, Any] = {"error": "refused"}
        else:
            try:
                answer = await getattr(self.commands, verb)(str(name), **arguments)
            except KeyError:
                answer = {"error": f"no websockets listener named {name}"}
        await client.send(json.dumps({"event": ANSWERS[verb], "listener": name, **answer}))

    async def _settle(self, client: ServerConnection, command: dict[str, Any]) -> None:
        settled = False
        if self.commands is not None:
            with contextlib.suppress(TimeoutError):
                settled = await self.commands.settle(str(command["settle"]))
        answer = {"event": "settled", "id": command.get("id"), "settled": settled}
        # Sent as records are, in a task of its own: the tasks run in order, so every record
        # published before this answer leaves before it on this client's connection.
        asyncio.ensure_future(self._send(client, json.dumps(answer)))


SETTLE_LIMIT = 2.0
"""Seconds a ``settle`` barrier waits for a connection's record before it answers false."""
SETTLE_POLL = 0.002
"""Seconds between two looks at a ``settle`` barrier's connections."""
MAX_DOWN = 60.0
"""The longest a restarted listener stays down, in seconds."""
MAX_SECONDS = 3600.0
"""The longest a redeploy's drain or grace, or a scale to zero's idle time, may be: faithful runs
use a platform's real figures (Render: 60 s, then 30 s; Cloud Run idle: 15 min assumed)."""
ANSWERS = {"restart": "restarted", "redeploy": "redeployed", "scale_to_zero": "armed"}
"""Each listener command, and the event that answers it."""
NUMBERS = {
    "restart": {"down": MAX_DOWN},
    "redeploy": {"drain": MAX_SECONDS, "grace": MAX_SECONDS},
    "scale_to_zero": {"idle": MAX_SECONDS},
}
"""Each command's durations and their bounds; a redeploy also takes ``handles_sigterm``."""


def _arguments(command: dict[str, Any], bounds: dict[str, float]) -> dict[str, Any] | None:
    """A command's keyword arguments: its durations, each a number within its bound, and the
    redeploy's ``handles_sigterm`` flag; None if one is not."""
    arguments: dict[str, Any] = {}
    for key, bound in bounds.items():
        value = command.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= bound:
            return None
        arguments[key] = float(value)
    if "grace" in bounds:
        if not isinstance(command.get("handles_sigterm", True), bool):
            return None
        arguments["handles_sigterm"] = command.get("handles_sigterm", True)
    return arguments


class Commands(Protocol):
    """What the control channel's listener commands call (:class:`Listeners`)."""

    async def restart(self, name: str, down: float) -> dict[str, Any]: ...

    async def redeploy(
        self, name: str, drain: float, grace: float, handles_sigterm: bool
    ) -> dict[str, Any]: ...

    async def scale_to_zero(self, name: str, idle: float) -> dict[str, Any]: ...

    async def settle(self, name: str) -> bool: ...


class Listeners:
    """The websockets listeners by name, which can be restarted in place (same port)."""

    def __init__(self, args: argparse.Namespace, publish: Callable[[dict[str, Any]], None]) -> None:
        self.args = args
        self.publish = publish
        self.servers: dict[str, Any] = {}
        self.restartable: set[str] = set()
        self.instances: dict[str, int] = {}
        """The number of each listener's current instance (1 at start, one more at each listen)."""
        self.unrecorded: dict[str, set[Any]] = {}
        """Each websockets listener's connections whose record is not published yet."""
        self._back: dict[str, asyncio.Future[None]] = {}
        self._retiring: set[asyncio.Future[None]] = set()

    async def serve(self, name: str, host: str, port: int) -> Any:
        """Listen on ``host:port`` as the listener's next instance."""
        args = self.args
        self.instances[name] = self.instances.get(name, 0) + 1
        self.servers[name] = await serve_listener(
            name,
            host,
            port,
            self.publish,
            plain_http_ok=args.answer_plain_http,
            ping_interval=args.ping_interval * args.time_scale or None,
            time_scale=args.time_scale,
            redact=args.redact,
            instance=self.instances[name],
            unrecorded=self.unrecorded.setdefault(name, set()),
        )
        self.restartable.add(name)
        return self.servers[name]

    async def settle(self, name: str) -> bool:
        """Wait until every connection NAME had accepted by now has published its record; False
        if NAME is no websockets listener (a tap) or one stays unrecorded SETTLE_LIMIT s."""
        if name not in self.unrecorded:
            return False
        pending = set(self.unrecorded[name])
        async with asyncio.timeout(SETTLE_LIMIT):
            while pending & self.unrecorded[name]:
                await asyncio.sleep(SETTLE_POLL)
        return True

    async def restart(self, name: str, down: float) -> dict[str, Any]:
        """Stop listener ``name`` as a SIGTERM'd websockets server stops (close() closes every
        connection with 1001 Going Away), wait ``down`` seconds, listen again on its port.
        Raises KeyError for a name that is not a websockets listener (a tap)."""
        if name not in self.restartable:
            raise KeyError(name)
        server = self.servers[name]
        host, port = server.sockets[0].getsockname()[:2]
        closed_at = time.time()
        self.restartable.discard(name)  # until it listens again
        server.close()
        await server.wait_closed()
        # Answered once down, so that the caller times the close, not the downtime; coming back
        # up does not depend on the caller staying connected.
        self._back[name] = asyncio.ensure_future(self._come_back(name, host, port, down))
        return {"closed_at": closed_at, "down": down}

    async def _come_back(self, name: str, host: str, port: int, down: float) -> None:
        await asyncio.sleep(down)
        await self.serve(name, host, port)

    async def redeploy(self, name: str, drain: float, grace: float, handles_sigterm: bool) -> dict[str, Any]:
        """Redeploy listener ``name`` as a platform does (see the module's docstring): the next
        instance takes new connections at once, the old one ends after ``drain`` and ``grace``.
        Raises KeyError for a name that is not a websockets listener (a tap)."""
        old, old_instance = await self._replace(name)
        retiring = asyncio.ensure_future(_retire(old, drain, grace, handles_sigterm))
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)
        new = self.instances[name]
        return {"at": time.time(), "old": old_instance, "new": new, "open": len(old.connections)}

    async def scale_to_zero(self, name: str, idle: float) -> dict[str, Any]:
        """Arm listener ``name``'s autoscaler (see the module's docstring) for one scale to zero.
        Raises KeyError for a name that is not a websockets listener (a tap)."""
        if name not in self.restartable:
            raise KeyError(name)
        watch = asyncio.ensure_future(self._zero_when_idle(name, idle))
        self._retiring.add(watch)
        watch.add_done_callback(self._retiring.discard)
        return {"instance": self.instances[name], "open": len(self.servers[name].connections)}

    async def _zero_when_idle(self, name: str, idle: float) -> None:
        step = max(0.01, min(0.1, idle / 20))
        quiet_since = time.monotonic()
        deadline = quiet_since + MAX_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(step)
            if name not in self.restartable:  # restarted or redeployed meanwhile: not this instance
                return
            if self.servers[name].connections:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= idle:
                old, _ = await self._replace(name)
                old.close()
                return

    async def _replace(self, name: str) -> tuple[Any, int]:
        """Stop the listener's current instance accepting, at once (its port is free again), and
        listen on the same port as the next instance; the old server and its instance number."""
        if name not in self.restartable:
            raise KeyError(name)
        old, old_instance = self.servers[name], self.instances[name]
        host, port = old.sockets[0].getsockname()[:2]
        # websockets' close() stops accepting in a task of its own; the port must be free now.
        old.server.close()
        await self.serve(name, host, port)
        return old, old_instance


async def _retire(old: Any, drain: float, grace: float, handles_sigterm: bool) -> None:
    """End a redeployed instance: its connections are kept ``drain`` seconds; then SIGTERM, which
    an app that handles it answers as websockets' serve() does (1001 Going Away to each); after
    ``grace`` seconds more, SIGKILL: whatever is still open is cut without a close frame."""
    await asyncio.sleep(drain)
    if handles_sigterm:
        old.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(old.wait_closed()), grace)
    else:
        await asyncio.sleep(grace)
    for connection in list(old.all_connections):
        connection.transport.abort()
    old.close(close_connections=False)


def quiet_websockets_logs() -> None:
    """websockets' warnings on stderr without tracebacks, and without its "opening handshake
    failed" (the record holds that error, redacted; its traceback may quote a request line or
    a header value in clear)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(QuietFilter())
    logger = logging.getLogger("websockets")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


async def main(args: argparse.Namespace) -> None:
    listeners = Listeners(args, lambda event: channel.publish(event))
    channel = ControlChannel(
        {"websockets": websockets.__version__, "time_scale": args.time_scale, "redacted": args.redact},
        commands=listeners,
    )
    servers = listeners.servers
    upstreams = {name: (host, port) for name, host, port in args.forward}
    for name, host, port in args.listen:
        if name in upstreams:
            servers[name] = await serve_tap(
                name,
                host,
                port,
                upstreams[name],
                channel.publish,
                redact=args.redact,
                open_timeout=args.open_timeout,
            )
            continue
        await listeners.serve(name, host, port)
    # Reports cross loopback or a compose network: deflating each cost the server (and every
    # reader) CPU for nothing, about 4% of the server's busy time in a default-matrix run.
    control = await serve(channel.handler, *args.control, ping_interval=None, compression=None)
    ready = {
        "websockets": websockets.__version__,
        "listeners": {name: list(server.sockets[0].getsockname()[:2]) for name, server in servers.items()},
        "control": list(control.sockets[0].getsockname()[:2]),
    }
    print(json.dumps(ready), flush=True)
    trimmer = MemoryTrimmer(lambda: channel.published)
    trimmer.start()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await stop
    trimmer.stop()
    for server in [*servers.values(), control]:
        server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wslab.probe", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--listen",
        type=_listener,
        action="append",
        required=True,
        metavar="NAME=HOST:PORT",
        help="a named WebSocket listener (port 0: any free port)",
    )
    parser.add_argument(
        "--forward",
        type=_forward,
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="make listener NAME a recording tap to the app at this loopback address",
    )
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=OPEN_TIMEOUT,
        metavar="SECONDS",
        help="a tap publishes a request's record after this long without its complete head or "
        f"the app's answer, and goes on forwarding (default {OPEN_TIMEOUT:g})",
    )
    parser.add_argument(
        "--control",
        type=_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where the runner reads observations (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--answer-plain-http",
        action="store_true",
        default=bool(os.environ.get("WSLAB_ANSWER_PLAIN_HTTP")),
        help="answer requests without Upgrade: websocket with 200 (the health-check fix)",
    )
    parser.add_argument(
        "--redact",
        action=argparse.BooleanOptionalAction,
        default=not os.environ.get("WSLAB_NO_REDACT"),
        help="replace secrets (Authorization, cookies, API keys, tokens in the query or the "
        "subprotocols) in every record before it is kept or published; --no-redact keeps them "
        "(env WSLAB_NO_REDACT=1)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("WSLAB_TIME_SCALE") or 1),
        help="multiply every duration (pings) by this; below 1 in accelerated runs (env WSLAB_TIME_SCALE)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between server pings; 0 disables them (websockets' default: 20)",
    )
    args = parser.parse_args(argv)
    listeners = {name for name, _, _ in args.listen}
    if unknown := [name for name, _, _ in args.forward if name not in listeners]:
        parser.error(f"--forward names no --listen: {', '.join(unknown)}")
    if args.open_timeout <= 0:
        parser.error(f"--open-timeout must be positive, got {args.open_timeout:g}")
    return args


if __name__ == "__main__":
    quiet_websockets_logs()
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)
