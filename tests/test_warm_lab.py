"""A warm lab: `wslab up --detach` keeps topologies running, `wslab run` plays its cells against
them (the same evidence as a cold run), a changed topology folder is redeployed alone, a run that
asks for something else says why and starts its own, and `wslab down` (or a SIGKILL) leaves
nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import comparable

from wslab import forkserver, lab_lock, results, run_folders, warm
from wslab.backends import ACCELERATED, StackOptions
from wslab.backends.local import log_size, read_log
from wslab.cli import build_parser
from wslab.commands.common import probe_options
from wslab.records import DeploymentStatus
from wslab.topology import load_topologies, select_topologies

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ["direct", "nginx-default", "haproxy-default", "varnish-default"]


class Lab:
    """wslab commands with a state file and a copy of the topology folders of their own."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        shutil.copytree(ROOT / "compose", self.home / "compose")
        shutil.copytree(ROOT / "scenarios", self.home / "scenarios")
        self.state = tmp_path / "cache" / "lab.json"
        self.env = {**os.environ, "WSLAB_HOME": str(self.home), "WSLAB_STATE": str(self.state)}

    def __call__(
        self, *args: str, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "wslab", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, "COLUMNS": "100"},
            cwd=cwd,
        )

    def forkserver_log(self) -> str:
        """What the lab's fork server logged: a line per run handed off to it, and its end."""
        run_dir = Path(json.loads(self.state.read_text())["run_dir"])
        return (run_dir / "forkserver.log").read_text()

    def run(self, out: Path, *args: str) -> subprocess.CompletedProcess:
        command = ["run", "--json", str(out), *args]
        for name in TOPOLOGIES:
            command += ["-t", name]
        completed = self(*command)
        assert completed.returncode in (0, 1), completed.stderr[-3000:]
        return completed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: its parent (this test's subprocess call) has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"


def up(lab: Lab, *args: str) -> int:
    """`wslab up --detach` with the topologies; the pid of the lab it left running."""
    command = ["up", "--detach", "--accelerated", *args]
    for name in TOPOLOGIES:
        command += ["-t", name]
    started = lab(*command)
    assert started.returncode == 0, started.stderr
    assert "ws://127.0.0.1:" in started.stdout and "wslab down" in started.stdout
    found = re.search(r"pid (\d+)", started.stdout)
    assert found, started.stdout
    return int(found[1])


@pytest.fixture
def lab(tmp_path: Path):
    lab = Lab(tmp_path)
    yield lab
    lab("down", timeout=60)


def test_the_run_up_prints_plays_on_its_lab(lab: Lab, tmp_path: Path) -> None:
    """`wslab up` defaults to faithful time limits and `wslab run` to accelerated ones: the run it
    names is one that uses it, as typed."""
    started = lab("up", "--detach", "-t", "direct", "-t", "nginx-default")
    assert started.returncode == 0, started.stderr
    named = re.search(
        r"^Its cells play on these topologies \(a warm lab\) with:\n  (wslab run.*)$", started.stdout, re.M
    )
    assert named and named[1] == "wslab run --faithful -t direct -t nginx-default", started.stdout
    played = lab(*named[1].split()[1:], "--json", str(tmp_path / "run.json"))
    assert played.returncode in (0, 1), played.stderr
    assert "(warm lab)" in played.stdout and "not using the warm lab" not in played.stderr
    default = lab("run", "-t", "direct", "--json", str(tmp_path / "default.json"))
    assert "not using the warm lab (wslab up): it runs faithful (--faithful) time limits" in default.stderr


def test_a_lab_with_your_app_names_no_run(lab: Lab) -> None:
    app = f"{sys.executable} {ROOT / 'examples' / 'websockets-app' / 'app.py'}"
    started = lab("up", "--detach", "--accelerated", "--app", app, "-t", "direct")
    assert started.returncode == 0, started.stderr
    assert "This lab runs your app: a `wslab run` starts topologies of its own" in started.stdout
    assert "Its cells play" not in started.stdout and "What your app receives:" in started.stdout


def clients_of(port: int) -> int:
    """How many connections to 127.0.0.1:``port`` are established (/proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    fields = [line.split() for line in lines]
    return sum(1 for f in fields if f[2] == f"0100007F:{port:04X}" and f[3] == "01")


def test_run_plays_its_cells_on_the_warm_lab_as_a_cold_run_would(lab: Lab, tmp_path: Path) -> None:
    pid = up(lab)
    # Detached, the lab itself follows nothing the probe server records: the server has no
    # subscriber to send its reports to until a run or a watch comes.
    assert clients_of(json.loads(lab.state.read_text())["control"][1]) == 0
    warm_out, cold_out = tmp_path / "warm.json", tmp_path / "cold.json"
    warm_run = lab.run(warm_out)
    assert "(warm lab)" in warm_run.stdout and "not using the warm lab" not in warm_run.stderr
    # The warm run was played by a child of the lab's fork server (no Python start-up), the
    # fresh one, which starts its own topologies, in the user's process.
    assert lab.forkserver_log().count("a wslab run handed off") == 1
    cold_run = lab.run(cold_out, "--fresh")
    assert "(warm lab)" not in cold_run.stdout
    assert lab.forkserver_log().count("a wslab run handed off") == 1
    kept, fresh = results.load(warm_out), results.load(cold_out)
    assert kept.options.warm_lab and not fresh.options.warm_lab
    assert comparable(kept) == comparable(fresh)
    # The proxies' log lines are each cell's own, as in a cold run (the lab's log has every run's),
    # Varnish's too, which the lab dumps from its shared memory once that topology's cells are done.
    for logged in ("nginx-default", "varnish-default"):
        for run in (kept, fresh):
            cells = [cell for cell in run.cells if cell.topology == logged and cell.cell_id]
            assert all(cell.cell_id in line for cell in cells for line in cell.proxy_log)
            assert sum(bool(cell.proxy_log) for cell in cells) >= 5, (logged, run.options.warm_lab)

    down = lab("down")
    assert down.returncode == 0 and "the warm lab stopped" in down.stdout
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid) and not lab.state.exists()
    assert list(lab.state.parent.glob("*.sock")) == []
    assert "no warm lab is running" in lab("down").stdout


def test_a_changed_topology_is_redeployed_alone(lab: Lab, tmp_path: Path) -> None:
    up(lab)
    before = json.loads(lab.state.read_text())["topologies"]
    config = lab.home / "compose" / "nginx-default" / "nginx.conf"
    config.write_text(config.read_text() + "\n# edited while the lab runs\n")
    lab.run(tmp_path / "r.json")
    after = json.loads(lab.state.read_text())["topologies"]
    assert after["nginx-default"]["fingerprint"] != before["nginx-default"]["fingerprint"]
    assert "# edited while the lab runs" in after["nginx-default"]["config_text"]
    # The others kept their processes (and so their ports).
    for name in ("direct", "haproxy-default"):
        assert after[name] == before[name]
    run = results.load(tmp_path / "r.json")
    assert (
        "# edited while the lab runs" in next(t for t in run.topologies if t.name == "nginx-default").config
    )


def test_a_run_that_asks_for_something_else_says_why(lab: Lab, tmp_path: Path) -> None:
    up(lab)
    faithful = lab.run(tmp_path / "f.json", "--faithful", "--scenario", "websockets-echo")
    said = [line for line in faithful.stderr.splitlines() if line.startswith("wslab:")]
    assert said == [
        "wslab: not using the warm lab (wslab up): it runs accelerated (--accelerated, x0.02) time "
        "limits, this run asks for faithful (--faithful) ones; starting new topologies"
    ]
    assert not results.load(tmp_path / "f.json").options.warm_lab


def test_a_killed_lab_leaves_nothing_and_its_state_is_ignored(lab: Lab, tmp_path: Path) -> None:
    pid = up(lab)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Its proxies died with it (it is contained), so nothing answers on its ports.
    state = warm.read_state(lab.state)
    assert state is not None
    ports = [t.endpoint[1] for t in state.topologies.values() if t.endpoint]
    time.sleep(0.5)
    listening = Path("/proc/net/tcp").read_text()
    assert not [port for port in ports if f":{port:04X} 00000000:0000 0A" in listening]
    # What only the lab removes when it stops is still there: its temporary run folder (Varnish's
    # shared memory log alone is 80 MB) and its sockets.
    left = [Path(state.run_dir), Path(state.socket), Path(state.forkserver)]
    assert all(path.exists() for path in left)
    run = lab.run(tmp_path / "r.json", "--scenario", "websockets-echo")
    assert "warm lab" not in run.stderr + run.stdout
    assert not lab.state.exists(), "the stale state file was removed"
    assert [path for path in left if path.exists()] == [], "and what the killed lab left"


def innermost(pid: int) -> int:
    """The last of the chain of ``wslab up`` processes from ``pid`` down: the command itself,
    below the user's process and its supervisor (lab/containment.py)."""
    while children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        ups = [int(c) for c in children if "\0wslab\0up\0" in Path(f"/proc/{c}/cmdline").read_text()]
        if not ups:
            break
        pid = ups[0]
    return pid


def test_one_lab_at_a_time_and_down_stops_one_that_does_not_answer(lab: Lab, tmp_path: Path) -> None:
    pid = up(lab)
    again = lab("up", "--detach", "--accelerated", *[arg for name in TOPOLOGIES for arg in ("-t", name)])
    assert again.returncode == 0 and f"running already (pid {pid})" in again.stdout, (
        "the same lab: left as is"
    )
    refused = f"a warm lab already runs (pid {pid}): `wslab down` stops it"
    for other in (["up", "--detach", "-t", "direct"], ["up", "-t", "direct"]):
        other_lab = lab(*other, timeout=30)
        assert other_lab.returncode == 3 and refused in other_lab.stderr, other_lab.stderr
    state = warm.read_state(lab.state)
    assert state is not None
    ports = [t.endpoint[1] for t in state.topologies.values() if t.endpoint]

    command = innermost(pid)
    assert command != pid
    os.kill(command, signal.SIGSTOP)
    try:
        run = lab.run(tmp_path / "r.json", "--scenario", "websockets-echo")
        assert f"not using the warm lab (wslab up, pid {pid}): it does not answer;" in run.stderr
        down = subprocess.Popen(
            [sys.executable, "-m", "wslab", "down"], env=lab.env, stdout=subprocess.PIPE, text=True
        )
        assert down.stdout is not None
        assert down.stdout.readline() == f"the warm lab (pid {pid}) does not answer: stopping it by signal\n"
    finally:
        # Stopped, it keeps the SIGTERM pending; going on, it tears down as on Ctrl-C.
        os.kill(command, signal.SIGCONT)
    assert down.wait(30) == 0 and down.stdout.read() == "the warm lab stopped\n"
    assert not alive(pid) and not alive(command)
    listening = Path("/proc/net/tcp").read_text()
    assert not [port for port in ports if f":{port:04X} 00000000:0000 0A" in listening]
    assert not lab.state.exists() and not Path(state.run_dir).exists(), "it tore down, as on Ctrl-C"
    assert lab("down").stdout == "no warm lab is running\n"


HELD = """\
suite: held
description: a connection from the user's environment, then one held open for 10 s (accelerated)
scenarios:
  - id: named
    title: named after the user's environment
    tier: informational
    models: a client
    steps:
      - connect: {path: "/named/{env:WSLAB_TEST_NAME}"}
      - close: {code: 1000}
    expect:
      status: 101
  - id: held
    title: held open
    tier: informational
    models: a client that waits
    steps:
      - connect: {path: /held, server_ping: null}
      - hold: {seconds: 500}
    expect:
      survives: true
"""


def processes_in(folder: Path) -> list[int]:
    """The processes working in ``folder`` (a handed-off run works in its user's folder)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "cwd") == str(folder):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_handed_off_run_is_the_users_own(lab: Lab, tmp_path: Path) -> None:
    """Its output, exit status, working folder and environment are the user's; Ctrl-C reaches it;
    a SIGKILL of the user's process ends it and everything it started."""
    up(lab)
    work = tmp_path / "work"
    work.mkdir()
    scenarios = ["--scenario", "websockets-echo", "--scenario", "browser-tab-get"]
    played = lab("run", "--json", "r.json", "-t", "direct", *scenarios, cwd=work)
    assert played.returncode == 1, played.stderr  # browser-tab-get fails on direct: a 426
    assert played.stdout.startswith("wslab · 1 topology × 2 scenarios · local backend (warm lab)")
    assert "json: r.json" in played.stdout + played.stderr and (work / "r.json").is_file()
    assert lab.forkserver_log().count("a wslab run handed off") == 1
    # A command that ends at once (its start and end reach the user's process together) runs once.
    mistaken = lab("run", "-t", "direct", "--scenario", "no-such-scenario", cwd=work)
    assert mistaken.returncode == 2 and mistaken.stderr.count("no scenario matches no-such-scenario") == 1
    assert lab.forkserver_log().count("a wslab run handed off") == 2
    # An {env:NAME} of the scenarios is read from the user's environment, not the lab's.
    (work / "held.yaml").write_text(HELD)
    env = {**lab.env, "WSLAB_TEST_NAME": "from-the-user"}
    named = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "-t", "direct", "-s", "held.yaml", "--scenario", "named"],
        cwd=work,
        env={**env, "COLUMNS": "100"},
        capture_output=True,
        text=True,
    )
    assert named.returncode == 0, named.stdout + named.stderr
    assert lab.forkserver_log().count("a wslab run handed off") == 3
    command = [sys.executable, "-m", "wslab", "run", "-t", "direct", "-s", "held.yaml", "--scenario", "held"]

    interrupted = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: lab.forkserver_log().count("handed off") == 4, "the held run was not handed off")
    time.sleep(1)
    interrupted.send_signal(signal.SIGINT)
    out, err = interrupted.communicate(timeout=30)
    assert interrupted.returncode == 130, err
    assert b"interrupted; everything it started is stopped" in err
    wait_for(lambda: not processes_in(work), "the interrupted run left processes behind", 10)

    folders = set(Path(tempfile.gettempdir()).glob("wslab-*"))
    killed = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: lab.forkserver_log().count("handed off") == 5, "the held run was not handed off")
    time.sleep(1)
    assert processes_in(work), "the handed-off run works in the user's folder"
    killed.kill()
    killed.wait()
    wait_for(lambda: not processes_in(work), "the run outlived its user's process", 10)
    assert lab.forkserver_log().count(": ended with status -9") == 1
    # A warm run makes no run folder: the killed one left none.
    assert set(Path(tempfile.gettempdir()).glob("wslab-*")) <= folders

    off = lab("run", "-t", "direct", "--scenario", "websockets-echo", cwd=work)
    assert off.returncode == 0
    with_off = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "-t", "direct", "--scenario", "websockets-echo"],
        cwd=work,
        env={**lab.env, "WSLAB_FORKSERVER": "off"},
        capture_output=True,
        check=True,
    )
    assert b"(warm lab)" in with_off.stdout
    assert lab.forkserver_log().count("handed off") == 6, "WSLAB_FORKSERVER=off runs in the user's process"


