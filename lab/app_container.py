"""The user's app as a container in the stack (``wslab run --app-image IMAGE``).

The compose and containers backends run the image in the probe container's
network namespace (``network_mode: service:probe``), so that the probe
server's recording taps reach it on 127.0.0.1:PORT exactly as the local
backend's taps reach an ``--app`` process, and its port is published nowhere.
It gets PORT and HOST=127.0.0.1 in its environment, as an ``--app`` command
does. Whether it listens is read from the namespace's socket table by the probe
container (an app would log a connection as a failed handshake). Its output is
followed through the Docker API with Docker's own timestamps, so that each
entry is tied to the cell whose handshake it came during, as with ``--app``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .app import HOST, STARTUP_TIMEOUT, AppError
from .app_log import MAX_LINE_CHARS, AppLog, HandshakeGate, Stream
from .backends import Deployment


def app_environment(port: int) -> dict[str, str]:
    """What the app's container is started with: PORT and HOST, as ``--app`` gives a command."""
    return {"PORT": str(port), "HOST": HOST, "PYTHONUNBUFFERED": "1"}


def stamped(line: str) -> tuple[float | None, str]:
    """A line of ``docker logs --timestamps``: its time (seconds since the epoch) and text."""
    stamp, _, text = line.partition(" ")
    try:
        return datetime.fromisoformat(stamp).timestamp(), text
    except ValueError:
        return None, line


class ContainerAppLog:
    """Follows one container's stdout and stderr into an :class:`AppLog`, and a log file.

    One thread per stream reads the Docker API's follow stream; each ends when the container
    stops (or is removed), which is how :attr:`ended` learns that the app stopped."""

    def __init__(self, container: Any, log_path: Path) -> None:
        self.container = container
        self.log = AppLog()
        self.log_path = log_path
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._follow, args=(stream,), daemon=True, name=f"app {stream}")
            for stream in ("stdout", "stderr")
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def ended(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _follow(self, stream: Stream) -> None:
        pending = ""
        try:
            chunks = self.container.logs(
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
                timestamps=True,
            )
            for chunk in chunks:
                *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
                if len(pending) > MAX_LINE_CHARS + 40:
                    lines.append(pending)
                    pending = ""
                self._add(stream, lines)
        except Exception:  # noqa: BLE001 - the container went away: the stream has ended
            pass
        if pending:
            self._add(stream, [pending])

    def _add(self, stream: Stream, lines: list[str]) -> None:
        with self._lock, open(self.log_path, "a", encoding="utf-8", errors="replace") as mirror:
            for line in lines:
                at, text = stamped(line.rstrip("\r"))
                mirror.write(f"{stream}: {text}\n")
                self.log.add(stream, [text], at)

    def exit_status(self) -> str:
        """How the container ended ('exited with status 1'), or '' while it runs."""
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - removed already: nothing more to say
            return "stopped"
        state = self.container.attrs.get("State", {})
        return "" if state.get("Running") else f"exited with status {state.get('ExitCode')}"

    def stop(self, timeout: float = 2.0) -> None:
        """Wait a moment for the streams to end (they do once the container is gone)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))


async def wait_app_listening(
    listens: Callable[[], Awaitable[bool]],
    log: ContainerAppLog,
    description: str,
    port: int,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """Return once the app's container listens on ``port``; :class:`AppError` with its last lines
    if it stops first or does not listen within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await listens():
        if log.ended:
            raise AppError(f"{description} stopped before listening on port {port}{_last_lines(log)}")
        if time.monotonic() > deadline:
            raise AppError(
                f"{description} did not listen on port {port} within {timeout:g} s; does it listen on "
                f"$PORT (--app-port {port})?{_last_lines(log)}"
            )
        await asyncio.sleep(0.2)


def _last_lines(log: ContainerAppLog) -> str:
    tail = log.log.tail()
    return f"; its last lines:\n{tail}" if tail else "; it wrote nothing"


def put_behind(deployments: list[Deployment], log: ContainerAppLog) -> None:
    """Mark every deployment as standing in front of the app's container: its log tied to their
    cells, one opening handshake at a time through them all (one app)."""
    gate = HandshakeGate(log.log)
    for deployment in deployments:
        deployment.behind_app, deployment.app_log, deployment.gate = True, log.log, gate


def stopped(log: ContainerAppLog | None) -> str | None:
    """The backend's failure() line once the app's container has stopped, else None."""
    if log is None or not log.ended:
        return None
    return f"your app's container stopped during the run; its last lines:\n{log.log.tail()}"
