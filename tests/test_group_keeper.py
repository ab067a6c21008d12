"""The group keeper (lab/processes.py): when a lab outside a PID namespace dies, even by SIGKILL,
the workers its proxies forked die too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from wslab.processes import KEEPER

pytestmark = pytest.mark.fast


def _leader_and_worker() -> subprocess.Popen[bytes]:
    """A process group like a proxy's: a leader, and a worker it forked."""
    return subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)


def _members(group: int) -> set[int]:
    """The live (not zombie) processes of a process group."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_once_the_lab_is_gone_the_keeper_kills_the_groups_it_still_holds() -> None:
    kept, released = _leader_and_worker(), _leader_and_worker()
    try:
        assert _wait_for(lambda: len(_members(kept.pid)) == 2 and len(_members(released.pid)) == 2)
        program = [sys.executable, "-I", "-S", "-c", KEEPER]
        keeper = subprocess.Popen(program, stdin=subprocess.PIPE, text=True)
        assert keeper.stdin is not None
        keeper.stdin.write(f"+{kept.pid}\n+{released.pid}\n-{released.pid}\n")
        keeper.stdin.flush()
        time.sleep(0.2)
        assert len(_members(kept.pid)) == 2, "the keeper waits for the lab's end"
        keeper.stdin.close()  # as when the lab dies: the kernel closes its end
        assert keeper.wait(5) == 0
        assert _wait_for(lambda: not _members(kept.pid)), "the leader and its worker are killed"
        assert kept.wait(5) == -signal.SIGKILL
        assert len(_members(released.pid)) == 2, "a group the lab took off is left alone"
    finally:
        for group in (kept.pid, released.pid):
            for pid in _members(group):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
