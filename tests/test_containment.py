"""Nothing wslab starts outlives it: kill -9 at random moments, Ctrl-C, exit codes (lab/containment.py).

Real proxies (nginx, Apache, Envoy, Varnish) are started and killed. A process
counts as wslab's if it carries this test's marker in its environment, or names
the run folder in its command line, or holds a file in it open (nginx workers
rewrite their environment area with their title, but keep the error log open).
WSLAB_KILL_SEED=N replays a failed run's kill moments.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ["-t", "nginx-default", "-t", "apache-websocket", "-t", "envoy-websocket", "-t", "varnish-websocket"]
MARK = "WSLAB_TEST_MARK"


class Lab:
    """One ``python -m wslab`` process, its marker and its run folder."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None, **popen: object) -> None:
        self.marker = uuid.uuid4().hex
        self.run_dir = tmp / f"run-{self.marker[:8]}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wslab", *args, "--run-dir", str(self.run_dir)],
            cwd=ROOT,
            env={**os.environ, **(env or {}), MARK: self.marker},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,  # type: ignore[arg-type]
        )

    def leftovers(self) -> dict[int, str]:
        """Processes of this run still alive (the test's own excluded): pid -> command line."""
        found = {}
        needle = f"{MARK}={self.marker}".encode()
        folder = str(self.run_dir)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                ours = needle in (proc / "environ").read_bytes() or folder.encode() in cmdline
                if not ours:
                    files = [os.readlink(fd) for fd in (proc / "fd").iterdir()] + [os.readlink(proc / "cwd")]
                    ours = any(name.startswith(folder) for name in files)
            except OSError:
                continue  # gone meanwhile, or a zombie
            if ours:
                found[int(proc.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:100]
        return found

    def wait_for_nothing_left(self, within: float) -> tuple[dict[int, str], list[str]]:
        """Wait up to ``within`` s for the kernel to finish; return what is still there."""
        deadline = time.monotonic() + within
        while True:
            left = self.leftovers()
            sockets = loopback_listeners(left)
            if (not left and not sockets) or time.monotonic() > deadline:
                return left, sockets
            time.sleep(0.05)

    def clean_up(self) -> None:
        """Kill whatever of this run is left, so that a failure does not leak proxies."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def loopback_listeners(pids: dict[int, str]) -> list[str]:
    """TCP sockets listening on 127.0.0.1 that one of ``pids`` holds: 'port pid'."""
    listening = {}
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and address.startswith("0100007F:"):
                listening[f"socket:[{inode}]"] = int(address.split(":")[1], 16)
    held = []
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        held += [f"{listening[link]} {pid}" for link in links if link in listening]
    return held


def contained_mode(env: dict[str, str] | None = None) -> str:
    """The containment a ``wslab run`` gets here."""
    probe = (
        "import sys; sys.argv = ['wslab', 'run']\n"
        "from wslab import containment; containment.enter(); print(containment.mode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def normal_duration(tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long the matrix takes when nobody kills it; it must exit 1 (cells fail)."""
    lab = Lab(tmp_path_factory.mktemp("normal"), "run", *MATRIX)
    started = time.monotonic()
    try:
        _, stderr = lab.process.communicate(timeout=120)
        took = time.monotonic() - started
        assert lab.process.returncode == 1, stderr
        assert lab.wait_for_nothing_left(0) == ({}, [])
    finally:
        lab.clean_up()
    return took


def kill_at_random_moments(tmp: Path, duration: float, kills: int, env: dict[str, str], group: bool) -> None:
    """SIGKILL ``kills`` runs, each at a moment drawn uniformly from the normal run; with ``group``,
    every other kill, the first included, goes to the whole process group."""
    seed = int(os.environ.get("WSLAB_KILL_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    mode = contained_mode(env)
    for kill in range(kills):
        moment = rng.uniform(0, duration)
        by_group = group and kill % 2 == 0
        lab = Lab(tmp, "run", *MATRIX, env=env, start_new_session=by_group)
        try:
            time.sleep(moment)
            if by_group:
                os.killpg(lab.process.pid, signal.SIGKILL)
            else:
                lab.process.kill()
            lab.process.wait()
            left, sockets = lab.wait_for_nothing_left(2.0)
            assert (left, sockets) == ({}, []), (
                f"containment {mode}: kill -9 of {'the process group' if by_group else 'wslab'} "
                f"{moment:.2f} s in (kill {kill + 1}/{kills}, WSLAB_KILL_SEED={seed}, "
                f"normal run {duration:.1f} s) left these running: {left}, listening: {sockets}"
            )
        finally:
            lab.clean_up()


def test_kill_9_at_any_moment_leaves_nothing(tmp_path: Path, normal_duration: float) -> None:
    assert contained_mode() != "off", "containment is off: is WSLAB_CONTAINMENT=off set?"
    kill_at_random_moments(tmp_path, normal_duration, 10, {}, group=False)


def test_fallback_survives_kill_9_of_the_whole_process_group(tmp_path: Path, normal_duration: float) -> None:
    """Where no namespace can be made (Docker's seccomp profile), the subreaper guardian cleans up."""
    env = {"WSLAB_CONTAINMENT": "subreaper"}
    assert contained_mode(env) == "subreaper"
    kill_at_random_moments(tmp_path, normal_duration, 1, env, group=True)


def test_ctrl_c_to_the_process_group_stops_everything_and_exits_130(tmp_path: Path) -> None:
    # The timeouts suite holds connections for seconds (the default matrix's run can be over
    # within a second of its probe server's start): the Ctrl-C lands while cells are in flight.
    lab = Lab(tmp_path, "run", *MATRIX, "--suite", "timeouts", start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (lab.run_dir / "probe-server.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # proxies starting or running
        # As a terminal's Ctrl-C does: the whole foreground process group gets it.
        os.killpg(lab.process.pid, signal.SIGINT)
        _, stderr = lab.process.communicate(timeout=30)
        assert lab.process.returncode == 130, stderr
        assert stderr.count("interrupted; everything it started is stopped") == 1, stderr
        assert "Traceback" not in stderr
        assert lab.leftovers() == {}, "still running once wslab has exited"
    finally:
        lab.clean_up()


def test_death_by_signal_passes_through(tmp_path: Path) -> None:
    """SIGHUP (a closed terminal) kills the lab as before; the shell sees death by SIGHUP."""
    lab = Lab(tmp_path, "up", "-t", "nginx-default")
    try:
        assert lab.process.stdout is not None
        for line in lab.process.stdout:
            if "Ctrl-C" in line:
                break
        lab.process.send_signal(signal.SIGHUP)
        lab.process.communicate(timeout=30)
        assert lab.process.returncode == -signal.SIGHUP
        assert lab.wait_for_nothing_left(2.0) == ({}, [])
    finally:
        lab.clean_up()


def test_usage_error_exit_code_passes_through(tmp_path: Path) -> None:
    lab = Lab(tmp_path, "run", "-t", "nope")
    _, stderr = lab.process.communicate(timeout=60)
    assert lab.process.returncode == 2
    assert stderr.count("unknown topology nope") == 1, "printed by the command only, once"


def test_signals_reach_the_command_exactly_once(tmp_path: Path) -> None:
    """Sent to wslab, to its process group (Ctrl-C) or to the supervisor: one delivery each."""
    script = tmp_path / "count.py"
    script.write_text(
        "import signal, sys, time\n"
        "sys.argv = ['wslab', 'run']\n"
        "from lab import containment\n"
        "containment.enter()\n"
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: got.append(1))\n"
        "print(containment.mode(), flush=True)\n"
        "end = time.monotonic() + 1.5\n"
        "while time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
        "print(len(got), flush=True)\n"
        "sys.exit(5)\n"
    )
    for target in ("wslab", "group", "supervisor"):
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        mode = process.stdout.readline().strip()
        if target == "wslab":
            os.kill(process.pid, signal.SIGTERM)
        elif target == "group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            os.kill(int(children[0]), signal.SIGTERM)
        count, _ = process.communicate(timeout=30)
        expected = "0" if target == "supervisor" and mode == "subreaper" else "1"
        assert (count.strip(), process.returncode) == (expected, 5), f"{mode}: SIGTERM to the {target}"


def test_off_means_one_process(tmp_path: Path) -> None:
    assert contained_mode({"WSLAB_CONTAINMENT": "off"}) == "off"
    lab = Lab(tmp_path, "up", "-t", "direct", env={"WSLAB_CONTAINMENT": "off"})
    try:
        assert lab.process.stdout is not None
        for line in lab.process.stdout:
            if "Ctrl-C" in line:
                break
        wslabs = [cmd for cmd in lab.leftovers().values() if cmd.startswith(f"{sys.executable} -m wslab up ")]
        assert len(wslabs) == 1, wslabs
    finally:
        lab.clean_up()


@pytest.mark.fast
def test_a_ctrl_c_once_the_command_has_ended_does_not_kill_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finalizing, the interpreter gives SIGINT its default action back: a Ctrl-C in those last
    0.1 s killed a run whose matrix was printed (death by SIGINT, no message). The command line
    ignores it once the command has ended, and exits with the command's status."""
    from wslab import cli, entry

    monkeypatch.setattr(sys, "argv", ["wslab", "report", "r.json"])
    monkeypatch.setattr(cli, "main", lambda: 7)
    before = signal.getsignal(signal.SIGINT)
    try:
        assert entry.main() == 7
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
