"""`wslab watch`: new events by default, the history on request, a quick error when nothing answers,
and never the lab's own readiness checks. The rules (fast), then real probe servers and `wslab up`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wslab.backends import ready_by_http
from wslab.commands.serve import control_address, control_url, greeting
from wslab.errors import UsageError
from wslab.observations import Hello, ObservationFeed
from wslab.probe.__main__ import ControlChannel, replays_history
from wslab.probe.wire import is_readiness_check
from wslab.processes import free_port, wait_answering
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent

# -- the rules -----------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize(
    ("path", "replays"),
    [("/", True), ("", True), ("/?history=1", True), ("/?history=0", False), ("/?x=1&history=0", False)],
)
def test_a_control_client_gets_the_history_unless_it_asks_for_none(path: str, replays: bool) -> None:
    assert replays_history(path) is replays


@pytest.mark.fast
def test_control_address_and_url() -> None:
    assert control_address("127.0.0.1:18000") == ("127.0.0.1", 18000)
    assert control_address(":5") == ("127.0.0.1", 5)
    assert control_address("[::1]:5") == ("::1", 5)
    for wrong in ("nowhere", "host:", "host:0", "host:70000", "host:x"):
        with pytest.raises(UsageError, match="--control needs HOST:PORT"):
            control_address(wrong)
    assert control_url("127.0.0.1", 18000, history=True) == "ws://127.0.0.1:18000/"
    assert control_url("::1", 5, history=False) == "ws://[::1]:5/?history=0"


@pytest.mark.fast
def test_only_a_probe_servers_greeting_is_one() -> None:
    assert greeting('{"event": "hello", "websockets": "17.4", "redacted": false}') == Hello(
        "17.4", 1.0, False
    )
    for other in ('{"event": "handshake"}', '{"event": "hello"}', "[]", "not json", b"\x00", "hi"):
        assert greeting(other) is None, other


@pytest.mark.fast
def test_the_readiness_check_is_recognised_by_its_request_line() -> None:
    assert is_readiness_check(b"GET /.wslab-ready HTTP/1.1\r\nHost: ready\r\n\r\n")
    assert is_readiness_check(b"GET /.wslab-ready HTTP/1.0\r\n")
    for other in (b"GET / HTTP/1.1\r\n", b"GET /.wslab-ready-not HTTP/1.1\r\n", b"POST /.wslab-ready ", b""):
        assert not is_readiness_check(other), other


@pytest.mark.fast
def test_direct_topologies_are_checked_by_the_request_the_probe_server_does_not_record() -> None:
    topologies = load_topologies()
    assert ready_by_http(topologies["direct"]), "a bare connection would be recorded as one"
    assert ready_by_http(topologies["traefik-default"]), "Traefik listens before its routes load"
    assert not ready_by_http(topologies["nginx-default"]), "a connection to nginx reaches nothing behind"


class _Client:
    """A control client as ControlChannel.handler sees one; its first send lets ``during`` run."""

    def __init__(self, path: str, during: Callable[[], None] = lambda: None) -> None:
        self.request = SimpleNamespace(path=path)
        self.received: list[dict[str, Any]] = []
        self.during = during
        self.closed = asyncio.Event()

    async def send(self, message: str) -> None:
        self.received.append(json.loads(message))
        if len(self.received) == 1:
            self.during()
        await asyncio.sleep(0)  # a send may wait for the client to read

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # The channel reads what a client sends (restart commands) until it closes.
    def __aiter__(self) -> _Client:
        return self

    async def __anext__(self) -> str:
        await self.closed.wait()
        raise StopAsyncIteration


def _conns(client: _Client) -> list[Any]:
    return [message.get("conn") for message in client.received]


@pytest.mark.fast
def test_the_control_channel_replays_or_not_and_loses_nothing_published_meanwhile() -> None:
    async def scenario() -> tuple[_Client, _Client]:
        channel = ControlChannel({"websockets": "x"})
        for number in (1, 2):
            channel.publish({"event": "handshake", "conn": number})
        # Published while each client is still being greeted: it must get it, once, in order.
        replaying = _Client("/", lambda: channel.publish({"event": "handshake", "conn": 3}))
        fresh = _Client("/?history=0", lambda: channel.publish({"event": "handshake", "conn": 4}))
        tasks = [asyncio.create_task(channel.handler(client)) for client in (replaying, fresh)]  # type: ignore[arg-type]
        while len(channel.clients) < 2:
            await asyncio.sleep(0)
        channel.publish({"event": "handshake", "conn": 5})
        await asyncio.sleep(0.01)
        for client in (replaying, fresh):
            client.closed.set()
        await asyncio.gather(*tasks)
        assert not channel.clients and not channel.joining
        return replaying, fresh

    replaying, fresh = asyncio.run(scenario())
    assert replaying.received[0]["event"] == "hello" and fresh.received[0]["event"] == "hello"
    assert _conns(replaying)[1:] == [1, 2, 3, 4, 5]
    assert _conns(fresh)[1:] == [4, 5], "no history: only what was published after it connected"


# -- real processes ----------------------------------------------------------------------------------


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str], predicate: Callable[[str], bool], timeout: float = 20) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(predicate(line) for line in seen):
        try:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"timed out; read so far: {''.join(seen)}")
    return seen


@contextlib.contextmanager
def started(*argv: str) -> Iterator[tuple[subprocess.Popen, queue.Queue[str]]]:
    """A wslab process (``-m`` module and arguments) and its stdout lines; SIGINT at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        yield process, _lines(process.stdout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _get(port: int, path: str) -> bytes:
    """A plain GET, answered by whatever listens (a 426 from the probe server is fine)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _watch(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "watch", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    return result, time.monotonic() - began


def test_watch_fails_within_5_s_with_a_hint_when_nothing_answers() -> None:
    result, took = _watch("--control", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2 and took < 5, (result.stderr, took)
    assert result.stderr.startswith("wslab: error: nothing answers on 127.0.0.1:")
    assert "connection refused" in result.stderr and "wslab up" in result.stderr
    assert "127.0.0.1:18000" in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_watch_fails_within_5_s_when_what_answers_says_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        # Accepts (the kernel does, into the backlog) and never answers: a port forwarder with
        # nothing behind it, a hung process.
        result, took = _watch("--control", f"127.0.0.1:{silent.getsockname()[1]}")
    assert result.returncode == 2 and took < 5, (result.stderr, took)
    assert "is not a probe server's control channel" in result.stderr and "wslab up" in result.stderr
    assert result.stderr.count("\n") == 1


def test_probe_listeners_answer_the_readiness_check_themselves_and_record_nothing(tmp_path: Path) -> None:
    """Both kinds of listener, websockets and tap, as the lab's own check sees them (wait_answering),
    and the runner's feed, which replays the whole history."""
    app = socket.create_server(("127.0.0.1", 0))
    app_port = app.getsockname()[1]
    argv = ["wslab.probe", "--listen", "ws=127.0.0.1:0", "--listen", "tap=127.0.0.1:0"]
    argv += ["--forward", f"tap=127.0.0.1:{app_port}"]
    with app, started(*argv) as (_, lines):
        ready = json.loads(_read_until(lines, lambda line: line.startswith("{"))[-1])
        listeners = {name: port for name, (_, port) in ready["listeners"].items()}

        async def scenario() -> list[str]:
            for port in listeners.values():
                await wait_answering("127.0.0.1", port, 5, http=True)
            await asyncio.to_thread(_get, listeners["ws"], "/after-ready")
            feed = ObservationFeed()
            await feed.start(*ready["control"])
            try:
                await feed.hello()
                await asyncio.sleep(0.5)
            finally:
                await feed.stop()
            return [seen.connection.request.target for seen in feed.observed if seen.connection.request]

        assert asyncio.run(scenario()) == ["/after-ready"]
        assert _get(listeners["ws"], "/.wslab-ready").startswith(b"HTTP/1.1 200 OK\r\n")


def _up_urls(lines: queue.Queue[str]) -> tuple[dict[str, str], str]:
    seen = _read_until(lines, lambda line: "Ctrl-C" in line, timeout=60)
    urls = {parts[0]: parts[1] for parts in (line.split() for line in seen) if len(parts) == 2}
    [control] = [line.split("--control", 1)[1].strip() for line in seen if "wslab watch --control" in line]
    return {name: url for name, url in urls.items() if url.startswith("ws://")}, control


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def test_watch_shows_what_comes_after_it_and_the_history_on_request(tmp_path: Path) -> None:
    """A real `wslab up` with a proxy the lab checks by HTTP (Traefik), so that its readiness check
    went through the proxy to the probe server before watch started."""
    up = ["wslab", "up", "-t", "direct", "-t", "traefik-default", "--run-dir", str(tmp_path / "up")]
    with started(*up) as (lab, lab_lines):
        urls, control = _up_urls(lab_lines)
        if "traefik-default" not in urls:
            pytest.skip("traefik is not installed")
        _get(_port(urls["direct"]), "/before-watch")
        with started("wslab", "watch", "--control", control) as (_, watched):
            seen = _read_until(watched, lambda line: "from now on" in line)
            _get(_port(urls["traefik-default"]), "/after-watch")
            seen += _read_until(watched, lambda line: "/after-watch" in line)
        with started("wslab", "watch", "--history", "--control", control) as (watcher, replayed):
            _read_until(replayed, lambda line: "probe server running" in line)
            _get(_port(urls["direct"]), "/marker")
            history = _read_until(replayed, lambda line: "/marker" in line)
            lab.send_signal(signal.SIGINT)
            watcher.wait(20)
            lost = watcher.stderr.read() if watcher.stderr else ""
    text = "".join(seen)
    assert "[traefik-default]" in text and "GET /after-watch HTTP/1.1 -> 426" in text
    assert "/before-watch" not in text, "no history unless --history"
    replay = "".join(history)
    assert replay.index("/before-watch") < replay.index("/after-watch") < replay.index("/marker")
    assert "wslab-ready" not in text + replay, "the lab's readiness checks are not observations"
    assert watcher.returncode == 1
    assert lost == f"wslab: the probe server at {control} closed its control channel (its lab stopped)\n"
