"""The compose stack run from other checkouts of this repository's HEAD: a Windows one (Git for
Windows' core.autocrlf=true turns text files into CRLF), and one with a broken proxy config.

Each runs `wslab run --backend compose --offline` from its checkout, on a project of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import comparable, docker_state

from wslab import results
from wslab.compose_file import project
from wslab.records import DeploymentStatus, Outcome, Run

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ["direct", "haproxy-default", "nginx-websocket"]


def checkout(tmp_path: Path, *, crlf: bool) -> Path:
    """A clone of this repository's HEAD, with CRLF line endings as Git for Windows makes them."""
    folder = tmp_path / "checkout"
    autocrlf = "true" if crlf else "false"
    subprocess.run(
        ["git", "clone", "-q", "-c", f"core.autocrlf={autocrlf}", str(ROOT), str(folder)], check=True
    )
    return folder


def checkout_project() -> str:
    return f"{project()}-checkout"


def run_from(folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`wslab run --backend compose --offline` with the checkout's own code, files and project."""
    path = tmp_path / "path"
    path.mkdir()
    (path / "wslab").symlink_to(folder / "lab")
    env = {
        **os.environ,
        "PYTHONPATH": str(path),
        "WSLAB_HOME": str(folder),
        "COMPOSE_PROJECT_NAME": checkout_project(),
    }
    command = [sys.executable, "-m", "wslab", "run", "--backend", "compose", "--offline"]
    for name in TOPOLOGIES:
        command += ["-t", name]
    return subprocess.run([*command, *args], cwd=folder, capture_output=True, text=True, timeout=600, env=env)


def expected(matrix: Run, names: list[str]) -> dict:
    return {key: value for key, value in comparable(matrix).items() if key[0] in names}


def test_a_crlf_checkout_runs_the_stack(engine: None, matrix: Run, tmp_path: Path) -> None:
    folder = checkout(tmp_path, crlf=True)
    assert b"\r\n" in (folder / "lab" / "cli.py").read_bytes(), "the checkout has CRLF text files"
    # What the containers and Compose read keeps LF (.gitattributes).
    for name in [
        "compose/render.sh",
        "compose/haproxy-default/haproxy.cfg",
        "compose/nginx-websocket/nginx.conf",
        "compose/offline/Dockerfile",
        "docker-compose.yml",
        ".env",
    ]:
        assert b"\r" not in (folder / name).read_bytes(), name
    before = docker_state(checkout_project())
    out = tmp_path / "crlf.json"
    result = run_from(folder, tmp_path, "--json", str(out))
    # 1: cells fail by design (the matrix's own failures); 3 would be the lab failing.
    assert result.returncode == 1, result.stderr[-3000:]
    run = results.load(out)
    assert [cell for cell in run.cells if cell.outcome == Outcome.ERROR] == []
    assert comparable(run) == expected(matrix, TOPOLOGIES)
    assert docker_state(checkout_project()) == before


def test_a_proxy_that_exits_is_a_column_of_lab_errors(engine: None, matrix: Run, tmp_path: Path) -> None:
    """From the host: the container's exit is noticed (no waiting out the timeout), its column
    says so with the proxy's own error, and the other topologies complete."""
    folder = checkout(tmp_path, crlf=False)
    config = folder / "compose" / "haproxy-default" / "haproxy.cfg"
    config.write_text(config.read_text() + "\nthis-is-not-a-keyword\n")
    before = docker_state(checkout_project())
    out = tmp_path / "broken.json"
    result = run_from(folder, tmp_path, "--json", str(out))
    assert result.returncode == 3, result.stderr[-3000:]
    run = results.load(out)
    record = next(t for t in run.topologies if t.name == "haproxy-default")
    assert record.status == DeploymentStatus.FAILED
    assert "the haproxy-default container stopped" in record.detail
    assert "this-is-not-a-keyword" in record.log_tail, record.log_tail
    broken = [cell for cell in run.cells if cell.topology == "haproxy-default"]
    assert broken and all(cell.outcome == Outcome.ERROR for cell in broken)
    assert run.duration < 60, "the exit was noticed, not the 120 s timeout waited out"
    others = [name for name in TOPOLOGIES if name != "haproxy-default"]
    run.cells = [cell for cell in run.cells if cell.topology in others]
    assert comparable(run) == expected(matrix, others)
    assert docker_state(checkout_project()) == before
