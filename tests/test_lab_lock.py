"""The warm lab's lock (wslab.lab_lock), with real processes holding it: one lab per state file,
the holder named, released however it dies, and stopped by signal when it does not answer."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wslab import lab_lock
from wslab.errors import LabFailure

pytestmark = pytest.mark.fast

HOLDER = """
import signal, sys, time
from pathlib import Path
from wslab import lab_lock
if sys.argv[2] == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with lab_lock.hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def holding(state: Path, mode: str = "") -> subprocess.Popen:
    """A process that holds the lock of ``state`` until it is stopped."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), mode or "-"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_nobody_holds_the_lock_of_a_lab_never_started(tmp_path: Path) -> None:
    assert lab_lock.holder(tmp_path / "lab.json") is None
    with lab_lock.hold(tmp_path / "lab.json"):
        pass
    assert lab_lock.holder(tmp_path / "lab.json") is None, "released with the block"


def test_a_second_lab_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    first = holding(state)
    try:
        holder = lab_lock.holder(state)
        assert holder == lab_lock.Holder(first.pid, lab_lock.start_time(first.pid) or -1)
        assert holder.alive()
        refused = rf"a warm lab already runs \(pid {first.pid}\): `wslab down`"
        with pytest.raises(LabFailure, match=refused), lab_lock.hold(state):
            pass
    finally:
        first.kill()
        first.wait()
    assert lab_lock.holder(state) is None, "a SIGKILL releases it"
    with lab_lock.hold(state):
        assert lab_lock.holder(state) is not None


def test_a_pid_given_to_another_process_is_not_signalled(tmp_path: Path) -> None:
    process = holding(tmp_path / "lab.json")
    try:
        holder = lab_lock.holder(tmp_path / "lab.json")
        assert holder is not None
        reused = lab_lock.Holder(holder.pid, holder.started + 1)
        assert not reused.alive() and not reused.signal(signal.SIGTERM)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_stopped_by_sigterm_when_it_tears_down(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    process = holding(state)
    holder = lab_lock.holder(state)
    assert holder is not None
    assert lab_lock.stop_by_signal(state, holder, grace=10)
    assert process.wait(5) == -signal.SIGTERM, "SIGTERM was enough: no SIGKILL"


def test_killed_when_it_does_not_stop_within_the_grace(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    process = holding(state, "ignore-sigterm")
    holder = lab_lock.holder(state)
    assert holder is not None
    assert lab_lock.stop_by_signal(state, holder, grace=0.3)
    assert process.wait(5) == -signal.SIGKILL


def test_down_stops_a_lab_still_starting_by_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from wslab.commands.warm_lab import down_command

    state = tmp_path / "lab.json"
    monkeypatch.setenv("WSLAB_STATE", str(state))
    lab = holding(state)  # its lock taken, no state file written yet
    console = Console(record=True, width=200)
    assert down_command(argparse.Namespace(), console) == 0
    assert console.export_text() == (
        f"the warm lab (pid {lab.pid}) is still starting: stopping it by signal\nthe warm lab stopped\n"
    )
    assert lab.wait(5) == -signal.SIGTERM
    console = Console(record=True, width=200)
    down_command(argparse.Namespace(), console)
    assert console.export_text() == "no warm lab is running\n"
