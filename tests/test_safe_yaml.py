"""lab.safe_yaml: good files load as yaml.safe_load reads them, with lines; hostile ones are refused.

Pure logic: no proxy, no Docker, no network. Every refusal is checked with its exact line and
message; a generator of a few hundred hostile files checks that nothing but YamlInputError ever
comes out, quickly, with both the libyaml and the pure Python parser.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wslab import safe_yaml
from wslab.safe_yaml import MAX_SAFE_INTEGER, Document, YamlInputError, load_yaml

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "compose").glob("*/topology.yaml"))
MiB = 1 << 20
PARSERS = {"libyaml": yaml.CSafeLoader, "python": yaml.SafeLoader}


@pytest.fixture(params=list(PARSERS))
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with libyaml's parser, then with PyYAML's pure Python one (the fallback)."""
    monkeypatch.setattr(safe_yaml, "_Loader", PARSERS[request.param])
    return request.param


def reference_lines(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """The line map lab/scenario.py built from yaml.compose before load_yaml (its _line_map), kept
    here as the behaviour load_yaml must reproduce: a key's own line for a mapping entry."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            reference_lines(value, (*path, key.value), lines)
            lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            reference_lines(item, (*path, index), lines)
    return lines


def reference_load(raw: bytes, parser: str) -> Any:
    """yaml.safe_load with the same parser, but timestamps kept as the string written, as load_yaml does."""

    class Reference(PARSERS[parser]):  # type: ignore[misc, valid-type]
        pass

    Reference.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)
    return yaml.load(raw, Loader=Reference)  # noqa: S506 - a SafeLoader subclass


def write(tmp_path: Path, content: bytes | str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refusal(path: Path, **limits: int) -> YamlInputError:
    with pytest.raises(YamlInputError) as info:
        load_yaml(path, **limits)
    return info.value


def assert_json_compatible(value: Any) -> None:
    """Only dict (str keys), list, str, int, finite float, bool, None, and valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            assert all(isinstance(key, str) for key in item), item
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            assert math.isfinite(item)
        else:
            assert item is None or isinstance(item, str | int | bool), type(item)
    json.dumps(value, allow_nan=False).encode("utf-8")


# --- good files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(ROOT)))
def test_shipped_files_load_like_safe_load_with_line_map_lines(path: Path, parser: str) -> None:
    document = load_yaml(path)
    text = path.read_text()
    assert document.data == yaml.safe_load(text)
    assert document.lines == reference_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    assert document.path == str(path)


GOOD = {
    "block and flow": "a: 1\nb: [x, {c: 2}]\nd:\n  - e: f\n    g: [1, 2.5, -3]\n",
    "block scalars": "a: |\n  one\n  two\nb: >\n  folded\n  text\n\nc: |-\n  kept\n",
    "quoting": "a: 'single ''q'''\nb: \"dq \\t \\u00e9 \\\\\"\nc: 'yes'\nd: \"1\"\ne: ''\n",
    "yaml 1.1 scalars": "a: yes\nb: Off\nc: ~\nd: null\ne: 0x1F\nf: 017\ng: 1:30\nh: 1_000\ni: -0b101\n",
    "floats": "a: 1.5\nb: -2.5e+3\nc: .5\nd: 6.8523015e+5\ne: 190:20:30.15\nf: 1e3\n",
    "explicit standard tags": (
        "a: !!str 1\nb: !!int '7'\nc: !!float 2\nd: !!bool yes\ne: !!null ''\nf: !!seq []\ng: !!map {}\n"
    ),
    "crlf line ends": "a: 1\r\nb:\r\n  - x\r\n  - y\r\n",
    "bom": "\ufeffa: 1\n",
    "document markers": "%YAML 1.1\n---\na: 1\n...\n",
    "comments": "# head\na: 1 # tail\n# end\n",
    "tab and newline in strings": "a: \"x\\ty\\nz\"\nb: 'x\ty'\n",
    "unicode text": "name: caf\u00e9 \u2014 \U0001f600\n",
    "top-level list": "- 1\n- two\n",
    "top-level scalar": "just text\n",
    "explicit null document": "---\n",
    "empty collections": "a: []\nb: {}\nc:\n",
    "nested lists": "- - - a\n  - b\n- c\n",
    "largest safe integers": f"a: {MAX_SAFE_INTEGER}\nb: -{MAX_SAFE_INTEGER}\n",
    "complex-looking string key": "? a\n: 1\n",
}


@pytest.mark.parametrize("text", GOOD.values(), ids=GOOD.keys())
def test_good_documents_load_like_safe_load(tmp_path: Path, text: str, parser: str) -> None:
    document = load_yaml(write(tmp_path, text))
    assert document.data == yaml.safe_load(text)
    assert_json_compatible(document.data)


def test_lines_are_value_lines_and_key_lines(tmp_path: Path) -> None:
    text = (
        "suite: s\n\nscenarios:\n  - id: a\n    steps:\n      - connect: {path: /}\n"
        "      -\n        send: x\n"
    )
    document = load_yaml(write(tmp_path, text))
    assert document.lines == {
        (): 1,
        ("suite",): 1,
        ("scenarios",): 3,
        ("scenarios", 0): 4,
        ("scenarios", 0, "id"): 4,
        ("scenarios", 0, "steps"): 5,
        ("scenarios", 0, "steps", 0): 6,
        ("scenarios", 0, "steps", 0, "connect"): 6,
        ("scenarios", 0, "steps", 0, "connect", "path"): 6,
        ("scenarios", 0, "steps", 1): 8,
        ("scenarios", 0, "steps", 1, "send"): 8,
    }
    assert document.line_of(("scenarios", 0, "steps", 1, "send", "nothing", 3)) == 8
    assert document.line_of(["scenarios", 5]) == 3
    assert document.line_of(()) == 1
    assert Document("x", None, {}).line_of(("a",)) is None


def test_timestamps_stay_the_string_written(tmp_path: Path) -> None:
    document = load_yaml(write(tmp_path, "a: 2024-05-01\nb: 2024-05-01 10:00:00Z\n2024-05-02: key\n"))
    assert document.data == {"a": "2024-05-01", "b": "2024-05-01 10:00:00Z", "2024-05-02": "key"}


def test_limits_are_inclusive(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path, "[" * 32 + "]" * 32), max_depth=32).data is not None
    assert load_yaml(write(tmp_path, "[1, 2]"), max_nodes=3).data == [1, 2]
    assert load_yaml(write(tmp_path, "a: 12345\n"), max_bytes=9).data == {"a": 12345}


