"""A run's output files are written by a forked copy of the command while it prints the matrix,
and waited for however the matrix ends (wslab.commands.common.FilesAside)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from wslab.commands.common import FilesAside

pytestmark = pytest.mark.fast


def _by_whom(name: str) -> str:
    return json.dumps({"format": name, "pid": os.getpid()})


def test_the_files_are_written_by_a_copy_while_this_process_goes_on(tmp_path: Path) -> None:
    files = {"json": str(tmp_path / "r.json"), "html": str(tmp_path / "r.html")}
    with FilesAside(files, _by_whom) as aside:
        assert aside.lines is None  # not known until the copy is done
    assert aside.lines == [f"json: {files['json']}", f"html: {files['html']}"]
    for name, path in files.items():
        written = json.loads(Path(path).read_text())
        assert written["format"] == name and written["pid"] != os.getpid()


def test_a_file_that_cannot_be_written_is_said_and_fails_the_outputs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    files = {"json": str(tmp_path / "r.json"), "markdown": "/dev/full"}
    with FilesAside(files, _by_whom) as aside:
        pass
    assert aside.lines is None
    assert "cannot write markdown to /dev/full: No space left on device" in capfd.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["format"] == "json"


def test_a_renderer_that_fails_in_the_copy_is_one_line_and_fails_the_outputs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(name: str) -> str:
        raise ValueError("no such field")

    with FilesAside({"json": str(tmp_path / "r.json")}, broken) as aside:
        pass
    assert aside.lines is None
    said = capfd.readouterr().err.splitlines()
    assert said == ["wslab: lab failure: cannot write json: ValueError('no such field')"]


def test_the_copy_is_waited_for_when_the_matrix_meets_a_closed_pipe(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with pytest.raises(BrokenPipeError), FilesAside({"json": str(out)}, _by_whom):
        raise BrokenPipeError
    assert json.loads(out.read_text())["format"] == "json"


def test_with_another_thread_running_the_files_are_written_in_line(tmp_path: Path) -> None:
    # Forking a process with threads could copy a lock another thread holds.
    out = tmp_path / "r.json"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with FilesAside({"json": str(out)}, _by_whom) as aside:
            assert aside.lines == [f"json: {out}"]
    finally:
        stop.set()
        other.join()
    assert json.loads(out.read_text())["pid"] == os.getpid()


def test_no_file_no_copy() -> None:
    with FilesAside({}, _by_whom) as aside:
        pass
    assert aside.lines == []
