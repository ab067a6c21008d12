"""A killed command's temporary run folder is removed by the next one (lab/run_folders.py): only
a folder whose maker is gone, never one in use, a --run-dir, or another program's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from wslab import run_folders

ROOT = Path(__file__).resolve().parent.parent

MAKER = (
    "import sys, time\n"
    "from wslab.run_folders import TemporaryRunFolder\n"
    "folder = TemporaryRunFolder()\n"
    "print(folder.path, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def temporary(monkeypatch: pytest.MonkeyPatch):
    """A temporary directory of the test's own, for this process and the ones it starts."""
    directory = Path(tempfile.mkdtemp(prefix="wt"))
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def start_maker(directory: Path) -> tuple[subprocess.Popen, Path]:
    maker = subprocess.Popen(
        [sys.executable, "-c", MAKER],
        env={**os.environ, "TMPDIR": str(directory)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert maker.stdout is not None
    return maker, Path(maker.stdout.readline().strip())


@pytest.mark.fast
def test_a_folder_whose_maker_was_killed_is_removed_and_one_in_use_is_not(temporary: Path) -> None:
    killed, left = start_maker(temporary)
    alive, used = start_maker(temporary)
    try:
        (left / "varnish.shm").write_bytes(b"x" * 1000)
        assert run_folders.sweep() == [], "both makers live"
        killed.kill()
        killed.wait()
        assert left.is_dir(), "a SIGKILL'd maker cannot remove its folder"
        assert run_folders.sweep() == [left]
        assert not left.exists() and used.is_dir()
    finally:
        for maker in (killed, alive):
            maker.kill()
            maker.wait()


@pytest.mark.fast
def test_a_new_folder_removes_the_ones_left_and_its_own_when_done(temporary: Path) -> None:
    killed, left = start_maker(temporary)
    killed.kill()
    killed.wait()
    folder = run_folders.TemporaryRunFolder()
    assert not left.exists() and folder.path.parent == temporary
    assert (folder.path / run_folders.LOCK).is_file()
    assert run_folders.sweep() == [], "its own lock is held"
    folder.remove()
    assert not folder.path.exists()


@pytest.mark.fast
def test_folders_without_the_lock_or_through_a_link_are_never_removed(temporary: Path) -> None:
    given = temporary / "wslab-given"  # a --run-dir, an older wslab's, another program's
    given.mkdir()
    (given / "nginx.conf").write_text("kept")
    elsewhere = Path(tempfile.mkdtemp(prefix="wt-target"))
    try:
        (elsewhere / run_folders.LOCK).write_text("")  # unlocked: its maker would be gone
        (temporary / "wslab-link").symlink_to(elsewhere)
        assert run_folders.sweep() == []
        assert (given / "nginx.conf").is_file() and (elsewhere / run_folders.LOCK).is_file()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.mark.fast
@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_another_users_folder_is_never_removed(temporary: Path) -> None:
    theirs = temporary / "wslab-theirs"
    theirs.mkdir()
    (theirs / run_folders.LOCK).write_text("")  # unlocked: as if its maker were gone
    os.chown(theirs, 65534, 65534)
    assert run_folders.sweep() == [] and (theirs / run_folders.LOCK).is_file()


def test_a_killed_run_leaves_its_folders_to_the_next_one(temporary: Path) -> None:
    """A real run (nginx, Varnish and Chromium started) killed with SIGKILL: its processes go,
    its run folder and Chromium's profile stay until the next wslab command starts."""
    env = {**os.environ, "TMPDIR": str(temporary)}
    topologies = ["-t", "nginx-default", "-t", "varnish-default"]
    run = subprocess.Popen(
        [sys.executable, "-m", "wslab", "run", "--fresh", "--suite", "browser", *topologies],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            list(temporary.glob("wslab-*/varnish-default"))
            and list(temporary.glob("wslab-chromium-*/profile/DevToolsActivePort"))
        ):
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        run.kill()
        run.wait()
    left = sorted(temporary.glob("wslab-*"))
    assert sorted(folder.name.startswith("wslab-chromium-") for folder in left) == [False, True], left
    assert all((folder / run_folders.LOCK).is_file() for folder in left)
    played = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "--fresh", "-t", "direct", "--scenario", "websockets-echo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert played.returncode == 0, played.stderr
    assert list(temporary.glob("wslab-*")) == [], "the killed run's folders, and the new run's own"