def test_symlink_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "a: 1\n", "real.yaml")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    assert load_yaml(tmp_path / "link.yaml").data == {"a": 1}


# --- refusals, each with its exact line and message --------------------------------------------

ALLOWED = "only !!str, !!int, !!float, !!bool, !!null, !!seq and !!map are"
REFUSED = {
    # (content, line, message)
    "duplicate key": ("id: a\nx: 1\nid: b\n", 3, "duplicate key 'id' (first at line 1)"),
    "duplicate key, deep": (
        "scenarios:\n  - steps:\n      - send: {a: 1,\n              a: 2}\n",
        4,
        "duplicate key 'a' (first at line 3)",
    ),
    "duplicate key, quoted twin": ("a: 1\n'a': 2\n", 2, "duplicate key 'a' (first at line 1)"),
    "alias": ("a: 1\nb: *a\n", 2, "aliases and anchors are not allowed ('*a')"),
    "anchor": ("a: &a 1\nb: *a\n", 1, "aliases and anchors are not allowed ('&a')"),
    "anchor on a key": ("x: 1\n&k a: 1\n", 2, "aliases and anchors are not allowed ('&k')"),
    "merge key": ("a: 1\nb:\n  <<: {c: 1}\n", 3, "merge keys ('<<') are not allowed"),
    "merge value": (
        "a: <<\n",
        1,
        "merge keys ('<<') are not allowed (quote '<<' to mean the text)",
    ),
    "value key": ("a: =\n", 1, "a plain '=' is YAML 1.1's value key (quote it to mean the text)"),
    "inf": ("idle: .inf\n", 1, "not a finite number: .inf"),
    "negative inf": ("a: 1\nb: -.Inf\n", 2, "not a finite number: -.Inf"),
    "nan": ("a:\n  - .NaN\n", 2, "not a finite number: .NaN"),
    "float overflow": ("a: 1.0e+400\n", 1, "not a finite number: 1.0e+400"),
    "tagged inf": ("a: !!float .inf\n", 1, "not a finite number: .inf"),
    "big integer": (
        f"a: {MAX_SAFE_INTEGER + 1}\n",
        1,
        f"integer out of range (beyond ±{MAX_SAFE_INTEGER}): {MAX_SAFE_INTEGER + 1}",
    ),
    "huge integer": ("a: " + "9" * 101 + "\n", 1, "number literal longer than 100 characters"),
    "hex integer": (
        "a: 0x" + "f" * 20 + "\n",
        1,
        f"integer out of range (beyond ±{MAX_SAFE_INTEGER}): 0x{'f' * 20}",
    ),
    "bare binary prefix": ("a: 0b_\n", 1, "not a valid integer: 0b_"),
    "control character": ("a: 1\nb: x\x07y\n", 2, "control character U+0007 is not allowed"),
    "nul": ("a: x\x00\n", 1, "control character U+0000 is not allowed"),
    "escape character": ("a: 1\n\nb: \x1b[31m\n", 3, "control character U+001B is not allowed"),
    "lone cr": (
        "a: 1\nb: x\ry\n",
        2,
        "control character U+000D is not allowed (a CR must be followed by LF)",
    ),
    "nel": ("a: x\u0085y\n", 1, "control character U+0085 is not allowed"),
    "line separator": ("a: 1\nb: x\u2028y\n", 2, "character U+2028 (LINE SEPARATOR) is not allowed"),
    "bom inside": (
        "a: 1\nb: x\ufeffy\n",
        2,
        "byte order mark U+FEFF is only allowed at the start of the file",
    ),
    "noncharacter": ("a: \uffff\n", 1, "character U+FFFF (a noncharacter) is not allowed"),
    "escaped cr": ('a: 1\nb: "x\\r\\ny"\n', 2, "control character U+000D is not allowed in a string"),
    "escaped nul": ('a: "x\\0"\n', 1, "control character U+0000 is not allowed in a string"),
    "escaped esc in a key": ('"a\\e": 1\n', 1, "control character U+001B is not allowed in a string"),
    "escaped nel": ('a: "\\N"\n', 1, "control character U+0085 is not allowed in a string"),
    "escaped paragraph separator": (
        'a: "\\P"\n',
        1,
        "character U+2029 (PARAGRAPH SEPARATOR) is not allowed in a string",
    ),
    "nesting": (
        "a:\n" + "".join("  " * i + "- \n" for i in range(1, 40)),
        33,
        "nesting deeper than 32 levels",
    ),
    "flow nesting": ("a: " + "{b: " * 40 + "}" * 40 + "\n", 1, "nesting deeper than 32 levels"),
    "integer key": (
        "a: 1\n1: x\n",
        2,
        "mapping key must be a string, not an integer: '1' (quote it to mean the text)",
    ),
    "boolean key": (
        "on: push\n",
        1,
        "mapping key must be a string, not a boolean: 'on' (quote it to mean the text)",
    ),
    "null key": (
        "null: x\n",
        1,
        "mapping key must be a string, not null: 'null' (quote it to mean the text)",
    ),
    "empty key": ("? \n: x\n", 1, "mapping key must be a string, not null: '' (quote it to mean the text)"),
    "float key": (
        "{1.5: x}\n",
        1,
        "mapping key must be a string, not a float: '1.5' (quote it to mean the text)",
    ),
    "sequence key": ("a: 1\n? [a]\n: 1\n", 2, "mapping key must be a string, not a sequence"),
    "mapping key": ("{{a: 1}: 1}\n", 1, "mapping key must be a string, not a mapping"),
    "python tag": (
        "a: !!python/object/apply:os.system [ls]\n",
        1,
        "tag '!!python/object/apply:os.system' is not allowed on a sequence",
    ),
    "python scalar tag": (
        "a: !!python/name:os.system ''\n",
        1,
        f"tag '!!python/name:os.system' is not allowed ({ALLOWED})",
    ),
    "local tag": ("a: 1\nb: !foo bar\n", 2, f"tag '!foo' is not allowed ({ALLOWED})"),
    "non-specific tag": ("a: ! 5\n", 1, f"tag '!' is not allowed ({ALLOWED})"),
    "binary": ("a: !!binary aGk=\n", 1, f"tag '!!binary' is not allowed ({ALLOWED})"),
    "set": ("a: !!set {x, y}\n", 1, "tag '!!set' is not allowed on a mapping"),
    "omap": ("a: !!omap [b: 1]\n", 1, "tag '!!omap' is not allowed on a sequence"),
    "timestamp tag": ("a: !!timestamp 2024-01-01\n", 1, f"tag '!!timestamp' is not allowed ({ALLOWED})"),
    "wrong standard tag": ("a: !!map [1]\n", 1, "tag '!!map' is not allowed on a sequence"),
    "tag that does not fit": ("a: !!int abc\n", 1, "'abc' is not a valid !!int"),
    "bool tag that does not fit": ("a: !!bool maybe\n", 1, "'maybe' is not a valid !!bool"),
    "two documents": ("a: 1\n---\nb: 2\n", 2, "more than one document (a second one starts here)"),
    "invalid utf-8": ("a: 1\n\nb: ok\nc: \udcff\n", 4, "byte 0xff is not UTF-8"),
    "truncated utf-8": (b"a: \xe2\x82", 1, "byte 0xe2 is not UTF-8 (unexpected end of data)"),
    "bad continuation": (b"a: 1\nb: \xc3(\n", 2, "byte 0xc3 is not UTF-8 (invalid continuation byte)"),
    "tab indentation": (
        "a:\n\tb: 1\n",
        2,
        "invalid YAML: a tab indents this line; YAML indents with spaces only",
    ),
    "unclosed flow": (
        "a: [1, 2\nb: 3\n",
        2,
        "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence started at line 1)",
    ),
}


