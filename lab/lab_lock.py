"""The warm lab's lock: one ``wslab up`` per state file, and who it is.

A ``wslab up`` holds an exclusive ``flock`` on a file beside its state file for as long as it
runs, from before its first process starts until after its last one stopped, and writes into it
the pid and start time of the process that ends the lab when it ends
(:func:`wslab.containment.outermost_pid`). The kernel releases the lock when that process dies,
however it dies, so the lock says what the state file cannot: whether a lab is still alive, even
one that does not answer on its socket or has not written its state yet. A second ``wslab up``
finds it held and says whose it is; ``wslab down`` signals a lab that does not answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import containment
from .errors import LabFailure


def lock_path(state: Path) -> Path:
    return state.with_name(f"{state.name}.lock")


@dataclass(frozen=True)
class Holder:
    """The process that holds a lab's lock, as it wrote itself into the lock file."""

    pid: int
    started: int
    """Its start time (clock ticks after boot): a pid the kernel gave to another process since
    is not this one."""

    def alive(self) -> bool:
        return self.pid > 0 and start_time(self.pid) == self.started

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if the process is still the one that wrote the lock; False if not."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except OSError:
            return False
        return True


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (field 22 of /proc/PID/stat), or None if there is none or it
    has exited (a zombie, not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def hold(state: Path) -> Iterator[None]:
    """Hold the lock of the lab whose state file is ``state`` while the block runs;
    LabFailure, naming the holder, if another lab holds it."""
    path = lock_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _take(descriptor, state)
        pid = containment.outermost_pid()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{pid} {start_time(pid) or 0}\n".encode(), 0)
        yield
    finally:
        # Closing releases the lock; the file stays, for the next lab to take.
        os.close(descriptor)


def _take(descriptor: int, state: Path) -> None:
    # Another command looking (:func:`holder`) holds a shared lock for a moment: try again.
    deadline = time.monotonic() + 1
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            who = holder(state)
            if who is not None or time.monotonic() > deadline:
                raise LabFailure(held_by(who)) from None
            time.sleep(0.01)


def holder(state: Path) -> Holder | None:
    """Who holds the lock of the lab whose state file is ``state``; None when nobody does (no
    lab runs). A holder that has not written itself yet has pid 0."""
    try:
        descriptor = os.open(lock_path(state), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(descriptor)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def _read_holder(descriptor: int) -> Holder:
    try:
        pid, started = os.pread(descriptor, 64, 0).split()
        return Holder(int(pid), int(started))
    except ValueError:
        return Holder(0, 0)


def held_by(who: Holder | None) -> str:
    named = f" (pid {who.pid})" if who is not None and who.pid else ""
    return f"a warm lab already runs{named}: `wslab down` stops it"


def wait_ended(state: Path, who: Holder, seconds: float) -> bool:
    """Wait up to ``seconds`` for the lab ``who`` to end: nobody holds the lock (it has stopped
    every process it started) and its process has exited. Whether it has."""
    deadline = time.monotonic() + seconds
    while holder(state) is not None or who.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_by_signal(state: Path, who: Holder, grace: float) -> bool:
    """Stop the lab ``who`` as Ctrl-C would (SIGTERM: it tears down), and kill it if it is still
    there after ``grace`` seconds (its containment takes its processes with it). Whether it
    ended."""
    if who.signal(signal.SIGTERM) and wait_ended(state, who, grace):
        return True
    who.signal(signal.SIGKILL)
    return wait_ended(state, who, 5)
