"""The fix programs the lab prints (wslab.fixes) run, on real websockets servers of each API and release.

Each program is written to a file exactly as `wslab explain` and `wslab run` show it and run
as its own process on the websockets release it is tested with (the installed one, and the
seed's 15.0.1 installed by the lab's own helper). Then, on the wire: plain GETs such as a
browser tab, the preview pane or a health check send (with and without Connection) get 200;
a request whose upgrade a proxy stripped (Sec-WebSocket-Key, no Connection, no Upgrade) still
gets 426, so the fix hides no broken proxy; a real WebSocket client connects and gets its echo.
The same server, asked the stripped request, logs a traceback: fed back to
:func:`wslab.fixes.choose_api` as a user would paste it, it picks this API's hook.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets
from conftest import SEED_VERSION
from websockets.sync.client import connect

from wslab.fixes import APIS, Api, choose_api
from wslab.websockets_release import websockets_path

RELEASES = [websockets.__version__, SEED_VERSION]

RUN = (
    "import logging, runpy, sys, websockets; logging.basicConfig(level=logging.DEBUG); "
    "print(websockets.__version__, flush=True); runpy.run_path(sys.argv[1], run_name='__main__')"
)
"""Runs a program as __main__ after saying which websockets it imported, logging everything
(17.x logs a failed handshake's traceback at DEBUG only)."""

PLAIN = {
    "through a keep-alive proxy (no Connection)": "GET / HTTP/1.1\r\nHost: x.picard.replit.dev\r\n"
    "Sec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nUpgrade-Insecure-Requests: 1\r\n"
    "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n",
    "a browser tab, direct": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
    "Sec-Fetch-Mode: navigate\r\n\r\n",
    "a health check": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: health-check/1.0\r\n\r\n",
}
STRIPPED = (
    "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(port: int, request: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@contextmanager
def running(program: Path, release: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The program as its own process on websockets ``release``, listening on a free $PORT."""
    folder = websockets_path(release)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "PYTHONPATH": str(folder) if folder else ""}
    process = subprocess.Popen(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", RUN, str(program)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == release, "the program runs on the release under test"
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the program never listened"
                time.sleep(0.05)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pasted_traceback(log: str) -> str:
    """The traceback of the InvalidUpgrade in a server's log, as a user would paste it."""
    end = log.rindex("websockets.exceptions.InvalidUpgrade")
    start = log.rindex("Traceback (most recent call last):", 0, end)
    return log[start : log.index("\n", end)]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("api", list(APIS.values()), ids=list(APIS))
def test_the_fix_program_answers_plain_http_and_keeps_websockets(
    api: Api, release: str, tmp_path: Path
) -> None:
    program = tmp_path / f"server_{api.id}.py"
    program.write_text(api.program)
    with running(program, release) as (port, process):
        for what, request in PLAIN.items():
            assert status(port, request) == 200, what
        assert status(port, STRIPPED) == 426, "a stripped upgrade still fails: the fix hides no broken proxy"
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=5) as client:
            client.send("still a WebSocket")
            assert client.recv(timeout=5) == "still a WebSocket"
        time.sleep(0.2)
    _, log = process.communicate()
    assert "declare process_request as a coroutine" not in log
    assert "process_request failed" not in log
    if api.id == "legacy":
        assert "websockets.legacy is deprecated" in log, "the page says importing it warns"

    # What the server logged for the stripped request, pasted back, picks a hook of this shape.
    traceback = pasted_traceback(log)
    wording = "empty" if api.id == "legacy" else "missing"
    assert traceback.endswith(f"InvalidUpgrade: {wording} Connection header"), traceback
    chosen = choose_api(traceback)
    assert chosen.known and chosen.apis[0].hook == api.hook, (chosen, traceback)
    if re.search(rf"websockets/{api.id}/", traceback):
        assert chosen.apis == (api,), traceback
