"""Ordinary mistakes on the command line: caught before a run spends its time, one line and
exit 2, nothing left behind; and a finished run is never lost to a bad output or a closed pipe."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wslab.cli import main


def private_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of this test's own for everything tempfile makes: another run on the
    machine (a person's, a helper's) cannot put a folder there."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


@pytest.mark.fast
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--json", "/no/such/folder/r.json"],
            "--json /no/such/folder/r.json: folder /no/such/folder does not exist",
        ),
        (["run", "--html", "."], "--html .: is a folder, not a file"),
        (["run", "--json", "-", "--junit", "-"], "only one output can go to standard output"),
        (
            ["run", "--target", "http://example.invalid/", "--token", "t"],
            "--target needs a ws:// or wss:// URL",
        ),
        (
            ["run", "--target", "ws://127.0.0.1:1/x", "--token", "t"],
            "--target takes the server's root URL only",
        ),
        (["run", "--insecure"], "--insecure and --ca-file go with --target"),
        (["run", "--scenario", "nope"], "no scenario matches nope"),
        (["run", "-t", "nope"], "unknown topology nope"),
        (["run", "--baseline", "/etc/hostname"], "/etc/hostname: not JSON"),
        (["validate", "EMPTY"], "no scenario files (*.yaml) here"),
        (["up", "--upstream", "127.0.0.1:99999"], "--upstream needs HOST:PORT"),
        (["run", "--upstream", "192.0.2.1:80"], "the lab only sends traffic to loopback addresses"),
        (["run", "--app-per-topology"], "--app-per-topology goes with --app CMD"),
        (["run", "--app", "true", "--websockets", "15.0.1"], "--websockets sets up the lab's probe server"),
        (["run", "--app", "true", "--backend", "compose"], "not with --backend compose"),
        (["run", "--app", "true", "--upstream", "127.0.0.1:1"], "--upstream HOST:PORT or --app-image"),
        (["run", "--app-image", "me/app"], "--app-image goes with --backend compose or containers"),
        (["run", "--app-port", "9000"], "--app-port goes with --app-image IMAGE"),
        (
            ["run", "--backend", "containers", "--app-image", "me/app", "--app-port", "70000"],
            "--app-port needs a port from 1 to 65535",
        ),
        (
            ["run", "--backend", "compose", "--in-network", "--app-image", "me/app"],
            "--app-image runs from the host",
        ),
        (["watch", "--control", "nowhere"], "--control needs HOST:PORT"),
    ],
)
def test_a_mistake_is_one_line_exit_2_and_leaves_nothing(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / "EMPTY") if arg == "EMPTY" else arg for arg in args]
    scratch = private_scratch(tmp_path, monkeypatch)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1, err
    assert list(scratch.iterdir()) == [], "a temporary run folder was left behind"


@pytest.mark.fast
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "many"])
def test_concurrency_and_step_timeout_must_be_positive(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("--concurrency", "--step-timeout"):
        with pytest.raises(SystemExit) as exited:
            main(["run", option, value])
        assert exited.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err


def wslab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_json_to_standard_output_leaves_the_matrix_on_standard_error(tmp_path: Path) -> None:
    result = wslab("run", "-t", "direct", "--json", "-")
    assert result.returncode == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["format"] == "wslab.results/2" and len(run["cells"]) == len(run["scenarios"])
    assert "wslab · 1 topology × 13 scenarios" in result.stderr


@pytest.mark.parametrize("json_to", ["file", "stdout"])
def test_a_closed_pipe_ends_quietly_and_the_files_are_written(json_to: str, tmp_path: Path) -> None:
    """The reader (true) is gone before the first byte: every write to the pipe fails."""
    page, out = tmp_path / "r.html", tmp_path / "r.json"
    target = "-" if json_to == "stdout" else str(out)
    command = f"{sys.executable} -m wslab run -t direct --json {target} --html {page}"
    result = subprocess.run(
        ["bash", "-c", f"{command} | true; echo status=${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stderr == "" or "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, (
        result.stderr
    )
    assert "Exception ignored" not in result.stderr, result.stderr
    assert result.stdout.splitlines()[-1] == "status=1", "a cut output exits 1, quietly (as rich does)"
    assert "direct" in page.read_text()
    if json_to == "file":
        assert json.loads(out.read_text())["format"] == "wslab.results/2"


def test_each_output_is_written_even_when_another_cannot_be(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = wslab("run", "-t", "direct", "--json", str(out), "--markdown", "/dev/full")
    assert result.returncode == 3, result.stderr
    assert "cannot write markdown to /dev/full: No space left on device" in result.stderr
    assert json.loads(out.read_text())["format"] == "wslab.results/2"


def test_a_relative_run_dir_works_for_every_proxy_that_reads_files(tmp_path: Path) -> None:
    names = ["nginx-websocket", "apache-websocket", "varnish-websocket", "lighttpd-websocket"]
    args = [
        "run",
        *[arg for name in names for arg in ("-t", name)],
        "--run-dir",
        "relative/run",
        "--json",
        "r.json",
    ]
    result = wslab(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    run = json.loads((tmp_path / "r.json").read_text())
    assert {t["status"] for t in run["topologies"]} == {"ready"}, [t["detail"] for t in run["topologies"]]
    assert (tmp_path / "relative" / "run" / "probe-server.log").is_file()
