"""Child processes that cannot outlive the lab.

Each child gets its own process group, so that teardown can signal a proxy
and every worker it forked. In a PID namespace (lab/containment.py) the kernel
ends them all with the lab. Elsewhere (containment's fallbacks, and a lab in
another program's process, such as the pytest plugin's) each child gets a
parent-death signal, so that a lab killed with SIGKILL takes its direct
children with it, and the :class:`GroupKeeper` kills what is left of their
groups: the workers (grandchildren) the signal does not reach. The parent-death
signal needs Python code between fork and exec, which costs some 20 ms of a
blocked event loop per child, and a cold run starts dozens: the namespace,
when there is one, spares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import containment
from .probe.wire import READINESS_REQUEST

PR_SET_PDEATHSIG = 1
NAMESPACED = (containment.PID_NAMESPACE, containment.USER_PID_NAMESPACE)
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _group_options() -> dict[str, Any]:
    """How a child gets its own process group, and dies with the lab where nothing else sees to it."""
    if containment.mode() in NAMESPACED:
        # The kernel ends the whole namespace with the supervisor: a new session is enough.
        return {"start_new_session": True}
    return {"preexec_fn": _die_with_parent}


KEEPER = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    sign, group = line[:1], int(line[1:])
    (groups.add if sign == "+" else groups.discard)(group)
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""
"""The keeper's program: it learns the groups from its standard input, and once every copy of the
lab's end of that pipe is closed (the lab has exited, however it died), kills those not taken
off again."""


class GroupKeeper:
    """A process that SIGKILLs the process groups the lab leaves alive when it dies.

    The lab adds each child's group when it starts one and takes it off once :meth:`ManagedProcess.stop`
    has killed it: a lab that tears down leaves the keeper nothing to do, and a group id is never
    killed after the lab saw it end (the id could belong to someone else by then). The keeper is
    in a session of its own, so a Ctrl-C or a kill of the lab's process group spares it.
    """

    _keeper: subprocess.Popen[str] | None = None

    @classmethod
    def add(cls, group: int) -> None:
        cls._send(f"+{group}\n")

    @classmethod
    def remove(cls, group: int) -> None:
        cls._send(f"-{group}\n")

    @classmethod
    def _send(cls, line: str) -> None:
        if cls._keeper is None:
            cls._keeper = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", KEEPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
            )
        assert cls._keeper.stdin is not None
        # Lines shorter than PIPE_BUF are written whole, by forked copies of the lab too.
        with contextlib.suppress(OSError, ValueError):
            cls._keeper.stdin.write(line)
            cls._keeper.stdin.flush()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (connections in TIME_WAIT do not count, as they do
    not for a proxy, which binds with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


TCP_LISTEN = "0A"


def listening(port: int) -> bool:
    """Whether a socket listens on ``port`` (any local address), read from /proc/net/tcp{,6}:
    no connection is made, so the server logs nothing about it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if (
                        len(fields) > 3
                        and fields[3] == TCP_LISTEN
                        and int(fields[1].rsplit(":", 1)[1], 16) == port
                    ):
                        return True
        except OSError:
            continue
    return False


async def wait_listening_quietly(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Return once something listens on ``port``, without connecting to it.

    Raises TimeoutError when ``timeout`` passes, ProcessLookupError as soon as ``alive()`` is false.
    """
    deadline = time.monotonic() + timeout
    while not listening(port):
        if not alive():
            raise ProcessLookupError
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


def log_tail(path: Path, lines: int = 12) -> str:
    """The last lines of a log file, or '' if there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class ManagedProcess:
    """A child process with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, stdout: int | None = None, stderr: int | None = None) -> None:
        """Start it; its output goes to the log file unless ``stdout``/``stderr`` say otherwise
        (asyncio.subprocess.PIPE)."""
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log,
                stderr=stderr if stderr is not None else log,
                env=self.env,
                cwd=self.cwd,
                **_group_options(),
            )
        if containment.mode() not in NAMESPACED:
            GroupKeeper.add(self.process.pid)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait_listening(self, host: str, port: int, timeout: float, http: bool = False) -> None:
        """Return once ``host:port`` accepts connections (and answers HTTP, if ``http``).

        Raises :class:`ProcessFailed` if the process dies or the time runs out first.
        """
        try:
            await wait_answering(host, port, timeout, http, alive=lambda: self.running)
        except ProcessLookupError:
            assert self.process is not None
            raise ProcessFailed(self, f"exited with status {self.process.returncode}") from None
        except TimeoutError:
            raise ProcessFailed(self, f"not ready on {host}:{port} after {timeout:g} s") from None

    async def stop(self, grace: float = 3.0) -> None:
        """Terminate the process group; kill it if it lingers."""
        if self.process is None:
            return
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                break
            try:
                await asyncio.wait_for(self.process.wait(), wait)
            except TimeoutError:
                continue
            # Workers may still be exiting after their leader is gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            break
        if containment.mode() not in NAMESPACED:
            GroupKeeper.remove(self.process.pid)


FORWARDED_SETTLE = 0.25
"""How long a connection to a published port must stay open to count (see wait_answering)."""


async def wait_answering(
    host: str,
    port: int,
    timeout: float,
    http: bool = False,
    alive: Callable[[], bool] = lambda: True,
    settle: float = 0.0,
) -> None:
    """Return once ``host:port`` accepts a connection, and answers an HTTP request if ``http``.

    With ``settle``, an accepted connection counts only if it is not closed within that many
    seconds: a port forwarder (Docker's docker-proxy for a published port) accepts whether or not
    the container listens behind it, and closes at once when it does not.

    Raises TimeoutError when ``timeout`` passes, ProcessLookupError as soon as ``alive()`` is false.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise ProcessLookupError
        if await _answers(host, port, http, settle):
            return
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


async def _answers(host: str, port: int, http: bool, settle: float = 0.0) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        if not http:
            if settle:
                try:
                    # Closed (b"") by the forwarder: nothing listens behind it yet.
                    return await asyncio.wait_for(reader.read(1), settle) != b""
                except TimeoutError:
                    return True
            return True
        # The probe server and the tap answer this request themselves and record nothing.
        writer.write(READINESS_REQUEST + b"HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
        status = (await asyncio.wait_for(reader.readline(), 2)).split()
        # A proxy that listens before its routes are loaded answers 404 itself (Traefik); the
        # probe server behind it never does.
        return len(status) > 1 and status[0].startswith(b"HTTP/") and status[1] != b"404"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


class ProcessFailed(Exception):
    """A child process failed to start; carries its log tail."""

    def __init__(self, process: ManagedProcess, reason: str) -> None:
        self.process = process
        self.reason = reason
        self.log_tail = log_tail(process.log_path)
        super().__init__(f"{process.name} {reason}")
