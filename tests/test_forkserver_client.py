"""The user's side of the fork server (lab/forkserver.py), against stand-in servers: when a run
is handed off, how its end is reported, and that a refusal leaves the process as it was."""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from wslab import forkserver

pytestmark = pytest.mark.fast


def serving(tmp_path: Path, answer: Callable[[socket.socket, dict], None]) -> Path:
    """A state file naming a stand-in fork server that reads one request and calls ``answer``."""
    address = tmp_path / "run.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(address))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        connection.sendall(b'{"ready": true}\n')
        data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        while not data.endswith(b"\n"):
            data += connection.recv(1 << 20)
        request = json.loads(data)
        request["descriptors"] = len(fds)
        answer(connection, request)
        connection.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    state = tmp_path / "lab.json"
    state.write_text(json.dumps({"forkserver": str(address)}))
    return state


def test_a_run_the_server_takes_ends_with_the_commands_status(tmp_path: Path) -> None:
    seen: dict = {}

    def run_it(connection: socket.socket, request: dict) -> None:
        seen.update(request)
        connection.sendall(b'{"started": true}\n{"exit": 7}\n')

    assert forkserver.hand_off(["run", "-t", "direct"], serving(tmp_path, run_it)) == 7
    assert seen["argv"] == ["run", "-t", "direct"] and seen["descriptors"] == 3
    assert seen["stamp"] == forkserver.code_stamp() and seen["cwd"]


def test_a_server_gone_during_the_run_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = serving(tmp_path, lambda connection, _: connection.sendall(b'{"started": true}\n'))
    assert forkserver.hand_off(["run"], state) == 3
    assert capsys.readouterr().err == "wslab: the warm lab stopped during the run (wslab up again)\n"


@pytest.mark.parametrize(
    "reply", [b'{"declined": "another version of the code"}\n', b"", b"[]\n", b"garbage\n"]
)
def test_a_refusal_leaves_the_run_to_the_users_process_as_it_was(tmp_path: Path, reply: bytes) -> None:
    before = {signum: signal.getsignal(signum) for signum in forkserver.PASSED_ON}
    state = serving(tmp_path, lambda connection, _: connection.sendall(reply))
    assert forkserver.hand_off(["run"], state) is None
    assert {signum: signal.getsignal(signum) for signum in forkserver.PASSED_ON} == before


@pytest.mark.parametrize(
    "state", ["missing", "{}", '{"forkserver": 3}', "not json", '{"forkserver": "/nonexistent"}']
)
def test_no_server_to_hand_to_is_no_hand_off(tmp_path: Path, state: str) -> None:
    path = tmp_path / "lab.json"
    if state != "missing":
        path.write_text(state)
    assert forkserver.hand_off(["run"], path) is None


def test_other_commands_are_never_handed_off(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    state.write_text(json.dumps({"forkserver": str(tmp_path / "never-connected.sock")}))
    for argv in (["up"], ["report", "r.json"], ["explain", "x"], []):
        assert forkserver.hand_off(argv, state) is None


def test_the_process_has_its_own_signal_handlers_back_after_a_run(tmp_path: Path) -> None:
    before = {signum: signal.getsignal(signum) for signum in forkserver.PASSED_ON}
    state = serving(tmp_path, lambda connection, _: connection.sendall(b'{"started": true}\n{"exit": 0}\n'))
    assert forkserver.hand_off(["run"], state) == 0
    assert {signum: signal.getsignal(signum) for signum in forkserver.PASSED_ON} == before


def test_a_server_that_does_not_take_the_connection_is_handed_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forkserver, "ANSWER_WITHIN", 0.2)
    address = tmp_path / "run.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(address))
        listener.listen(1)  # and never accepts, as a stopped or hung server
        state = tmp_path / "lab.json"
        state.write_text(json.dumps({"forkserver": str(address)}))
        assert forkserver.hand_off(["run"], state) is None
        connection, _ = listener.accept()
        with connection:
            data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    assert (data, fds) == (b"", []), "no stream waits in its socket: a pipe on this output would never end"
