"""A user's app as a Docker image behind the compose and containers backends' topologies
(`wslab run --app-image IMAGE --app-port PORT`): the same evidence as with `--app`, the app's
log lines tied to cells from its container's output, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import docker_state, offline_image

from wslab import results
from wslab.app_container import stamped
from wslab.compose_file import APP_SERVICE, PROBE_SERVICE, app_document
from wslab.records import Outcome, Run
from wslab.topology import load_topologies
from wslab.websockets_release import websockets_path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "wslab-test/seed-app:1"
EXITING = "wslab-test/exiting-app:1"
PORT = 8765
TOPOLOGIES = ["haproxy-default", "replit-dev"]
SCENARIOS = ["browser-tab-get", "deploy-health-check", "websockets-echo"]
PLAIN_HTTP = ("browser-tab-get", "deploy-health-check")


def wslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100"},
    )


def all_containers() -> list[str]:
    listing = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True)
    return sorted(listing.stdout.split())


@pytest.fixture(scope="module")
def app_image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example websockets app (no health-check fix) on the seed's websockets 15.0.1, built on
    the offline lab image (it has Python) and removed afterwards."""
    context = tmp_path_factory.mktemp("image")
    shutil.copy(ROOT / "examples" / "websockets-app" / "app.py", context / "app.py")
    shutil.copytree(websockets_path("15.0.1"), context / "seed")
    (context / "Dockerfile").write_text(
        f"FROM {offline_image()}\n"
        "COPY app.py /srv/app.py\nCOPY seed /srv/seed\n"
        "ENV PYTHONPATH=/srv/seed\nWORKDIR /srv\n"
        'CMD ["python", "/srv/app.py"]\n'
    )
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(context)], check=True, capture_output=True)
    yield IMAGE
    subprocess.run(["docker", "image", "rm", "-f", IMAGE], capture_output=True)


def run_image(backend: str, image: str, tmp_path: Path) -> Run:
    out = tmp_path / "results.json"
    command = ["run", "--backend", backend, "--offline", "--app-image", image, "--app-port", str(PORT)]
    for name in TOPOLOGIES:
        command += ["-t", name]
    for scenario in SCENARIOS:
        command += ["--scenario", scenario]
    completed = wslab(*command, "--json", str(out))
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "your app (image wslab-test/seed-app:1)" in completed.stdout
    return results.load(out)


def check_cells(run: Run) -> None:
    assert run.app is not None and run.app.image == IMAGE and run.app.exit == ""
    assert run.components.websockets_server == ""
    for topology in TOPOLOGIES:
        for scenario in PLAIN_HTTP:
            cell = run.cell(topology, scenario)
            assert cell.outcome == Outcome.FAIL, (topology, scenario)
            error = cell.server_error
            assert error is not None and error.source == "app log", (topology, scenario, cell.app_log)
            assert (error.type, error.text) == ("InvalidUpgrade", "missing Connection header")
            logged = "\n".join(line.text for line in cell.app_log)
            assert "websockets.exceptions.InvalidUpgrade: missing Connection header" in logged
            assert cell.diagnosis is not None and "process_request" in cell.diagnosis.fix
        echo = run.cell(topology, "websockets-echo")
        assert echo.outcome == Outcome.PASS, (topology, echo.summary)
        # What the app received, read by the tap in the probe container.
        assert echo.server and echo.server[0].tap is not None and echo.server[0].upgraded


def test_compose_puts_the_image_behind_the_topologies(app_image: str, tmp_path: Path) -> None:
    before = docker_state()
    check_cells(run_image("compose", app_image, tmp_path))
    assert docker_state() == before, "the stack (app included) was taken down"


def test_containers_puts_the_image_behind_the_topologies(app_image: str, tmp_path: Path) -> None:
    before = all_containers()
    check_cells(run_image("containers", app_image, tmp_path))
    assert all_containers() == before


@pytest.fixture(scope="module")
def exiting_image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An app that says why on stderr and exits before it listens."""
    context = tmp_path_factory.mktemp("exiting")
    command = "import sys; print('DATABASE_URL is not set', file=sys.stderr); sys.exit(3)"
    (context / "Dockerfile").write_text(
        f"FROM {offline_image()}\nCMD {json.dumps(['python', '-c', command])}\n"
    )
    subprocess.run(["docker", "build", "-q", "-t", EXITING, str(context)], check=True, capture_output=True)
    yield EXITING
    subprocess.run(["docker", "image", "rm", "-f", EXITING], capture_output=True)


@pytest.mark.parametrize("backend", ["compose", "containers"])
def test_an_image_that_exits_says_so_with_its_lines(exiting_image: str, backend: str, tmp_path: Path) -> None:
    """The run stops at once with exit 2, the app's own last line, and nothing left running."""
    image = exiting_image
    before, stack_before = all_containers(), docker_state()
    completed = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "--backend", backend, "--offline", "-t", "haproxy-default"]
        + ["--app-image", image, "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert f"your app (image {image}) stopped before listening on port 8080" in completed.stderr
    assert "DATABASE_URL is not set" in completed.stderr
    assert all_containers() == before
    assert docker_state() == stack_before, "the stack's network and volumes were removed too"


@pytest.mark.fast
def test_docker_timestamps_become_the_entry_times() -> None:
    at, text = stamped("2026-12-02T10:45:01.250000000Z INFO websockets.server connection rejected")
    assert text == "INFO websockets.server connection rejected"
    assert at == pytest.approx(1796208301.25)
    assert stamped("no stamp here") == (None, "no stamp here")


@pytest.mark.fast
def test_the_app_shares_the_probes_network_and_every_listener_taps_it() -> None:
    topologies = [load_topologies()[name] for name in TOPOLOGIES]
    document = app_document(topologies, "me/app:dev", {"PORT": "9000", "HOST": "127.0.0.1"})
    app = document["services"][APP_SERVICE]
    assert app["network_mode"] == f"service:{PROBE_SERVICE}" and "ports" not in app
    assert app["environment"]["PORT"] == "9000" and app["pull_policy"] == "never"
    command = document["services"][PROBE_SERVICE]["command"]
    forwards = [command[i + 1] for i, arg in enumerate(command) if arg == "--forward"]
    assert forwards == [f"{name}=127.0.0.1:9000" for name in TOPOLOGIES]