def _content(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(("content", "line", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refusals_name_file_line_and_problem(
    tmp_path: Path, content: str | bytes, line: int, message: str, parser: str
) -> None:
    path = write(tmp_path, _content(content))
    error = refusal(path)
    assert (error.path, error.line) == (str(path), line)
    if parser == "python" and message.startswith("invalid YAML: did"):
        assert error.message.startswith("invalid YAML: ")  # PyYAML words syntax errors its own way
    else:
        assert error.message == message
    assert str(error) == f"{path}:{line}: {error.message}"


FILE_REFUSED = {
    "empty": (b"", "empty file"),
    "comments only": (b"# nothing\n\n", "empty file: no YAML document, only blank lines or comments"),
    "too large": (b"a: " + b"x" * 100, "larger than 100 bytes"),
}


@pytest.mark.parametrize(("content", "message"), FILE_REFUSED.values(), ids=FILE_REFUSED.keys())
def test_file_level_refusals_have_no_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, content)
    assert str(refusal(path, max_bytes=100)) == f"{path}: {message}"


def test_depth_and_node_limits_are_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\n  b:\n    c: 1\n")
    assert str(refusal(path, max_depth=2)) == f"{path}:3: nesting deeper than 2 levels"
    assert str(refusal(path, max_nodes=4)) == f"{path}:3: more than 4 nodes (keys, values and items)"


@pytest.mark.timeout(10)
def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.yaml")  # a plain open would wait for a writer forever
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    expected = {
        tmp_path / "zero.yaml": "not a regular file (/dev/zero is a character device)",
        Path("/dev/null"): "not a regular file (a character device)",
        tmp_path / "fifo.yaml": "not a regular file (a FIFO)",
        tmp_path / "dir.yaml": "not a regular file (a directory)",
        tmp_path / "dangling.yaml": "cannot read: No such file or directory",
        tmp_path / "missing.yaml": "cannot read: No such file or directory",
    }
    for path, message in expected.items():
        start = time.perf_counter()
        assert str(refusal(path)) == f"{path}: {message}"
        assert time.perf_counter() - start < 0.1


def test_reads_at_most_max_bytes_plus_one_even_when_the_size_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /proc-like file says it is empty; the read loop still stops after max_bytes + 1."""
    path = write(tmp_path, b"a" * 10_000)
    real_fstat, real_read = os.fstat, os.read
    reads: list[int] = []

    def lying_fstat(fd: int) -> os.stat_result:
        info = list(real_fstat(fd))
        info[6] = 0  # st_size
        return os.stat_result(info)

    def counting_read(fd: int, size: int) -> bytes:
        data = real_read(fd, min(size, 7))  # short reads, as a pipe-like file gives
        reads.append(len(data))
        return data

    monkeypatch.setattr(safe_yaml.os, "fstat", lying_fstat)
    monkeypatch.setattr(safe_yaml.os, "read", counting_read)
    assert str(refusal(path, max_bytes=100)) == f"{path}: larger than 100 bytes"
    assert sum(reads) == 101


# --- speed and interruption --------------------------------------------------------------------


def _largest_allowed_file(tmp_path: Path) -> Path:
    """The costliest file the defaults accept: 1 MiB, 99,998 nodes, all integers."""
    lines = [f"k{i}: {i}\n" for i in range(49_999)]
    text = "".join(lines)
    text += "#" * (MiB - len(text.encode()) - 1) + "\n"
    path = write(tmp_path, text, "largest.yaml")
    assert path.stat().st_size == MiB
    return path


def test_largest_allowed_file_loads_well_under_a_second(tmp_path: Path) -> None:
    """About 0.2 s with libyaml on one idle core; the bound leaves room for a busy machine."""
    path = _largest_allowed_file(tmp_path)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        document = load_yaml(path)
        timings.append(time.perf_counter() - start)
    assert len(document.data) == 49_999
    assert min(timings) < 0.8, f"{min(timings):.3f}s"


@pytest.mark.parametrize("parser_name", list(PARSERS))
def test_ctrl_c_interrupts_a_load_promptly(
    tmp_path: Path, parser_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_yaml, "_Loader", PARSERS[parser_name])
    path = _largest_allowed_file(tmp_path)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.03)
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            for _ in range(100):  # a load is far longer than 30 ms; loop in case one were not
                load_yaml(path)
        late = time.perf_counter() - start - 0.03
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert late < 0.2, f"KeyboardInterrupt came {late:.3f}s after the signal"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_process_loading_stops_on_a_signal(tmp_path: Path, signum: int) -> None:
    """A real Ctrl-C, and a SIGTERM the program handles in Python (as the lab's runner does)."""
    path = _largest_allowed_file(tmp_path)
    code = (
        "import signal, sys\n"
        "from lab.safe_yaml import load_yaml\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        "load_yaml(sys.argv[1])\n"
        "print('loading', flush=True)\n"
        "while True:\n"
        "    load_yaml(sys.argv[1])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"loading\n"
        time.sleep(0.05)
        start = time.perf_counter()
        process.send_signal(signum)
        process.wait(timeout=5)
        elapsed = time.perf_counter() - start
    finally:
        process.kill()
        process.wait()
    assert elapsed < 1.0, f"{elapsed:.3f}s"
    assert process.returncode == (-signal.SIGINT if signum == signal.SIGINT else 143)
    if signum == signal.SIGINT:
        assert process.stderr is not None
        assert b"KeyboardInterrupt" in process.stderr.read()


# --- a few hundred hostile files ---------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile file: its bytes (or a function making a special file), and what must come of it."""

    category: str
    name: str
    content: bytes = b""
    make: Callable[[Path], Path] | None = None
    refused: str | None = None  # if set, it must be refused with a message containing this
    line: int | None = None  # and, if set, at this line

    def create(self, folder: Path) -> Path:
        return self.make(folder) if self.make else write(folder, self.content, "hostile.yaml")


def _shipped_bytes() -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in SHIPPED[:4]]


def _symlink(target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "hostile.yaml").symlink_to(target)
        return folder / "hostile.yaml"

    return make


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "hostile.yaml")
    return folder / "hostile.yaml"


def _directory(folder: Path) -> Path:
    (folder / "hostile.yaml").mkdir()
    return folder / "hostile.yaml"


def _socket(folder: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "hostile.yaml"))
    server.close()
    return folder / "hostile.yaml"


def _symlink_loop(folder: Path) -> Path:
    (folder / "hostile.yaml").symlink_to(folder / "other.yaml")
    (folder / "other.yaml").symlink_to(folder / "hostile.yaml")
    return folder / "hostile.yaml"


def _sparse(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    with path.open("wb") as file:
        file.truncate(10 << 30)  # 10 GiB of zeros that take no disk
    return path


def _hostile_files() -> list[Hostile]:
    cases: list[Hostile] = []

    def add(
        category: str, name: str, content: str | bytes, refused: str | None = None, line: int | None = None
    ):
        cases.append(Hostile(category, name, _content(content), refused=refused, line=line))

    rng = random.Random(20240501)
    for name, raw in _shipped_bytes():
        for offset in sorted(
            {*rng.sample(range(1, len(raw)), 20), 1, 2, len(raw) // 2, len(raw) - 1, len(raw) - 2}
        ):
            add("truncation", f"{name}@{offset}", raw[:offset])
    for index in range(60):
        name, raw = _shipped_bytes()[index % 4]
        flipped = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        add("byte flip", f"{name}#{index}", bytes(flipped))

    anchors = "aliases and anchors are not allowed"
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{x}: &{x} [{','.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcdefgh", "bcdefghi", strict=True)
    )
    add("alias bomb", "billion laughs, lists", laughs, anchors + " ('&a')", 1)
    add(
        "alias bomb",
        "billion laughs, maps",
        "a: &a {x: 1, y: 1}\nb: &b {x: *a, y: *a, z: *a}\nc: [*b, *b, *b]\n",
        anchors + " ('&a')",
        1,
    )
    add(
        "alias bomb",
        "324-byte shape",
        "- &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"- &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        anchors + " ('&a')",
        1,
    )
    add("alias bomb", "alias without anchor", "a: 1\nb: [*nowhere, *nowhere]\n", anchors + " ('*nowhere')", 2)
    add("alias bomb", "self reference", "&a [*a]\n", anchors + " ('&a')", 1)
    add("alias bomb", "anchored key", "? &k [a]\n: 1\n", anchors + " ('&k')", 1)
    add("alias bomb", "anchored root after ---", "--- &r\n- 1\n- *r\n", anchors + " ('&r')", 1)
    add("alias bomb", "anchored empty value", "a: &x\nb: *x\n", anchors + " ('&x')", 1)
    add("alias bomb", "anchor after tag", "a: !!str &x foo\n", anchors + " ('&x')", 1)
    add("alias bomb", "merge of an alias", "base: &b {a: 1}\nx:\n  <<: *b\n", anchors + " ('&b')", 1)
    add(
        "alias bomb",
        "merge of a list",
        "x:\n  <<: [{a: 1}, {b: 2}]\n",
        "merge keys ('<<') are not allowed",
        2,
    )
    add("alias bomb", "flow aliases", "[&a [1,2], [*a, *a], [*a, *a]]\n", anchors + " ('&a')", 1)

    deep = "nesting deeper than 32 levels"
    add("deep nesting", "flow lists 33", "[" * 33 + "]" * 33, deep, 1)
    add("deep nesting", "flow lists 32 (accepted)", "[" * 32 + "]" * 32)
    add("deep nesting", "flow maps 33", "{a: " * 33 + "}" * 33, deep, 1)
    add("deep nesting", "block maps 40", "".join("  " * i + "k:\n" for i in range(40)), deep, 33)
    add(
        "deep nesting",
        "block maps 32 (accepted)",
        "".join("  " * i + "k:\n" for i in range(32)) + "  " * 32 + "v\n",
    )
    add("deep nesting", "block lists on one line", "- " * 50 + "x\n", deep, 1)
    add(
        "deep nesting",
        "mixed",
        "a:\n" + "".join("  " * i + ("- " if i % 2 else "b:") + "\n" for i in range(1, 60)),
        deep,
    )
    add("deep nesting", "10k unclosed [", "[" * 10_000, deep, 1)
    add("deep nesting", "25k unclosed {a: ", "{a: " * 25_000, deep, 1)
    add("deep nesting", "100k unclosed {", "{" * 100_000, "mapping key must be a string, not a mapping", 1)
    add("deep nesting", "1 MiB of [ and ]", "[" * (MiB // 2) + "]" * (MiB // 2), deep, 1)
    add("deep nesting", "flow in block", "a:\n  b:\n    - " + "[" * 40 + "]" * 40 + "\n", deep, 3)

    big = "larger than 1048576 bytes"
    add("huge file", "1 MiB one-line string (accepted)", 'a: "' + "x" * (MiB - 6) + '"\n')
    add("huge file", "1 MiB + 1 one-line string", 'a: "' + "x" * (MiB - 5) + '"\n', big)
    add("huge file", "8 MB one line", "a: " + "x" * 8_000_000, big)
    add("huge file", "1 MiB plain scalar (accepted)", "a: " + "x" * (MiB - 4) + "\n")
    add(
        "huge file",
        "1 MiB one-line digits",
        "a: " + "1" * (MiB - 4) + "\n",
        "number literal longer than 100",
        1,
    )
    add("huge file", "1 MiB one-line comment", "#" * (MiB - 1) + "\n", "empty file")
    add("huge file", "1 MiB of newlines", "\n" * MiB, "empty file")
    add(
        "huge file", "1 MiB flow list of ints", "[" + "1," * (MiB // 2 - 1) + "]", "more than 100000 nodes", 1
    )
    add("huge file", "1 MiB of list items", "- x\n" * (MiB // 4), "more than 100000 nodes", 100_000)
    add(
        "huge file",
        "1 MiB base-60 number",
        "a: " + "1:" * (MiB // 2 - 3) + "1\n",
        "number literal longer than 100",
    )
    cases.append(Hostile("huge file", "sparse 10 GiB", make=_sparse, refused=big))

    dup = "duplicate key"
    add("duplicate key", "top level", "a: 1\nb: 2\na: 3\n", dup + " 'a' (first at line 1)", 3)
    add("duplicate key", "depth 2", "a:\n  b: 1\n  b: 2\n", dup + " 'b' (first at line 2)", 3)
    add(
        "duplicate key",
        "depth 4",
        "a:\n  - b:\n      c:\n        d: 1\n        d: 1\n",
        dup + " 'd' (first at line 4)",
        5,
    )
    add("duplicate key", "flow", "{x: 1, y: 2, x: 3}\n", dup + " 'x' (first at line 1)", 1)
    add("duplicate key", "flow multi-line", "a: {x: 1,\n  x: 3}\n", dup + " 'x' (first at line 1)", 2)
    add("duplicate key", "quoted and plain", '"k": 1\nk: 2\n', dup + " 'k' (first at line 1)", 2)
    add("duplicate key", "explicit ? form", "? k\n: 1\n? k\n: 2\n", dup + " 'k' (first at line 1)", 3)
    add("duplicate key", "in a list item", "- id: a\n  id: b\n", dup + " 'id' (first at line 1)", 2)
    add(
        "duplicate key",
        "shipped file, doubled suite",
        b"suite: extra\n" + SHIPPED[0].read_bytes(),
        dup + " 'suite'",
    )

    finite = "not a finite number"
    for spelling in [
        ".inf",
        ".Inf",
        ".INF",
        "+.inf",
        "-.inf",
        "-.Inf",
        "-.INF",
        ".nan",
        ".NaN",
        ".NAN",
        "1.0e+400",
        "-1.0e+400",
        "1_000.0e+999",
        "!!float .inf",
        "!!float -.inf",
    ]:
        add(
            "nan/inf",
            spelling,
            f"ok: 1\nidle: {spelling}\n",
            f"{finite}: {spelling.removeprefix('!!float ')}",
            2,
        )
    add("nan/inf", "in a flow list", "a: [1, .nan]\n", finite + ": .nan", 1)
    add("nan/inf", "as a key", ".inf: x\n", "mapping key must be a string, not a float", 1)
    add("nan/inf", "1e400 is a string in YAML 1.1 (accepted)", "a: 1e400\n")
    add("nan/inf", "!!float 1e400", "a: !!float 1e400\n", "'1e400' is not a valid !!float", 1)

    for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x80, 0x85, 0x9B, 0x9F]:
        add(
            "control character",
            f"U+{code:04X}",
            f"ok: 1\nv: a{chr(code)}b\n",
            f"control character U+{code:04X} is not allowed",
            2,
        )
    add(
        "control character",
        "lone CR",
        "a: 1\rb: 2\n",
        "U+000D is not allowed (a CR must be followed by LF)",
        1,
    )
    add("control character", "CR at end of file", "a: 1\r", "U+000D", 1)
    add("control character", "U+2028", "a: x\u2028y\n", "character U+2028 (LINE SEPARATOR)", 1)
    add("control character", "U+2029", "a: 1\n# \u2029\n", "character U+2029 (PARAGRAPH SEPARATOR)", 2)
    add("control character", "U+FFFE", "a: \ufffe\n", "character U+FFFE", 1)
    add("control character", "NUL in a comment", "a: 1 # \x00\n", "U+0000", 1)
    for escape, code in [
        ("\\0", 0),
        ("\\a", 7),
        ("\\e", 0x1B),
        ("\\r", 0x0D),
        ("\\x1f", 0x1F),
        ("\\x7f", 0x7F),
        ("\\u0000", 0),
        ("\\N", 0x85),
        ("\\v", 0x0B),
        ("\\f", 0x0C),
    ]:
        add(
            "control character",
            f"escaped {escape}",
            f'a: 1\nb: "x{escape}y"\n',
            f"control character U+{code:04X} is not allowed in a string",
            2,
        )
    add(
        "control character",
        "escaped \\L",
        'a: "\\L"\n',
        "character U+2028 (LINE SEPARATOR) is not allowed in a",
        1,
    )
    add("control character", "escaped \\uFEFF", 'a: "\\uFEFF"\n', "U+FEFF", 1)
    add("control character", "escaped \\uD800", 'a: "\\uD800"\n', None, 1)  # libyaml's own error, or ours
    add("control character", "CRLF header injection", 'h: "Host: x\\r\\nEvil: 1"\n', "U+000D", 1)

    utf8 = "is not UTF-8"
    for name, raw in [
        ("0xff", b"\xff"),
        ("0xfe", b"\xfe"),
        ("overlong NUL", b"\xc0\x80"),
        ("overlong slash", b"\xe0\x80\xaf"),
        ("surrogate", b"\xed\xa0\x80"),
        ("beyond U+10FFFF", b"\xf4\x90\x80\x80"),
        ("5-byte form", b"\xf8\x88\x80\x80\x80"),
        ("lone continuation", b"\x80"),
        ("bad continuation", b"\xc3("),
        ("latin-1", b"caf\xe9"),
    ]:
        add("invalid UTF-8", name, b"a: 1\nb: " + raw + b"\n", utf8, 2)
    add("invalid UTF-8", "truncated at end", b"a: 1\nb: \xe2\x82", utf8, 2)
    add("invalid UTF-8", "UTF-16 LE with BOM", "a: 1\n".encode("utf-16"), "byte 0xff is not UTF-8", 1)
    add("invalid UTF-8", "UTF-16 BE with BOM", b"\xfe\xff" + "a: 1\n".encode("utf-16-be"), "byte 0xfe", 1)
    add("invalid UTF-8", "UTF-32", "a: 1\n".encode("utf-32"), "byte 0xff", 1)

    tab = "a tab indents this line"
    add("tab indentation", "tab-indented key", "a:\n\tb: 1\n", tab, 2)
    add("tab indentation", "tab after spaces", "a:\n  b: 1\n  \tc: 2\n", None, 3)
    add("tab indentation", "tab-indented item", "\t- a\n", tab, 1)
    add("tab indentation", "tab after dash", "- a\n-\tb\n", None)
    add("tab indentation", "tab inside a value (accepted)", "a: x\ty\n")
    add("tab indentation", "tab-indented continuation", "a:\n  b: 1\n\tc: 2\n", None, 3)

    allowed = "is not allowed"
    for tag in [
        "!!python/object:os.system",
        "!!python/object/apply:os.system",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/tuple",
        "!foo",
        "!",
        "!!binary",
        "!!timestamp",
        "!<tag:yaml.org,2002:python/object>",
        "!<!bar>",
        "!!merge",
        "!!value",
    ]:
        add("tag", f"{tag} on a scalar", f"a: 1\nb: {tag} x\n", allowed, 2)
    add("tag", "!!python/object/apply on a list", "a: !!python/object/apply:os.system [ls]\n", allowed, 1)
    add("tag", "!!set", "a: !!set {x, y}\n", "'!!set' is not allowed on a mapping", 1)
    add("tag", "!!omap", "a: !!omap [b: 1]\n", "'!!omap' is not allowed on a sequence", 1)
    add("tag", "!!pairs", "a: !!pairs [b: 1]\n", "'!!pairs'", 1)
    add(
        "tag",
        "%TAG remaps !!",
        "%TAG !! tag:yaml.org,2002:python/\n---\na: !!object x\n",
        "tag '!!python/object' is not allowed",
        3,
    )
    add("tag", "!!int that is not one", "a: !!int 1.5\n", "'1.5' is not a valid !!int", 1)
    add("tag", "!!null that is not null", "a: !!null x\n", "'x' is not a valid !!null", 1)
    add("tag", "newline in a tag", "a: !foo%0Abar x\n", "tag '!foo\\nbar' is not allowed", 1)
    add("tag", "1 MB tag", "a: !" + "t" * 1_000_000 + " x\n", "... (1000001 characters)' is not allowed", 1)
    add("tag", "!!float with a newline", 'a: !!float ".inf\\n"\n', "not a valid float: .inf\\n", 1)
    long_key = "k" * 500_000  # explicit "? " keys: an implicit key stops at 1024 characters
    add("duplicate key", "1 MB key", f"? {long_key}\n: 1\n? {long_key}\n: 2\n", "(500000 characters)'", 3)
    add("tag", "!!str on a mapping", "a: !!str {b: 1}\n", "'!!str' is not allowed on a mapping", 1)

    key = "mapping key must be a string"
    for name, text, line in [
        ("integer", "a: 1\n1: x\n", 2),
        ("float", "2.5: x\n", 1),
        ("yes", "yes: x\n", 1),
        ("on", "on: [push]\n", 1),
        ("null", "null: x\n", 1),
        ("tilde", "~: x\n", 1),
        ("empty", "? \n: x\n", 1),
        ("sequence", "? [a]\n: 1\n", 1),
        ("mapping", "? {a: 1}\n: 1\n", 1),
        ("flow sequence key", "{[a]: 1}\n", 1),
        ("implicit flow key", "[a]: 1\n", 1),
        ("hex", "0x10: x\n", 1),
    ]:
        add("non-string key", name, text, key, line)
    add("non-string key", "timestamp key stays a string (accepted)", "2024-01-01: x\n")

    multi = "more than one document"
    add("multi-document", "two documents", "a: 1\n---\nb: 2\n", multi, 2)
    add("multi-document", "trailing ---", "---\na: 1\n---\n", multi, 3)
    add("multi-document", "end marker then another", "a: 1\n...\n---\nb: 1\n", multi, 3)
    add("multi-document", "inline documents", "--- 1\n--- 2\n", multi, 2)
    add("multi-document", "second empty document after ...", "a: 1\n...\n--- \n", multi, 3)

    for name, make, message in [
        (
            "symlink to /dev/zero",
            _symlink("/dev/zero"),
            "not a regular file (/dev/zero is a character device)",
        ),
        ("symlink to /dev/urandom", _symlink("/dev/urandom"), "not a regular file (/dev/urandom"),
        ("symlink to /dev/null", _symlink("/dev/null"), "not a regular file (/dev/null"),
        ("symlink to /", _symlink("/"), "not a regular file (/ is a directory)"),
        ("FIFO", _fifo, "not a regular file (a FIFO)"),
        ("directory", _directory, "not a regular file (a directory)"),
        ("socket", _socket, "cannot read: No such device or address"),
        ("symlink loop", _symlink_loop, "cannot read: Too many levels of symbolic links"),
        ("dangling symlink", _symlink("/nonexistent/x.yaml"), "cannot read: No such file or directory"),
    ]:
        cases.append(Hostile("special file", name, make=make, refused=message))

    out_of_range = "integer out of range"
    for name, text, message in [
        ("10**100000", "a: 1" + "0" * 100_000 + "\n", "number literal longer than 100 characters"),
        ("2**53", f"a: {2**53}\n", out_of_range),
        ("-(2**53)", f"a: -{2**53}\n", out_of_range),
        ("2**64 hex", "a: 0x10000000000000000\n", out_of_range),
        ("big octal", "a: 0" + "7" * 30 + "\n", out_of_range),
        ("big binary", "a: 0b" + "1" * 60 + "\n", out_of_range),
        ("big base 60", "a: " + ":".join(["59"] * 12) + "\n", out_of_range),
        ("underscored", "a: " + "9_" * 20 + "9\n", out_of_range),
        ("long float", "a: 1." + "0" * 200 + "\n", "number literal longer than 100 characters"),
        ("2**53 - 1 (accepted)", f"a: {2**53 - 1}\n", None),
        ("underscores (accepted)", "a: 1_000_000\n", None),
    ]:
        add("big number", name, text, message, 1 if message else None)

    for name, text, message in [
        ("empty", "", "empty file"),
        ("only comments", "# a\n# b\n", "empty file"),
        ("only spaces", "   \n\n  \n", "empty file"),
        ("only a BOM", "\ufeff", "empty file"),
        ("only ---", "---\n", None),
        ("only ...", "...\n", "invalid YAML"),  # both parsers want a node before "..."
        ("only ~", "~\n", None),
    ]:
        add("empty", name, text, message)

    for name, text, line in [
        ("unclosed quote", "a: 'x\n", 2),
        ("unclosed flow", "a: [1, 2\nb: 3\n", 2),
        ("bad indentation", "a: 1\n b: 2\n", 2),
        ("value: value", "a: b: c\n", 1),
        ("YAML 2.0", "%YAML 2.0\n---\na\n", 1),
        ("bad escape", 'a: "\\q"\n', 1),
        ("stray ]", "a: ]\n", 1),
        ("only a colon", ": x\n", 1),
        ("unclosed {", "{a: 1\n", 2),
        ("bad block scalar indicator", "a: |x\n  y\n", 1),
    ]:
        add("syntax", name, text, "invalid YAML", line)
    add("syntax", "unknown directive (libyaml refuses, Python ignores)", "%FOO bar\n---\na: 1\n")
    return cases


HOSTILE = _hostile_files()


def test_there_are_a_few_hundred_hostile_files() -> None:
    counts: dict[str, int] = {}
    for case in HOSTILE:
        counts[case.category] = counts.get(case.category, 0) + 1
    print(counts)
    assert len(HOSTILE) >= 200
    assert len({(case.category, case.name) for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", HOSTILE, ids=[f"{case.category}: {case.name}" for case in HOSTILE])
def test_hostile_file_gives_data_or_a_one_line_refusal_quickly(
    tmp_path: Path, case: Hostile, parser: str
) -> None:
    path = case.create(tmp_path)
    if parser == "python" and path.is_file() and not path.is_symlink() and path.stat().st_size > 64 << 10:
        pytest.skip("the pure Python parser needs seconds for a 1 MiB file; libyaml covers these")
    start = time.perf_counter()
    try:
        document = load_yaml(path)
    except YamlInputError as error:
        elapsed = time.perf_counter() - start
        text = str(error)
        assert "\n" not in text and "\r" not in text
        assert text.startswith(f"{path}:{error.line}: " if error.line else f"{path}: ")
        assert error.path == str(path)
        if case.refused:
            assert case.refused in error.message
        if case.line is not None:
            assert error.line == case.line, text
    else:
        elapsed = time.perf_counter() - start
        assert case.refused is None, f"accepted: {document.data!r:.200}"
        assert_json_compatible(document.data)
        raw = path.read_bytes()
        assert document.data == reference_load(raw, parser)
        assert all(isinstance(line, int) and line >= 1 for line in document.lines.values())
    assert elapsed < 1.0, f"{elapsed:.3f}s"  # 0.22 s at worst on an idle machine


# --- properties --------------------------------------------------------------------------------

_characters = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cs", "Zl", "Zp"),
    exclude_characters="\ufeff\ufffe\uffff",
    include_characters="\t\n",
)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_characters)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(_characters, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_json_values, flow=st.booleans())
def test_what_safe_dump_writes_loads_back(tmp_path: Path, data: Any, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    try:
        document = load_yaml(write(tmp_path, text))
    except YamlInputError as error:
        # safe_dump writes a string that looks like a timestamp quoted, and keys like 'on' quoted,
        # so the one refusal here would be nesting beyond the limit, which these sizes cannot reach.
        pytest.fail(f"{error}\n{text}")
    assert document.data == yaml.safe_load(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=200)
    | st.text(alphabet="ab:-[]{}&*!|>'\"#,?\n\t \\0.~", max_size=80).map(str.encode)
)
def test_arbitrary_bytes_give_data_or_a_refusal(tmp_path: Path, raw: bytes) -> None:
    try:
        document = load_yaml(write(tmp_path, raw))
    except YamlInputError as error:
        assert "\n" not in str(error)
    else:
        assert_json_compatible(document.data)
