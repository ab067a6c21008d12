"""The built wheel, installed into a fresh virtual environment outside the repository, is the
same lab: it knows every topology and scenario, answers --version, and gives the same cells."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from wslab import results
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent


def comparable(path: Path) -> dict:
    run = results.load(path)
    return {
        (c.topology, c.scenario): (c.outcome, c.summary, c.server_error.text if c.server_error else None)
        for c in run.cells
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv holding the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = work.glob("wslab-*.whl")
    env = work / "venv"
    venv.create(env, with_pip=True)
    install = subprocess.run(
        [env / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return env / "bin"


def test_the_wheel_carries_the_scenarios_and_topologies(installed: Path, tmp_path: Path) -> None:
    listing = subprocess.run(
        [installed / "wslab", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    for name in load_topologies():
        assert name in listing.stdout
    where = subprocess.run(
        [installed / "python", "-c", "import wslab, wslab.probe; print(wslab.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0 and str(installed.parent) in where.stdout, where
    version = subprocess.run([installed / "wslab", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith("wslab 0.") and "websockets " in version.stdout
    assert "nginx 1." in version.stdout, version.stdout


def test_the_installed_lab_gives_the_same_cells_as_the_checkout(installed: Path, tmp_path: Path) -> None:
    args = ["run", "-t", "direct", "-t", "nginx-default", "--json"]
    wheel = subprocess.run(
        [installed / "wslab", *args, str(tmp_path / "wheel.json")],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    checkout = subprocess.run(
        [sys.executable, "-m", "wslab", *args, str(tmp_path / "checkout.json")],
        capture_output=True,
        timeout=300,
    )
    assert wheel.returncode == checkout.returncode == 1, wheel.stderr
    assert comparable(tmp_path / "wheel.json") == comparable(tmp_path / "checkout.json")
    config = json.loads((tmp_path / "wheel.json").read_text())["topologies"][1]["config"]
    assert "proxy_pass" in config
