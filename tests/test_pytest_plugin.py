"""The pytest plugin, run by pytest's own pytester on a user's test file: real proxies in front of
a real app, one test per topology."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "websockets-app" / "app.py"

USER_TESTS = """
from websockets.sync.client import connect


def test_echo(wslab_url):
    with connect(wslab_url + "chat") as websocket:
        websocket.send("hi")
        assert websocket.recv(timeout=5) == "hi"


def test_the_app_saw_the_upgrade(wslab_url, wslab_received):
    with connect(wslab_url + "room") as websocket:
        websocket.send("hi")
        websocket.recv(timeout=5)
    (seen,) = wslab_received()
    assert seen.upgraded and seen.request.path == "/room"
    assert seen.closed is not None and seen.closed.closed_by == "client"
"""


def test_each_test_runs_once_per_topology_in_front_of_the_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-v",
        "-p",
        "no:cacheprovider",
        f"--wslab-app={sys.executable} {APP}",
        "--wslab-topology=haproxy-default",
        "--wslab-topology=nginx-websocket",
        timeout=180,
    )
    result.assert_outcomes(passed=4)
    for test in ("test_echo", "test_the_app_saw_the_upgrade"):
        for topology in ("haproxy-default", "nginx-websocket"):
            assert f"test_user.py::{test}[{topology}] PASSED" in result.stdout.str()


def test_ini_options_and_groups_choose_the_topologies(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nwslab_app = {sys.executable} {APP}\nwslab_topologies =\n    replit\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "-k", "test_echo", timeout=180)
    # replit-static refuses every handshake; the three others carry it.
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_echo?replit-static? FAILED*"])


def test_an_unknown_topology_is_a_one_line_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("--wslab-topology=nope", "-p", "no:cacheprovider", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: wslab: unknown topology nope*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_session_without_wslab_fixtures_starts_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--durations=0", timeout=60)
    result.assert_outcomes(passed=1)
    assert "wslab" not in result.stdout.str().split("plugins:", 1)[1].split("\n", 1)[1]


WAITING_TEST = """
import os
import time
from pathlib import Path


def test_waits(wslab_url):
    Path("lab-is-up").write_text(str(os.getpid()))
    time.sleep(120)
"""


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_session_leaves_no_process_of_its_lab(pytester: pytest.Pytester, signum: int) -> None:
    """A CI job's time limit sends SIGTERM, then SIGKILL. On SIGTERM the session tears its lab
    down as on Ctrl-C; on SIGKILL the proxies die with it (parent-death signal) and the group
    keeper kills their workers. Before, on either, nginx's and Apache's workers outlived it."""
    pytester.makepyfile(test_user=WAITING_TEST)
    marker = pytester.path / "lab-is-up"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--wslab-app={sys.executable} {APP}",
            "--wslab-topology=nginx-websocket",
            "--wslab-topology=apache-websocket",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as session:
        try:
            deadline = time.monotonic() + 120
            while not marker.exists() and session.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert marker.exists(), "the session's lab never came up"
            lab = _descendants(session.pid)
            workers = {pid for pid in lab if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()}
            assert workers, "nginx has workers: the processes a dying session used to leave behind"
            session.send_signal(signum)
            output, _ = session.communicate(timeout=60)
        finally:
            if session.poll() is None:
                session.kill()
    if signum == signal.SIGTERM:
        assert session.returncode == 128 + signal.SIGTERM, output
        assert "wslab: SIGTERM ended the session as Ctrl-C does; its labs are stopped" in output
    else:
        assert session.returncode == -signal.SIGKILL, output
    deadline = time.monotonic() + 5
    while (left := {pid for pid in lab if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left}
