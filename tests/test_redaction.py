"""Secrets never leave the lab in clear: the rules (fast), then real runs, `wslab up` and `wslab watch`.

The probe server redacts every record before it keeps or publishes it; the
runner redacts the client's transcript and the proxies' log lines with the same
rules. A redacted value keeps its length and a short hash, so that the same
secret reads the same in every cell. ``--no-redact`` is the only way out, and
says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.cli import build_parser
from wslab.commands.common import probe_options
from wslab.commands.serve import describe_event
from wslab.observations import Hello, parse_event
from wslab.probe.redact import (
    REDACTED_PATTERN,
    is_secret_header,
    looks_like_credential,
    redact_header_value,
    redact_raw_head,
    redact_record,
    redact_subprotocols,
    redacted,
    secret_values,
)
from wslab.records import Outcome, Run, Settings, Step, Transcript
from wslab.redaction import redact_log_line, redact_transcript, transcript_secrets
from wslab.runner import RunOptions, run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ3c2xhYi10ZXN0IiwiaWF0IjoxNzAwMDAwMDAwfQ"
    ".Zm9vYmFyLXNpZ25hdHVyZS1ub3QtcmVhbA"
)
AUTH = "auth-s3cret-Value-0001"
PROXY_AUTH = "cHJveHk6czNjcmV0LTAwMDI="
COOKIE = "c00kie-s3cret-0003"
API_KEY = "api-key-s3cret-0004"
AUTH_TOKEN = "auth-token-s3cret-0005"
QUERY_TOKEN = "query-token-s3cret-0006"
ACCESS_TOKEN = "access-token-s3cret-0007"
SECRETS = [AUTH, PROXY_AUTH, COOKIE, API_KEY, AUTH_TOKEN, QUERY_TOKEN, ACCESS_TOKEN, JWT]

SCENARIO = f"""\
suite: secrets
scenarios:
  - id: credentials-everywhere
    title: every kind of credential on one handshake
    steps:
      - connect:
          path: /private?room=1&token={QUERY_TOKEN}&access_token={ACCESS_TOKEN}
          headers:
            - "Authorization: Bearer {AUTH}"
            - "Proxy-Authorization: Basic {PROXY_AUTH}"
            - "Cookie: sid={COOKIE}; theme=dark"
            - "X-Api-Key: {API_KEY}"
            - "X-Auth-Token: {AUTH_TOKEN}"
          subprotocols: [access_token, "{JWT}", chat]
      - send: hello
      - expect_message: hello
      - close: {{code: 1000}}
    expect: {{status: 101}}
