"""Shared fixtures: full matrix runs on the local backend, with real proxies."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

import pytest

from wslab.backends import StackOptions
from wslab.backends.compose import TakenDown, networks_held_by_engine
from wslab.backends.compose import compose_down as backend_compose_down
from wslab.backends.local import LocalBackend
from wslab.compose_file import OFFLINE_LAB_IMAGE, project, resolve
from wslab.pytest_plugin import end_session_on_sigterm
from wslab.records import Run
from wslab.runner import RunOptions, run
from wslab.scenario import load_scenarios
from wslab.topology import Topology, load_topologies

# No test plays its cells on a developer's warm lab (`wslab up`), nor leaves one for them:
# the session's commands keep their state file here (tests/test_warm_lab.py sets its own).
STATE_DIR = tempfile.mkdtemp(prefix="wslab-tests-")
os.environ["WSLAB_STATE"] = str(Path(STATE_DIR) / "lab.json")
atexit.register(shutil.rmtree, STATE_DIR, ignore_errors=True)

SEED_VERSION = "15.0.1"
RESULTS_SCHEMA = json.loads(resources.files("wslab.schemas").joinpath("results.schema.json").read_text())
"""The documented results format, which every --json output must match."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """A `timeout pytest` (or a CI job's limit) stops the labs of the tests it cuts short."""
    end_session_on_sigterm()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the Docker engine are marked ``docker``: ``pytest -m "not docker"`` runs
    everything else on a machine without one."""
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


def run_local(
    tmp: Path,
    topologies: list[Topology] | None = None,
    scenario_ids: list[str] | None = None,
    **probe: object,
) -> Run:
    """Run scenarios through topologies on the local backend and return the results."""
    scenarios = load_scenarios()
    if scenario_ids:
        scenarios = [s for s in scenarios if s.id in scenario_ids]
    backend = LocalBackend(tmp, StackOptions(**probe))  # type: ignore[arg-type]
    return asyncio.run(run(backend, topologies or list(load_topologies().values()), scenarios, RunOptions()))


@pytest.fixture(scope="session")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The default matrix with the installed (latest) websockets."""
    return run_local(tmp_path_factory.mktemp("matrix"))


@pytest.fixture(scope="session")
def seed_matrix(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The default matrix with the seed's websockets 15.0.1 in the probe server."""
    return run_local(tmp_path_factory.mktemp("seed"), websockets_version=SEED_VERSION)


@pytest.fixture(scope="session")
def healthcheck_matrix(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The default matrix with the probe server answering plain HTTP with 200."""
    return run_local(tmp_path_factory.mktemp("health"), answer_plain_http=True)


@pytest.fixture(scope="session")
def engine() -> None:
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    assert info.returncode == 0, "no Docker engine: run scripts/test.sh, which starts one"
    image = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            '{{index .Config.Labels "wslab.source"}}',
            offline_image(),
        ],
        capture_output=True,
        text=True,
    )
    assert image.returncode == 0, "offline image missing: run scripts/build-offline-images.sh"
    assert image.stdout.strip() == source_digest(), (
        "offline image is stale: run scripts/build-offline-images.sh"
    )


def offline_image() -> str:
    """The offline image the compose files name ($WSLAB_OFFLINE_REPO, see lab/compose_file.py)."""
    return resolve(OFFLINE_LAB_IMAGE)


def source_digest() -> str:
    """The digest scripts/build-offline-images.sh labels the image with (sha256sum of sha256sums)."""
    root = Path(__file__).resolve().parent.parent
    files = [root / "pyproject.toml"] + [
        path
        for folder in ("lab", "scenarios", "compose")
        for path in (root / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    names = sorted(str(path.relative_to(root)) for path in files)
    listing = "".join(f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n" for name in names)
    return hashlib.sha256(listing.encode()).hexdigest()


def holders(folder: Path) -> list[str]:
    """Processes that still hold a file under ``folder`` open (every child logs there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(target.startswith(str(folder)) for target in targets):
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
    return found


def compose_down(command: list[str], **run: object) -> TakenDown:
    """``command`` (a compose ``down``) as the compose backend takes its stack down: again while
    only the network's removal fails, releasing endpoints Docker 20.10 leaked before the last try."""
    base = command[: command.index("down")]

    def services() -> list[str]:
        listed = subprocess.run([*base, "config", "--services"], capture_output=True, text=True, **run)  # type: ignore[call-overload]
        return listed.stdout.split()

    return backend_compose_down(
        lambda: subprocess.run(command, capture_output=True, text=True, **run),  # type: ignore[call-overload]
        project(),
        services,
    )


def docker_state(name: str | None = None) -> tuple[list[str], ...]:
    """A compose project's containers, networks and volumes (others may share the engine meanwhile):
    ``name``, else this one's. A network the engine keeps with nothing attached, refusing to
    remove it (:func:`networks_held_by_engine`), is not the lab's: only an engine restart
    removes it. One that can be removed is, and is listed this once."""
    name = name or project()
    label = f"label=com.docker.compose.project={name}"
    listings = [
        ["docker", "ps", "-aq", "--filter", label],
        ["docker", "network", "ls", "--filter", label, "--format", "{{.Name}}"],
        ["docker", "volume", "ls", "-q", "--filter", label],
    ]
    containers, networks, volumes = (
        sorted(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split())
        for command in listings
    )
    held = networks_held_by_engine(name)
    return containers, [network for network in networks if network not in held], volumes


def comparable(result: Run) -> dict:
    """What must agree between backends: verdicts, client summaries and server error texts."""
    return {
        (cell.topology, cell.scenario): (
            cell.outcome,
            cell.summary,
            # A set: one cell may see several connections (a TCP probe's window, a page and its favicon).
            sorted({c.error.text if c.error else "" for c in cell.server}),
        )
        for cell in result.cells
    }


def namespace_gone(namespace: str, timeout: float = 10.0) -> bool:
    """Whether no process is left in the network namespace ``namespace`` (a /proc/PID/ns/net
    link's text) within ``timeout`` s: the kernel removes a namespace, and the rules in it, with
    its last process."""
    deadline = time.monotonic() + timeout
    while _namespace_in_use(namespace):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _namespace_in_use(namespace: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == namespace:
                    return True
            except OSError:
                continue
    return False
