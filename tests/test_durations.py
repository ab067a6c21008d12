"""The cell durations a run remembers for the next, to play the longest first: a cache that
survives anything written into it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wslab import durations

pytestmark = pytest.mark.fast


def test_a_run_adds_its_cells_to_what_earlier_runs_remembered(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "cell-durations.json"
    durations.remember([("nginx-default/websockets-echo", 0.02), ("direct/tcp-probe", 0.3)], path)
    durations.remember([("direct/tcp-probe", 0.01)], path)
    assert durations.load(path) == {"nginx-default/websockets-echo": 0.02, "direct/tcp-probe": 0.01}
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"a": ' + b"1" * 2_000_000 + b"}"],
)
def test_a_file_that_is_not_one_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cell-durations.json"
    path.write_bytes(content)
    assert durations.load(path) == {}
    durations.remember([("direct/websockets-echo", 0.02)], path)
    assert durations.load(path) == {"direct/websockets-echo": 0.02}


def test_only_finite_seconds_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "cell-durations.json"
    path.write_text(json.dumps({"a/b": 0.5, "c/d": -1, "e/f": "slow", "g/h": None, "i/j": True, "k/l": 3}))
    path.write_text(path.read_text().replace("3}", "1e999}"))
    assert durations.load(path) == {"a/b": 0.5}


def test_a_folder_that_cannot_be_written_only_loses_the_order(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    durations.remember([("a/b", 1.0)], blocker / "cell-durations.json")  # no exception
    assert durations.load(blocker / "cell-durations.json") == {}