"""


def form(value: str) -> str:
    return f"[redacted len={len(value)} sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]}]"


# -- the rules ---------------------------------------------------------------------------------------


@pytest.mark.fast
def test_the_redacted_form_keeps_length_and_a_short_hash() -> None:
    assert redacted("abc") == "[redacted len=3 sha256:ba7816bf]"
    assert redacted(JWT) == form(JWT) and REDACTED_PATTERN.fullmatch(redacted(JWT))
    assert redacted("a") != redacted("b")


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "COOKIE",
        "Set-Cookie",
        "X-Api-Key",
        "x-auth-token",
        "X-Amz-Security-Token",
        "X-CSRF-Token",
        "X-XSRF-TOKEN",
        "X-Session-Id",
        "X-Client-Secret",
        "Api_Key",
        "X-Password",
        "X-Credentials",
        "X-Goog-Api-Key",
        "XApiKey",
    ],
)
@pytest.mark.fast
def test_secret_headers(name: str) -> None:
    assert is_secret_header(name)


@pytest.mark.parametrize(
    "name",
    [
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Upgrade",
        "Connection",
        "Keep-Alive",
        "Host",
        ":authority",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "X-Forwarded-For",
        "User-Agent",
        "Origin",
        "Monkey",
        "Keyboard-Layout",
        "Author",
    ],
)
@pytest.mark.fast
def test_headers_that_are_not_secret(name: str) -> None:
    assert not is_secret_header(name)
    assert redact_header_value(name, "some-value") == "some-value"


@pytest.mark.fast
def test_header_values_keep_what_says_how_they_are_used() -> None:
    assert redact_header_value("Authorization", f"Bearer {AUTH}") == f"Bearer {form(AUTH)}"
    assert redact_header_value("Proxy-Authorization", "Basic abc") == f"Basic {form('abc')}"
    assert redact_header_value("authorization", "opaque") == form("opaque")
    assert redact_header_value("Cookie", "sid=a1; theme=dark") == f"sid={form('a1')}; theme={form('dark')}"
    assert (
        redact_header_value("Set-Cookie", "sid=a1; Path=/; HttpOnly") == f"sid={form('a1')}; Path=/; HttpOnly"
    )
    assert redact_header_value("X-Api-Key", API_KEY) == form(API_KEY)


@pytest.mark.parametrize(
    "value",
    [
        "chat",
        "wslab.v1",
        "graphql-transport-ws",
        "graphql-ws",
        "subscriptions-transport-ws",
        "mqtt",
        "mqttv3.1",
        "v12.stomp",
        "v10.stomp, v11.stomp, v12.stomp",
        "wamp.2.json",
        "wamp.2.msgpack.batched",
        "com.example.chat.v2",
        "actioncable-v1-json, actioncable-unsupported",
        "soap, xmpp",
    ],
)
@pytest.mark.fast
def test_subprotocol_names_are_kept(value: str) -> None:
    assert redact_subprotocols(value) == value
    assert redact_header_value("Sec-WebSocket-Protocol", value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"access_token, {JWT}", f"access_token, {form(JWT)}"),
        (f"Bearer, {AUTH}", f"Bearer, {form(AUTH)}"),
        ("token, short", f"token, {form('short')}"),
        (f"auth,{AUTH}", f"auth,{form(AUTH)}"),
        (JWT, form(JWT)),
        (f"chat, {JWT}", f"chat, {form(JWT)}"),
        (
            "wslab.v1, 9f86d081884c7d659a2feaa0c55ad015",
            f"wslab.v1, {form('9f86d081884c7d659a2feaa0c55ad015')}",
        ),
        ("chat, Zm9vYmFyYmF6cXV4MTIzNDU2", f"chat, {form('Zm9vYmFyYmF6cXV4MTIzNDU2')}"),
        (
            "base64url.bearer.authorization.k8s.io.ZXlKaGJHY2lPaUpTVXpJ, base64.binary.k8s.io",
            f"base64url.bearer.authorization.k8s.io.{form('ZXlKaGJHY2lPaUpTVXpJ')}, base64.binary.k8s.io",
        ),
    ],
)
@pytest.mark.fast
def test_subprotocol_credentials_are_redacted(value: str, expected: str) -> None:
    assert redact_subprotocols(value) == expected
    assert redact_subprotocols(expected) == expected, "redacting twice changes nothing"


@pytest.mark.fast
def test_credential_shapes() -> None:
    assert looks_like_credential(JWT)
    assert looks_like_credential("550e8400-e29b-41d4-a716-446655440000")
    assert not looks_like_credential("graphql-transport-ws")
    assert not looks_like_credential("eyJ")  # a JWT has three segments
    assert not looks_like_credential(form(JWT))


@pytest.mark.fast
def test_the_response_subprotocol_is_redacted_when_it_echoes_a_secret() -> None:
    record = {
        "raw_head": "",
        "request": None,
        "response": {"status": 101, "reason": "", "headers": [["Sec-WebSocket-Protocol", JWT]]},
        "error": None,
    }
    assert redact_record(record)["response"]["headers"] == [["Sec-WebSocket-Protocol", form(JWT)]]
    chat = {**record, "response": {"status": 101, "headers": [["Sec-WebSocket-Protocol", "chat"]]}}
    assert redact_record(chat)["response"]["headers"] == [["Sec-WebSocket-Protocol", "chat"]]


@pytest.mark.fast
def test_a_whole_raw_head() -> None:
    raw = (
        f"GET /p?token={QUERY_TOKEN}&wslab-cell=c1 HTTP/1.1\r\nHost: h\r\n"
        f"X-Api-Key: {API_KEY}\r\nX-Amz-Security-Token: {AUTH_TOKEN}\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: access_token, {JWT}\r\n\r\n"
    )
    result = redact_raw_head(raw)
    for secret in (QUERY_TOKEN, API_KEY, AUTH_TOKEN, JWT):
        assert secret not in result
    assert "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" in result
    assert f"Sec-WebSocket-Protocol: access_token, {form(JWT)}\r\n" in result
    assert redact_raw_head(result) == result
    assert set(secret_values({"raw_head": raw})) >= {QUERY_TOKEN, API_KEY, AUTH_TOKEN, JWT}


@pytest.mark.fast
def test_the_transcript_and_log_lines() -> None:
    transcript = Transcript(
        sent={
            "method": "GET",
            "target": f"/?access_token={ACCESS_TOKEN}&wslab-cell=c",
            "path": f"/?access_token={ACCESS_TOKEN}",
            "version": "HTTP/1.1",
            "headers": [("X-Auth-Token", AUTH_TOKEN), ("Sec-WebSocket-Protocol", f"access_token, {JWT}")],
        },
        steps=[
            Step(
                step="connect",
                argument={"path": f"/?token={QUERY_TOKEN}", "headers": [f"X-Api-Key: {API_KEY}"]},
            )
        ],
    )
    text = redact_transcript(transcript).model_dump_json()
    for secret in (ACCESS_TOKEN, AUTH_TOKEN, JWT, QUERY_TOKEN, API_KEY):
        assert secret not in text
    assert form(AUTH_TOKEN) in text
    secrets = transcript_secrets(transcript)
    assert {ACCESS_TOKEN, AUTH_TOKEN, JWT, QUERY_TOKEN, API_KEY} <= secrets
    line = f'127.0.0.1 "GET /?token={QUERY_TOKEN}&x=1 HTTP/1.1" 101 key={API_KEY}'
    assert (
        redact_log_line(line, secrets)
        == f'127.0.0.1 "GET /?token={form(QUERY_TOKEN)}&x=1 HTTP/1.1" 101 key={form(API_KEY)}'
    )


@pytest.mark.fast
def test_a_transcript_is_copied_only_when_something_in_it_is_secret() -> None:
    sent = {"method": "GET", "target": "/?wslab-cell=c", "path": "/", "version": "HTTP/1.1", "headers": []}
    received = {"status": 426, "headers": [("Upgrade", "websocket")]}
    plain = Transcript(sent=sent, received=received)
    assert redact_transcript(plain) is plain
    for secret_only_in in (
        {"received": {"status": 200, "headers": [("Set-Cookie", f"session={AUTH_TOKEN}; Path=/")]}},
        {"steps": [Step(step="raw", argument={"path": f"/?token={QUERY_TOKEN}"})]},
        {"sent": {**sent, "headers": [("Authorization", f"Bearer {JWT}")]}},
    ):
        transcript = Transcript.model_validate({"sent": sent, "received": received, **secret_only_in})
        text = redact_transcript(transcript).model_dump_json()
        assert all(secret not in text for secret in (AUTH_TOKEN, QUERY_TOKEN, JWT)), secret_only_in


@pytest.mark.fast
def test_results_say_whether_secrets_were_redacted() -> None:
    settings = Settings(concurrency=1, step_timeout=1, cell_timeout=1, settle=1, time_scale=1)
    assert settings.redacted is True


@pytest.mark.fast
def test_no_redact_reaches_every_command_that_starts_a_probe_server() -> None:
    parser = build_parser()
    for command in (["run"], ["up"], ["compare"], ["explain", "some log line"]):
        assert probe_options(parser.parse_args(command)).redact is True
        args = parser.parse_args([*command, "--no-redact"])
        assert args.redact is False and probe_options(args).redact is False
    assert describe_event(Hello("17.4", redacted=False)).endswith("secrets NOT redacted (--no-redact)")
    assert "redacted" not in describe_event(Hello("17.4"))
    assert parse_event({"event": "hello", "websockets": "17.4", "redacted": False}) == Hello(
        "17.4", 1.0, False
    )


# -- real runs ---------------------------------------------------------------------------------------


def wslab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=timeout,
    )


TOPOLOGIES = ["direct", "nginx-websocket", "haproxy-default"]


def run_with_outputs(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    scenario = tmp_path / "secrets.yaml"
    scenario.write_text(SCENARIO)
    outputs = {name: tmp_path / f"out.{name}" for name in ("json", "html", "markdown", "junit")}
    flags = [arg for name, path in outputs.items() for arg in (f"--{name}", str(path))]
    topologies = [arg for name in TOPOLOGIES for arg in ("-t", name)]
    result = wslab("run", *topologies, "-s", str(scenario), *flags, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, {name: path.read_text() for name, path in outputs.items()}


def test_a_run_writes_no_secret_anywhere(tmp_path: Path) -> None:
    result, outputs = run_with_outputs(tmp_path)
    texts = {"stdout": result.stdout, "stderr": result.stderr, **outputs}
    for secret in SECRETS:
        for name, text in texts.items():
            assert secret not in text, f"{secret} in {name}"
    assert "NOT redacted" not in result.stdout

    data = json.loads(outputs["json"])
    assert data["options"]["redacted"] is True
    cells = {cell["topology"]: cell for cell in data["cells"]}
    assert set(cells) == set(TOPOLOGIES) and all(c["outcome"] == "pass" for c in cells.values())
    for topology, cell in cells.items():
        server = cell["server"][0]
        headers = {name.lower(): value for name, value in server["request"]["headers"]}
        # The same secret reads the same on the client, on the server and in every cell.
        assert headers["authorization"] == f"Bearer {form(AUTH)}", topology
        assert headers["cookie"] == f"sid={form(COOKIE)}; theme={form('dark')}", topology
        assert headers["x-api-key"] == form(API_KEY) and headers["x-auth-token"] == form(AUTH_TOKEN)
        assert headers["sec-websocket-protocol"] == f"access_token, {form(JWT)}, chat", topology
        assert f"token={form(QUERY_TOKEN)}&access_token={form(ACCESS_TOKEN)}" in server["request"]["path"]
        assert f"x-api-key: {form(API_KEY)}\r\n" in server["raw_head"].lower()
        sent = {name.lower(): value for name, value in cell["client"]["sent"]["headers"]}
        assert sent["authorization"] == headers["authorization"] and sent["x-api-key"] == headers["x-api-key"]
    # Proxy-Authorization is a hop-by-hop credential some proxies consume; where it arrives it is redacted.
    for cell in cells.values():
        arrived = [
            v for n, v in cell["server"][0]["request"]["headers"] if n.lower() == "proxy-authorization"
        ]
        assert arrived in ([], [f"Basic {form(PROXY_AUTH)}"])
    # The proxies' log lines a cell keeps name the request, its query redacted.
    logged = [line for cell in cells.values() for line in cell["proxy_log"] if "token=" in line]
    assert logged and all(form(QUERY_TOKEN) in line for line in logged), logged
    assert form(AUTH) in outputs["html"]


def test_the_runner_redacts_what_a_server_that_keeps_secrets_recorded(tmp_path: Path) -> None:
    """The lab's probe server redacts its records and says so in its greeting, and the runner
    does not redact them again; a server that says it keeps secrets gets them redacted here."""
    (tmp_path / "secrets.yaml").write_text(SCENARIO)
    scenarios = load_scenarios([tmp_path / "secrets.yaml"])

    async def played(server_redacts: bool) -> tuple[bool, Run]:
        backend = LocalBackend(tmp_path / f"run-{server_redacts}", StackOptions(redact=server_redacts))
        result = await run(backend, [load_topologies()["direct"]], scenarios, RunOptions(redact=True))
        return backend.feed.records_redacted, result

    for server_redacts in (True, False):
        said, result = asyncio.run(played(server_redacts))
        assert said is server_redacts
        [cell] = result.cells
        assert cell.outcome == Outcome.PASS and cell.server, cell.error
        text = json.dumps([connection.model_dump(mode="json") for connection in cell.server])
        assert not [secret for secret in SECRETS if secret in text], server_redacts
        headers = {name.lower(): value for name, value in cell.server[0].request.headers}
        assert headers["authorization"] == f"Bearer {form(AUTH)}"


def test_no_redact_keeps_the_values_and_says_so(tmp_path: Path) -> None:
    result, outputs = run_with_outputs(tmp_path, "--no-redact")
    assert "secrets NOT redacted (--no-redact)" in result.stdout
    data = json.loads(outputs["json"])
    assert data["options"]["redacted"] is False
    for cell in data["cells"]:
        server = json.dumps(cell["server"])
        for secret in (AUTH, COOKIE, API_KEY, AUTH_TOKEN, QUERY_TOKEN, ACCESS_TOKEN, JWT):
            assert secret in server, (cell["topology"], secret)
    assert "[redacted len=" not in outputs["json"]


# -- wslab up, wslab watch ---------------------------------------------------------------------------


def _lines(process: subprocess.Popen) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str], predicate, timeout: float = 20) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(predicate(line) for line in seen):
        try:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"timed out; read so far: {''.join(seen)}")
    return seen


@contextlib.contextmanager
def started(argv: list[str]) -> Iterator[tuple[subprocess.Popen, queue.Queue[str]]]:
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        yield process, _lines(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def _connect_with_secrets(url: str) -> None:
    async with connect(
        f"{url}?token={QUERY_TOKEN}",
        additional_headers={
            "Authorization": f"Bearer {AUTH}",
            "X-Api-Key": API_KEY,
            "Cookie": f"sid={COOKIE}",
        },
        subprotocols=["access_token", JWT, "chat"],  # type: ignore[list-item]
        open_timeout=10,
    ) as websocket:
        await websocket.send("x")
        await websocket.recv()


def _up_output(redact: bool) -> str:
    argv = [sys.executable, "-m", "wslab", "up", "-t", "direct", "-t", "nginx-websocket"]
    with started(argv + ([] if redact else ["--no-redact"])) as (_, lines):
        seen = _read_until(lines, lambda line: "Ctrl-C" in line)
        urls = dict(line.split() for line in seen if line.strip().startswith(("direct", "nginx-websocket")))
        for url in urls.values():
            asyncio.run(_connect_with_secrets(url))
        for name in urls:
            seen += _read_until(lines, lambda line, name=name: f"[{name}]" in line and "-> 101" in line)
        time.sleep(0.3)
        while not lines.empty():
            seen.append(lines.get())
    return "".join(seen)


def test_up_prints_no_secret() -> None:
    text = _up_output(redact=True)
    assert f"Authorization: Bearer {form(AUTH)}" in text and f"X-Api-Key: {form(API_KEY)}" in text
    assert f"?token={form(QUERY_TOKEN)}" in text and f"access_token, {form(JWT)}, chat" in text
    for secret in (AUTH, API_KEY, COOKIE, QUERY_TOKEN, JWT):
        assert secret not in text, secret
    assert text.count(f"Bearer {form(AUTH)}") >= 2, "same secret, same form, through both topologies"
    raw = _up_output(redact=False)
    assert f"Authorization: Bearer {AUTH}" in raw and f"X-Api-Key: {API_KEY}" in raw


def test_watch_prints_no_secret_and_the_control_history_holds_none() -> None:
    probe = [sys.executable, "-m", "wslab.probe", "--listen", "direct=127.0.0.1:0", "--ping-interval", "0"]
    with started(probe) as (_, lines):
        ready = json.loads(_read_until(lines, lambda line: line.startswith("{"))[-1])
        host, port = ready["listeners"]["direct"]
        asyncio.run(_connect_with_secrets(f"ws://{host}:{port}/before-watch"))
        control = "{}:{}".format(*ready["control"])
        watch = [sys.executable, "-m", "wslab", "watch", "--history", "--control", control]
        with started(watch) as (_, watched):
            # What happened before watch connected comes from the control channel's history.
            seen = _read_until(watched, lambda line: "/before-watch" in line)
            asyncio.run(_connect_with_secrets(f"ws://{host}:{port}/while-watching"))
            seen += _read_until(watched, lambda line: "/while-watching" in line)
            time.sleep(0.3)
            while not watched.empty():
                seen.append(watched.get())
    text = "".join(seen)
    for secret in (AUTH, API_KEY, COOKIE, QUERY_TOKEN, JWT):
        assert secret not in text, secret
    assert len(re.findall(re.escape(f"Authorization: Bearer {form(AUTH)}"), text)) == 2
