"""A warm lab's fork server: ``wslab run`` without Python's start-up.

A warm run plays its cells in well under a second, and importing the lab (pydantic's
record models, jsonschema, rich, websockets) took about as long again. So ``wslab up``
starts, beside its topologies, a process that has imported all of it and waits on a Unix
socket next to the state file (``python -m wslab.forkserver SOCKET``). A ``wslab run`` that
would play against the warm lab hands it, in one message once the server says it is ready, its
arguments, working folder, environment and the descriptors of its standard input, output and
error. The server
forks; the child takes those descriptors, folder and environment as its own and runs the
command exactly as the user's process would have (contained, the same output on the same
terminal, the same exit status), while the user's process waits, passes SIGINT, SIGTERM,
SIGHUP and SIGQUIT on, and exits as the command did. If the user's process dies, even by
SIGKILL, its connection closes and the server kills the command, whose containment takes
everything it started down with it.

The user's process hands nothing off, and runs the command itself, when: the command is
not ``run``; it names ``--fresh``, ``--run-dir``, ``--backend``, ``--target`` or ``--app``
(such runs start their own processes, which belong under the user's process); no lab is
up, or its server does not answer within 5 s; the server runs other code (another
checkout, another interpreter, a module, schema or template of the package edited since) or another
``WSLAB_HOME``/``WSLAB_CACHE``/``HOME``, which the package reads once at import; or
``WSLAB_FORKSERVER=off``. This module's client side imports nothing beyond the standard
library, so that deciding costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

SWITCH = "WSLAB_FORKSERVER"
STARTS_ITS_OWN = ("--fresh", "--run-dir", "--backend", "--target", "--app")
"""A run naming one of these (or an abbreviation argparse would take for it) starts processes
of its own: it runs in the user's process."""
READ_AT_IMPORT = ("WSLAB_HOME", "WSLAB_CACHE", "HOME")
"""Environment variables the package reads once, at import: a run with other values than the
server's is not handed off."""
READ_BY_EACH_RUN = ("scenarios", "topologies")
"""The data folders of an installed package (lab/paths.py), which the stamp leaves out."""
PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
REQUEST_MAX_BYTES = 1_000_000
ANSWER_WITHIN = 5.0
PACKAGE = Path(__file__).resolve().parent


def code_stamp() -> str:
    """What identifies the code a process runs: the interpreter and its environment (a venv's
    python is a link to another's), the package's folder and the newest of its files (modules,
    schemas, templates, which the server has read once; not the scenarios and topologies an
    installed package carries, which each run reads afresh)."""
    newest = 0
    for folder, subfolders, files in os.walk(PACKAGE):
        if folder == str(PACKAGE):
            subfolders[:] = [name for name in subfolders if name not in READ_BY_EACH_RUN]
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        for name in files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    return f"{os.path.realpath(sys.executable)}|{sys.prefix}|{PACKAGE}|{newest}"


# The user's side.


def hand_off(argv: list[str], state_file: Path) -> int | None:
    """Run ``wslab ARGV`` in the warm lab's fork server and return its exit status; None when it
    is not handed off (the caller runs it itself)."""
    if argv[:1] != ["run"] or os.environ.get(SWITCH, "").lower() == "off" or _starts_its_own(argv):
        return None
    try:
        with open(state_file, "rb") as file:
            address = json.loads(file.read(5_000_000)).get("forkserver")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(address, str) or not address:
        return None
    # From here a Ctrl-C may come once the command runs there: kept until it can be passed on.
    pending: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _: pending.append(number)) for signum in PASSED_ON
    }
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    streams = [fd if _open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    try:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "stamp": code_stamp()}
        connection.settimeout(ANSWER_WITHIN)
        connection.connect(address)
        reader = connection.makefile("rb")
        # The streams go only to a server that has taken the connection: sent to one that hangs
        # or is stopped, they would wait in its socket, and a pipe reading this command's output
        # would never see its end.
        if _read_line(reader).get("ready") is not True:
            raise ValueError("the fork server is not ready")
        message = json.dumps(request).encode() + b"\n"
        sent = socket.send_fds(connection, [message], streams)
        if sent < len(message):  # not an empty send: the server may have answered and closed
            connection.sendall(message[sent:])
        started = _read_line(reader).get("started") is True
    except (OSError, ValueError):
        started = False
    finally:
        for stand_in in set(streams) - {0, 1, 2}:
            os.close(stand_in)
    code = _wait_for_command(connection, reader, pending) if started else None
    connection.close()
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    if code is None and pending:  # interrupted before anything ran: end as that signal says
        _die_by(pending[0])
    if code is not None and code < 0:  # the command died by a signal: so does this process
        _die_by(-code)
    return code


def _die_by(signum: int) -> None:
    """End as ``signum`` ends a process (what a shell expects of an interrupted command)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _open(fd: int) -> bool:
    """Whether ``fd`` is open (a closed standard stream is handed over as /dev/null)."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _starts_its_own(argv: list[str]) -> bool:
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if len(name) > 2 and name.startswith("--") and any(o.startswith(name) for o in STARTS_ITS_OWN):
            return True
    return False


def _read_line(reader: BinaryIO) -> dict[str, Any]:
    """The server's next message: one JSON object on a line (it may send two at once)."""
    line = reader.readline(64_000)
    if not line.endswith(b"\n"):
        raise ValueError("the fork server closed the connection")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("not an object")
    return answer


