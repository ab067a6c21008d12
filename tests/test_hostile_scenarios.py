"""Hostile scenario files: every one is refused with one line naming the file and line, exit 2,
within a second, and nothing else (no traceback, no hang, no silent acceptance)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wslab.cli import main

pytestmark = pytest.mark.fast

GOOD = """\
suite: custom
scenarios:
  - id: first
    title: a client
    steps:
      - connect: {path: /echo, headers: ["X-Trace: 1"], subprotocols: [chat]}
      - send: hello
      - expect_message: hello
      - idle: 1
      - hold: {seconds: 2}
      - command: {wslab: send, bytes: 10}
      - close: {code: 1000}
    expect:
      status: 101
  - id: second
    title: a raw request
    depends_on: [first]
    steps:
      - raw: {method: GET, path: /, headers: ["Host: {host}", "Connection: keep-alive"]}
    expect:
      status: 4xx
"""

# (what is replaced in GOOD, bad replacements): each pair is one hostile file.
FIELD_ATTACKS: dict[str, list[str]] = {
    "idle: 1": [
        "idle: .inf",
        "idle: -.inf",
        "idle: .nan",
        "idle: -1",
        "idle: 1e12",
        "idle: 86401",
        'idle: "1"',
        "idle: [1]",
        "idle: {a: 1}",
        "idle: 1e400",
        "idle: 0x7fffffffffffffffff",
        "idle: null",
    ],
    "hold: {seconds: 2}": [
        "hold: {seconds: .inf}",
        "hold: {seconds: 0}",
        "hold: {seconds: 1e9}",
        "hold: {}",
        "hold: {seconds: 2, seconds: 3}",
        "hold: {second: 2}",
        "hold: 2",
    ],
    "bytes: 10": [
        "bytes: 1099511627776",
        "bytes: -1",
        "bytes: 1.5",
        "bytes: .nan",
        "bytes: 16777217",
        "bytes: 99999999999999999999999999",
    ],
    "path: /echo": [
        'path: "/echo\\nHost: evil"',
        'path: "/echo\\r\\n"',
        'path: "/e\\0cho"',
        "path: echo",
        'path: "/a b"',
        'path: "/' + "x" * 9000 + '"',
        "path: [/echo]",
        'path: "/\\x1b[2J"',
    ],
    '"X-Trace: 1"': [
        '"X-Trace: 1\\r\\nInjected: 2"',
        '"X-Trace: 1\\nInjected: 2"',
        '"X-Trace: \\0"',
        '"X Trace: 1"',
        '"X-Trace 1"',
        '": 1"',
        '"X-Trace: ' + "v" * 9000 + '"',
        "[1, 2]",
    ],
    "subprotocols: [chat]": [
        'subprotocols: ["chat\\r\\nX: 1"]',
        "subprotocols: [1]",
        'subprotocols: [""]',
        "subprotocols: chat",
    ],
    "depends_on: [first]": [
        "depends_on: [second]",
        "depends_on: [nope]",
        "depends_on: first",
        "depends_on: [first, first, nope]",
        "depends_on: [FIRST]",
    ],
    "code: 1000": ["code: 999", "code: 5000", "code: -1", "code: .inf", "code: '1000'"],
    "status: 101": ["status: 1001", "status: 6xx", "status: []", "status: [.nan]", "status: true"],
    "id: first": ["id: First", "id: ''", "id: 'a b'", "id: " + "a" * 200, "id: second", "id: [x]"],
    "title: a client": ["title: " + "t" * 100, 'title: "a\\nb"', "title: 12", "title: {a: b}"],
    "send: hello": ["send: " + "x" * 1_048_577, "send: {bytes: 1e20}", "send: {bytes: 1, text: 2}"],
    "method: GET": ["method: get", 'method: "GE T"', "method: " + "G" * 40, 'method: "GET\\r\\n"'],
    "suite: custom": ["suite: Custom!", "suite: ''", "suite: [custom]", "suite: custom\nsuite: again"],
    "status: 4xx": [
        "status: 4XX",
        "status: 4xx\n      server_received: {headers: {'X': \"a\\nb\"}}",
        "status: 4xx\n      server_error: 12",
        "status: 4xx\n      surprise: true",
        "status: 4xx\n      server_received: {version: HTTP/2}",
        "status: 4xx\n      upgraded: yes please",
    ],
    "    depends_on: [first]\n": [
        "    depends_on: [first]\n    timeout: 0\n",
        "    depends_on: [first]\n    timeout: 1e9\n",
        "    depends_on: [first]\n    correlate: telepathy\n",
        "    depends_on: [first]\n    tier: critical\n",
        "    depends_on: [first]\n    extra: 1\n",
    ],
    "command: {wslab: send, bytes: 10}": [
        "command: {wslab: format-disk}",
        "command: {wslab: silence, seconds: 1e9}",
        "command: {wslab: close, code: 1}",
        "command: {bytes: 10}",
        "command: {wslab: send, bytes: 10, extra: 1}",
    ],
    "subprotocols: [chat]}": [
        "subprotocols: [chat], ping: .inf}",
        "subprotocols: [chat], ping: -1}",
        "subprotocols: [chat], server_ping: 1e9}",
        "subprotocols: [chat], compression: maybe}",
        "subprotocols: [chat], unknown: 1}",
    ],
    'headers: ["Host: {host}", "Connection: keep-alive"]}': [
        'headers: "Host: {host}"}',
        "headers: []\n        extra: 1}",
        "version: HTTP/2, headers: []}",
    ],
    "steps:\n      - connect": [
        "steps: []\n      - connect",
        "steps:\n      - conect",
        "step:\n      - connect",
    ],
}


def _field_files() -> Iterator[tuple[str, str]]:
    for target, attacks in FIELD_ATTACKS.items():
        assert target in GOOD, target
        for number, attack in enumerate(attacks):
            yield f"{target.split(':')[0].strip()}-{number}", GOOD.replace(target, attack, 1)


def _structural_files() -> Iterator[tuple[str, str | bytes]]:
    yield (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b]\n",
    )
    yield "merge-key", GOOD.replace("  - id: second\n", "  - <<: {id: x}\n    id: second\n")
    yield "deep-nesting", "suite: x\nscenarios: " + "[" * 5000 + "]" * 5000 + "\n"
    yield "deep-block", "suite: x\nscenarios:\n" + "".join("  " * i + "- \n" for i in range(200))
    yield "one-line-8MB", "suite: " + "x" * 8_000_000 + "\n"
    yield "just-over-1MiB", GOOD + "# " + "x" * (1 << 20) + "\n"
    yield "empty", ""
    yield "comments-only", "# nothing\n\n"
    yield "not-a-mapping", "- a\n- b\n"
    yield "scalar", "hello\n"
    yield "two-documents", GOOD + "---\n" + GOOD
    yield "python-tag", "suite: !!python/object/apply:os.system ['true']\nscenarios: []\n"
    yield "custom-tag", "suite: !secret x\nscenarios: []\n"
    yield "binary-tag", "suite: !!binary aGVsbG8=\nscenarios: []\n"
    yield "set", GOOD.replace("suite: custom", "suite: !!set {a, b}")
    yield "timestamp-id", GOOD.replace("id: first", "id: 2024-05-01")
    yield "bool-key", GOOD.replace("suite: custom", "suite: custom\non: 1")
    yield "int-key", GOOD.replace("suite: custom", "suite: custom\n1: x")
    yield "null-key", GOOD.replace("suite: custom", "suite: custom\n~: x")
    yield "complex-key", GOOD.replace("suite: custom", "suite: custom\n? [a]\n: x")
    yield "duplicate-top", GOOD + "scenarios: []\n"
    yield "duplicate-deep", GOOD.replace("status: 101", "status: 101\n      status: 200")
    yield "tab-indent", GOOD.replace("  - id: first", "\t- id: first")
    yield "bom-then-garbage", "\ufeff{{{{"
    yield "unclosed-flow", "suite: x\nscenarios: [{id: a"
    yield "unclosed-quote", 'suite: "x\nscenarios: []\n'
    yield (
        "many-scenarios",
        "suite: x\nscenarios:\n"
        + "".join(
            f"  - {{id: s{i}, title: t, steps: [{{tcp_probe: {{}}}}], expect: {{connected: true}}}}\n"
            for i in range(600)
        ),
    )
    yield "many-steps", GOOD.replace("      - send: hello\n", "      - send: hello\n" * 300)
    yield (
        "many-headers",
        GOOD.replace('["X-Trace: 1"]', "[" + ", ".join(f'"X-{i}: 1"' for i in range(300)) + "]"),
    )
    yield from {
        "latin1": "suite: caf\xe9\n".encode("latin-1"),
        "utf16": GOOD.encode("utf-16"),
        "nul": b"suite: x\x00\nscenarios: []\n",
        "esc": b"suite: x\x1b[2J\nscenarios: []\n",
        "bell": b"suite: x\x07\n",
        "lone-cr": b"suite: x\rscenarios: []\n",
        "c1": "suite: x\x85y\n".encode(),
        "bidi": "suite: x\u202ey\n".encode(),
        "surrogate-escape": b'suite: "\\ud800"\n',
        "escaped-nul": b'suite: "x\\0"\n',
        "escaped-esc": b'suite: "x\\e[31m"\n',
        "truncated-utf8": GOOD.encode()[:-1] + b"\xe2\x82",
        "random-bytes": bytes(range(256)) * 4,
    }.items()


def _truncations() -> Iterator[tuple[str, str]]:
    """The good file cut at many offsets: each either loads (then it is valid) or is refused."""
    for offset in range(7, len(GOOD), 9):
        yield f"truncated-{offset}", GOOD[:offset]


def hostile_files() -> list[tuple[str, str | bytes]]:
    return [*_field_files(), *_structural_files(), *_truncations()]


def test_there_are_at_least_200_hostile_files() -> None:
    assert len(hostile_files()) >= 200


def _cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(["validate", str(path)])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    return code, out, err, elapsed


@pytest.mark.parametrize(("name", "content"), hostile_files(), ids=[name for name, _ in hostile_files()])
def test_a_hostile_file_is_one_line_with_file_and_line(
    name: str, content: str | bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, name, content)
    code, out, err, elapsed = validate(path, capsys)
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"
    if name.startswith("truncated-") and code == 0:
        return  # a cut that still makes a valid file (at the end of a scenario)
    assert code == 2, (name, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"wslab: error: {path}"), err
    where = err.removeprefix(f"wslab: error: {path}")
    whole_file = (
        "one-line-8MB",
        "just-over-1MiB",
        "send-0",
        "empty",
        "comments-only",
        "utf16",
        "random-bytes",
    )
    if name not in whole_file:
        assert where[0] == ":" and where[1].isdigit(), f"{name}: no line in {err!r}"


SPECIAL: dict[str, Callable[[Path], Path]] = {
    "dev-zero": lambda folder: _link(folder / "zero.yaml", Path("/dev/zero")),
    "fifo": lambda folder: _fifo(folder / "fifo.yaml"),
    "directory-link": lambda folder: _link(folder / "dir.yaml", folder),
    "dangling": lambda folder: _link(folder / "gone.yaml", folder / "nothing"),
}


def _link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", list(SPECIAL))
def test_special_files_are_refused_at_once(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = SPECIAL[kind](tmp_path)
    code, _, err, elapsed = validate(path, capsys)
    assert code == 2 and elapsed < 1.0 and err.count("\n") == 1, err


def test_the_command_line_says_the_same_and_can_be_interrupted(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad", GOOD.replace("idle: 1", "idle: .inf"))
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "validate", str(bad)], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"wslab: error: {bad}:9: not a finite number: .inf\n"
    # Twenty files of 450 scenarios each: about 3 s of checking, after about 0.5 s of start-up.
    many = [
        _write(
            tmp_path,
            f"big{n}",
            f"suite: s{n}\nscenarios:\n"
            + "".join(
                f"  - {{id: s{n}-{i}, title: t, steps: [{{connect: {{path: /}}}}, {{send: hi}}], "
                "expect: {status: 101}}\n"
                for i in range(450)
            ),
        )
        for n in range(20)
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "wslab", "validate", *map(str, many)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WSLAB_CONTAINMENT": "off"},  # one process, whose CPU time shows its progress
    )
    deadline = time.monotonic() + 10
    while _cpu_seconds(process.pid) < 1.2 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(2)  # past start-up, inside the checking
    _, err = process.communicate(timeout=5)
    assert process.returncode == 130, err
    assert err == "wslab: interrupted; everything it started is stopped\n"