def test_a_run_with_other_code_or_paths_is_not_handed_off(lab: Lab, tmp_path: Path) -> None:
    up(lab)
    other_home = tmp_path / "other"
    shutil.copytree(lab.home, other_home)
    elsewhere = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "-t", "direct", "--scenario", "websockets-echo"],
        env={**lab.env, "WSLAB_HOME": str(other_home)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "(warm lab)" in elsewhere.stdout, "the lab still plays its cells"
    assert "declined a wslab run: another WSLAB_HOME, WSLAB_CACHE or HOME" in lab.forkserver_log()
    assert "handed off" not in lab.forkserver_log()
    # Whatever else reaches its socket is refused or dropped, and it keeps serving.
    address = json.loads(lab.state.read_text())["forkserver"]
    for garbage in (b"not json\n", b"{}\n", b'{"argv": ["run"], "cwd": "/", "env": {}}\n', b"x" * 2_000_000):
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(10)
            connection.connect(address)
            assert connection.recv(1000) == b'{"ready": true}\n'
            answer = b""
            with contextlib.suppress(OSError):
                connection.sendall(garbage)
                while chunk := connection.recv(1000):
                    answer += chunk
            assert answer in (b"", b'{"declined": "not from this user, or without its standard streams"}\n')
    played = lab("run", "-t", "direct", "--scenario", "websockets-echo")
    assert played.returncode == 0 and lab.forkserver_log().count("a wslab run handed off") == 1


@pytest.mark.fast
@pytest.mark.parametrize(
    ("argv", "own"),
    [
        (["run"], False),
        (["run", "-t", "nginx-default", "--json", "r.json"], False),
        (["run", "--fresh"], True),
        (["run", "--fr"], True),
        (["run", "--run-dir=logs"], True),
        (["run", "--backend", "compose"], True),
        (["run", "--target", "wss://example.test/"], True),
        (["run", "--app", "python app.py"], True),
        (["run", "--app-per-topology"], False),
        (["run", "--answer-plain-http"], False),
        (["run", "--", "--fresh"], False),
    ],
)
def test_runs_that_start_their_own_processes_stay_in_the_users_process(argv: list[str], own: bool) -> None:
    assert forkserver._starts_its_own(argv) is own


@pytest.mark.fast
def test_the_code_stamp_follows_an_edited_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("")
    (package / "sub" / "b.py").write_text("")
    (package / "sub" / "c.schema.json").write_text("{}")
    for data in ("scenarios", "topologies", "__pycache__"):
        (package / data).mkdir()
        (package / data / "x").write_text("")
    monkeypatch.setattr(forkserver, "PACKAGE", package)
    before = forkserver.code_stamp()
    assert forkserver.code_stamp() == before
    later = time.time_ns() + 10**9
    # Scenarios and topologies are read by each run, bytecode is written by any: not the code.
    for data in ("scenarios", "topologies", "__pycache__"):
        os.utime(package / data / "x", ns=(later, later))
    assert forkserver.code_stamp() == before
    os.utime(package / "sub" / "c.schema.json", ns=(later, later))
    schema_edited = forkserver.code_stamp()
    assert schema_edited != before
    os.utime(package / "sub" / "b.py", ns=(later + 10**9,) * 2)
    assert forkserver.code_stamp() != schema_edited


# Pure logic: matching a run to a lab.


def state_for(options: StackOptions, topologies: list[str]) -> warm.LabState:
    known = load_topologies()
    return warm.LabState(
        started_at=0,
        control=("127.0.0.1", 1),
        socket="/nonexistent",
        run_dir="/tmp",
        websockets="17.4",
        options=asdict(options),
        topologies={
            name: warm.WarmTopology(
                status=DeploymentStatus.READY,
                endpoint=("127.0.0.1", 2),
                fingerprint=warm.fingerprint(known[name]),
            )
            for name in topologies
        },
    )


@pytest.mark.fast
def test_a_lab_matches_the_same_options_and_topologies() -> None:
    known = load_topologies()
    options = StackOptions(time_scale=ACCELERATED)
    state = state_for(options, ["direct", "nginx-default"])
    assert warm.mismatch(state, [known["direct"]], options, None) is None
    assert warm.changed(state, [known["direct"], known["nginx-default"]]) == []
    other = StackOptions(time_scale=ACCELERATED, websockets_version="15.0.1")
    assert "websockets_version=None, this run asks '15.0.1'" in str(warm.mismatch(state, [], other, None))
    missing = warm.mismatch(
        state, [known[name] for name in ("haproxy-default", "envoy-default")], options, None
    )
    assert missing == "it does not run haproxy-default, envoy-default (start it with those topologies)"


@pytest.mark.parametrize(
    ("up_args", "hint"),
    [
        ([], "wslab run --faithful"),
        (["--accelerated"], "wslab run"),
        (
            ["-t", "direct", "-t", "nginx"],
            "wslab run --faithful -t direct -t nginx-default -t nginx-websocket -t nginx-websocket-map",
        ),
        (
            ["--accelerated", "--answer-plain-http", "--ping-interval", "5", "--no-redact", "-t", "replit"],
            "wslab run --answer-plain-http --ping-interval 5 --no-redact -t replit-autoscale -t replit-dev "
            "-t replit-reserved-vm -t replit-static",
        ),
        (["--websockets", "15.0.1", "-t", "direct"], "wslab run --faithful --websockets 15.0.1 -t direct"),
    ],
)
@pytest.mark.fast
def test_up_names_the_run_that_plays_on_it(up_args: list[str], hint: str) -> None:
    """What `wslab up` prints is a run its lab matches: parsed as the command line parses it, it
    asks for the lab's options and only topologies the lab runs."""
    up_parsed = build_parser().parse_args(["up", *up_args])
    options, names = probe_options(up_parsed), [t.name for t in select_topologies(up_parsed.topology)]
    shown = warm.run_hint(asdict(options), names, list(load_topologies()))
    assert shown == hint
    run_parsed = build_parser().parse_args(shown.split()[1:])
    state = state_for(options, names)
    assert (
        warm.mismatch(state, select_topologies(run_parsed.topology), probe_options(run_parsed), None) is None
    )


@pytest.mark.fast
def test_a_changed_file_changes_the_fingerprint(tmp_path: Path) -> None:
    topology = load_topologies()["nginx-default"]
    copy = tmp_path / "nginx-default"
    shutil.copytree(topology.folder, copy)
    moved = dataclasses.replace(topology, folder=copy)
    assert warm.fingerprint(moved) == warm.fingerprint(topology)
    (copy / "nginx.conf").write_text((copy / "nginx.conf").read_text() + "#")
    assert warm.fingerprint(moved) != warm.fingerprint(topology)


@pytest.mark.fast
def test_a_state_file_that_is_not_one_is_no_lab(tmp_path: Path) -> None:
    for text in ["", "{", '{"started_at": "x"}', "[]", "\0" * 100]:
        (tmp_path / "lab.json").write_text(text)
        assert warm.read_state(tmp_path / "lab.json") is None
        assert warm.running(tmp_path / "lab.json") is None
    assert warm.read_state(tmp_path / "absent.json") is None


def _lab_state(cache: Path, run_dir: Path) -> tuple[Path, list[socket.socket]]:
    """The state file of a lab whose sockets are left over (nothing listens on them); and the
    sockets, to keep open while the test runs."""
    cache.mkdir(exist_ok=True)
    sockets = []
    for name in ("lab-x.sock", "run-x.sock"):
        sockets.append(socket.socket(socket.AF_UNIX))
        sockets[-1].bind(str(cache / name))
    state = warm.LabState(
        started_at=0,
        control=("127.0.0.1", 1),
        socket=str(cache / "lab-x.sock"),
        forkserver=str(cache / "run-x.sock"),
        run_dir=str(run_dir),
        websockets="17.4",
        options={},
        topologies={},
    )
    warm.write_state(cache / "lab.json", state)
    return cache / "lab.json", sockets


@pytest.fixture
def left_run_folder(monkeypatch: pytest.MonkeyPatch):
    """A run folder whose maker is gone (its lock file held by nobody), in a temporary directory
    of the test's own."""
    directory = Path(tempfile.mkdtemp(prefix="wt"))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    run_dir = directory / "wslab-left"
    run_dir.mkdir()
    (run_dir / run_folders.LOCK).write_text("")
    yield run_dir
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.fast
def test_a_lab_found_gone_is_forgotten_with_its_run_folder(tmp_path: Path, left_run_folder: Path) -> None:
    path, _sockets = _lab_state(tmp_path / "cache", left_run_folder)
    assert warm.running(path) is None
    assert not left_run_folder.exists() and list((tmp_path / "cache").iterdir()) == []


@pytest.mark.fast
def test_a_lab_alive_but_silent_is_not_forgotten(tmp_path: Path, left_run_folder: Path) -> None:
    path, _sockets = _lab_state(tmp_path / "cache", left_run_folder)
    with lab_lock.hold(path):
        assert warm.running(path) is None, "it does not answer"
        assert not warm.gone(path), "but it holds its lock: slow to answer is not gone"
        assert left_run_folder.exists() and path.exists(), "so `wslab down` can still find it"
    assert warm.gone(path)


@pytest.mark.fast
def test_the_socket_answers_a_bad_request_in_one_line(tmp_path: Path) -> None:
    async def exchange(payload: bytes) -> dict:
        async def handle(request: dict) -> dict:
            return {"ok": True, "echo": request.get("op")}

        path = tmp_path / "lab.sock"
        server = await warm.serve_requests(path, handle)
        assert path.stat().st_mode & 0o077 == 0, "owner only"
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(payload)
        await writer.drain()
        line = await reader.readline()
        writer.close()
        server.close()
        return json.loads(line)

    assert asyncio.run(exchange(b'{"op": "status"}\n')) == {"ok": True, "echo": "status"}
    for payload in [b"not json\n", b"[1, 2]\n", b'{"op": "' + b"x" * 100_000 + b'"}\n']:
        reply = asyncio.run(exchange(payload))
        assert reply["ok"] is False and reply["error"].startswith("bad request")


@pytest.mark.fast
def test_a_log_is_read_from_where_it_ended(tmp_path: Path) -> None:
    log = tmp_path / "proxy.log"
    assert read_log(log, 10) == "" and log_size(log) == 0
    log.write_text("earlier run\n")
    since = log_size(log)
    with log.open("a") as file:
        file.write("this run\n")
    assert read_log(log, since) == "this run\n"
    assert read_log(log) == "earlier run\nthis run\n"
    log.write_text("afresh\n")  # shorter than where it ended: written anew, read whole
    assert read_log(log, since) == "afresh\n"


@pytest.mark.fast
def test_a_warm_run_reads_only_its_own_part_of_each_log(tmp_path: Path) -> None:
    """The lab's logs hold every run's lines; a run that read them all got slower with each
    (0.74 s to 0.78 s over 100 default-matrix runs), searching them once per cell."""
    nginx = load_topologies()["nginx-default"]
    log = tmp_path / "nginx.log"
    log.write_text("".join(f"GET /?wslab-cell=old{n} 101\n" for n in range(1000)))
    topology = warm.WarmTopology(
        status=DeploymentStatus.READY,
        endpoint=("127.0.0.1", 9),
        fingerprint=warm.fingerprint(nginx),
        log_path=str(log),
    )
    state = warm.LabState(
        started_at=0, control=("127.0.0.1", 9), socket="", run_dir=str(tmp_path), websockets="",
        options={"time_scale": 1}, topologies={"nginx-default": topology},
    )  # fmt: skip
    backend = warm.WarmBackend(state)

    async def played() -> dict[str, str]:
        async def nothing(*_: object, **__: object) -> None:
            return None

        backend.feed.start = nothing  # type: ignore[method-assign]
        backend.feed.hello = nothing  # type: ignore[method-assign]
        deployments = await backend.start([nginx])
        with log.open("a") as file:
            file.write("GET /?wslab-cell=new 101\n")
        return await backend.proxy_logs(deployments)

    assert asyncio.run(played()) == {"nginx-default": "GET /?wslab-cell=new 101\n"}