def _wait_for_command(connection: socket.socket, reader: BinaryIO, pending: list[int]) -> int:
    """Pass signals on (``pending``: those that came before the command started) until the
    server reports the command's end; its exit status (negative: the signal that ended it)."""

    def pass_on(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            connection.sendall(bytes([signum]))

    for signum in PASSED_ON:
        signal.signal(signum, pass_on)
    for signum in pending:
        pass_on(signum, None)
    connection.settimeout(None)
    try:
        code = _read_line(reader).get("exit")
    except (OSError, ValueError):
        code = None
    if not isinstance(code, int):
        print("wslab: the warm lab stopped during the run (wslab up again)", file=sys.stderr)
        return 3
    return code


# The server's side.


def serve(address: str) -> NoReturn:
    """Import the lab, then fork one child per handed-off command, forever (SIGTERM ends it)."""
    _preload()
    stamp = code_stamp()
    environment = {name: os.environ.get(name) for name in READ_AT_IMPORT}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    old = os.umask(0o077)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound under another name and renamed once listening: the socket exists only when ready.
    listener.bind(f"{address}.{os.getpid()}")
    os.umask(old)
    listener.listen(16)
    os.rename(f"{address}.{os.getpid()}", address)
    _log(f"ready on {address}")
    commands: dict[int, socket.socket | None] = {}
    import gc
    import select

    gc.freeze()  # what was imported is shared with each child: keep the collector off it
    while True:
        waiting = [listener, wake_r, *filter(None, commands.values())]
        readable, _, _ = select.select(waiting, [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            _report_ended(commands)
        for connection in [c for c in readable if c not in (listener, wake_r)]:
            _from_user(connection, commands)
        if listener in readable:
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                _accept(connection, stamp, environment, commands, [listener, wake_r, wake_w])


def _log(line: str) -> None:
    """One line of the server's log (no arguments: they may hold a --token)."""
    with contextlib.suppress(OSError):  # a full disk must not stop the server
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _preload() -> None:
    """Every module a run may import, but the compose and container backends (docker) and the
    entry points; the shipped scenarios and topologies, parsed and checked; the command line's
    parser."""
    import importlib
    import pkgutil

    import wslab

    skipped = {"__main__", "pytest_plugin", "compose", "containers"}
    for module in pkgutil.walk_packages(wslab.__path__, "wslab."):
        if module.name.rsplit(".", 1)[-1] not in skipped:
            importlib.import_module(module.name)
    from .cli import build_parser
    from .safe_yaml import kept_parsed
    from .scenario import load_scenarios
    from .topology import load_topologies

    # Parsed and checked once here, the shipped files are only read again by each run, to see
    # that they have not changed (lab/safe_yaml.py, lab/validation.py).
    with contextlib.suppress(Exception), kept_parsed():
        load_scenarios()
        load_topologies()
    build_parser()


def _accept(
    connection: socket.socket,
    stamp: str,
    environment: dict[str, str | None],
    commands: dict[int, socket.socket | None],
    inherited: list[Any],
) -> None:
    """Read one request, bounded in size and time; fork its command, or decline it."""
    fds: list[int] = []
    try:
        connection.settimeout(ANSWER_WITHIN)
        uid = int.from_bytes(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8], "little")
        connection.sendall(b'{"ready": true}\n')
        data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
        while not data.endswith(b"\n") and data and len(data) < REQUEST_MAX_BYTES:
            data += connection.recv(65536)
        request = json.loads(data)
        argv, cwd, env = request["argv"], request["cwd"], request["env"]
        reason = ""
        if uid != os.getuid() or len(fds) != 3:
            reason = "not from this user, or without its standard streams"
        elif request.get("stamp") != stamp:
            reason = "another version of the code"
        elif {name: env.get(name) for name in READ_AT_IMPORT} != environment:
            reason = "another WSLAB_HOME, WSLAB_CACHE or HOME"
        elif not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and argv[:1] == ["run"]):
            reason = "not a wslab run"
        if reason:
            connection.sendall(json.dumps({"declined": reason}).encode() + b"\n")
            _log(f"declined a wslab run: {reason}")
            raise ValueError(reason)
        pid = os.fork()
        if pid == 0:
            _run_command(argv, cwd, env, fds, [*inherited, *filter(None, commands.values()), connection])
        commands[pid] = connection
        _log(f"{pid}: a wslab run handed off")
        try:
            connection.sendall(b'{"started": true}\n')
        except OSError:  # its user is gone already
            os.kill(pid, signal.SIGKILL)
            commands[pid] = None
            raise
        connection.settimeout(None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        connection.close()
    finally:
        for fd in fds:
            os.close(fd)


def _run_command(
    argv: list[str], cwd: str, env: dict[str, str], fds: list[int], inherited: list[Any]
) -> NoReturn:
    """In the forked child: become the user's process, then run the command as it would have."""
    code = 3
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for resource in inherited:
            if isinstance(resource, int):
                os.close(resource)
            else:
                resource.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())
        sys.argv = ["wslab", *argv]
        from .cli import main

        code = main()
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code if isinstance(stop.code, int) else 2
    except BaseException as error:  # noqa: BLE001 (nothing may return into the loop)
        with contextlib.suppress(OSError):
            os.write(2, f"wslab: internal error in the warm lab's fork server: {error!r}\n".encode())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _from_user(connection: socket.socket, commands: dict[int, socket.socket | None]) -> None:
    """A signal to pass on to the command, or the user's process gone: kill the command."""
    pid = next(pid for pid, c in commands.items() if c is connection)
    try:
        data = connection.recv(64)
    except OSError:
        data = b""
    for signum in data or [signal.SIGKILL]:
        if signum in PASSED_ON or signum == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
    if not data:  # nobody to tell how it ended: reaped without a report
        connection.close()
        commands[pid] = None


def _report_ended(commands: dict[int, socket.socket | None]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = commands.pop(pid, None)
        _log(f"{pid}: ended with status {os.waitstatus_to_exitcode(status)}")
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
