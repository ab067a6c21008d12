"""The user's own server, started by the lab (``wslab run --app CMD``).

The command runs in a shell, so that ``$PORT`` expands, with PORT and
HOST=127.0.0.1 in its environment the way PaaS platforms start a web process,
and PYTHONUNBUFFERED=1 so that a Python app's lines arrive as it writes them.
Its stdout and stderr are read as they come, each line with the time it
arrived (:class:`AppLog`, bounded), and mirrored to a log file in the run
folder. It runs in its own process group, under the lab's containment: stopping
it stops its children too (uvicorn's workers, a reloader), on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .app_log import MAX_LINE_CHARS, AppLog, Stream
from .errors import UsageError
from .processes import ManagedProcess, wait_listening_quietly

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
"""Seconds the app has to answer on its port."""


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class AppSpec:
    """The user's server that stands behind the topologies instead of the lab's probe server."""

    command: str | None = None
    """--app: a shell command the lab starts with PORT and HOST set."""
    upstream: tuple[str, int] | None = None
    """--upstream: an app already running on a loopback HOST:PORT."""
    image: str | None = None
    """--app-image: a local image the compose or containers backend puts in the stack."""
    image_port: int = 8080
    """--app-port: the port that image's server listens on (given to it as PORT)."""
    per_topology: bool = False
    """--app-per-topology: one process per topology rather than one for the run."""
    cwd: Path | None = None
    """Where the command runs (default: the current directory)."""

    def __post_init__(self) -> None:
        given = [self.command, self.upstream, self.image]
        if sum(value is not None for value in given) != 1:
            raise UsageError("give the app as one of --app CMD, --upstream HOST:PORT or --app-image IMAGE")
        if self.upstream is not None and self.upstream[0] not in LOOPBACK:
            raise UsageError(
                f"--upstream {self.upstream[0]}:{self.upstream[1]}: the lab only sends traffic to "
                "loopback addresses (127.0.0.1, localhost, ::1)"
            )
        if self.per_topology and self.command is None:
            raise UsageError("--app-per-topology needs --app CMD (the lab starts one process per topology)")

    def describe(self) -> str:
        """'your app (uvicorn app:app --port $PORT)', 'your app on 127.0.0.1:8000', or
        'your app (image myapp:dev)'."""
        if self.command is not None:
            return f"your app ({self.command})"
        if self.image is not None:
            return f"your app (image {self.image})"
        assert self.upstream is not None
        return f"your app on {self.upstream[0]}:{self.upstream[1]}"


class AppError(UsageError):
    """The app the user gave did not start or answer (exit 2): their command, not the lab."""


class AppProcess:
    """The user's server command, on one port, with its output read into an :class:`AppLog`."""

    def __init__(
        self, command: str, port: int, log_path: Path, name: str = "your app", cwd: Path | None = None
    ) -> None:
        self.command = command
        self.port = port
        self.log = AppLog()
        env = {**os.environ, "PORT": str(port), "HOST": HOST, "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess(name, ["/bin/sh", "-c", command], log_path, env, cwd)
        self._readers: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        return self.process.running

    def exit_status(self) -> str:
        """'' while it runs; how it ended otherwise."""
        process = self.process.process
        if process is None or process.returncode is None:
            return ""
        code = process.returncode
        return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"

    async def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the command and return once its port accepts connections.

        Raises :class:`AppError` with the app's last lines if it exits or does not answer in time."""
        await self.process.start(stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        child = self.process.process
        assert child is not None and child.stdout is not None and child.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(child.stdout, "stdout")),
            asyncio.create_task(self._read(child.stderr, "stderr")),
        ]
        try:
            # Not by connecting: an app would log the lab's own probe as a failed handshake.
            await wait_listening_quietly(self.port, timeout, alive=lambda: self.running)
        except ProcessLookupError:
            await self._drain()
            raise AppError(
                f"your app ({self.command}) {self.exit_status()} before answering on {HOST}:{self.port}"
                + self._last_lines()
            ) from None
        except TimeoutError:
            await self.stop()
            raise AppError(
                f"your app ({self.command}) did not answer on {HOST}:{self.port} within {timeout:g} s; "
                "does it listen on $PORT?" + self._last_lines()
            ) from None

    def _last_lines(self) -> str:
        tail = self.log.tail()
        return f"; its last lines:\n{tail}" if tail else "; it wrote nothing"

    async def _read(self, reader: asyncio.StreamReader, stream: Stream) -> None:
        pending = ""
        with open(self.process.log_path, "a", encoding="utf-8", errors="replace") as mirror:
            while chunk := await reader.read(65536):
                text = pending + chunk.decode(errors="replace")
                *lines, pending = text.split("\n")
                # A line without an end is kept whole up to the bound, then cut.
                if len(pending) > MAX_LINE_CHARS:
                    lines.append(pending[:MAX_LINE_CHARS])
                    pending = ""
                lines = [line.rstrip("\r") for line in lines]
                mirror.write("".join(f"{stream}: {line}\n" for line in lines))
                mirror.flush()
                self.log.add(stream, lines)
            if pending:
                self.log.add(stream, [pending])

    async def _drain(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 2)

    async def stop(self) -> None:
        """Stop the app and everything it started; keep what it wrote."""
        await self.process.stop()
        await self._drain()
        for reader in self._readers:
            reader.cancel()
