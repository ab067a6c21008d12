"""A network the Docker engine will not remove after the stack is down (moby/moby#42119).

The engine bug cannot be caused on purpose, so these tests put a stand-in ``docker`` first on
PATH: it answers the CLI calls compose_down makes from a JSON state, and refuses to remove
the networks named ``held`` as Docker 20.10 does ("has active endpoints")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wslab.backends import compose as compose_backend

pytestmark = pytest.mark.fast

FAKE_DOCKER = r"""
import json, sys
path = sys.argv[1]
args = sys.argv[2:]
state = json.load(open(path))

def words(items):
    print("\n".join(items))

if args[:1] == ["ps"]:
    if "-q" in args:
        words(state["project_containers"])
    else:
        words(state["project_containers"] + state["other_containers"])
elif args[:2] == ["network", "ls"]:
    words(state["networks"])
elif args[:2] == ["network", "inspect"]:
    words(state["attached"].get(args[-1], []))
elif args[:2] == ["network", "rm"]:
    name = args[2]
    if name in state["held"]:
        print(f"Error response from daemon: error while removing network: network {name} id 4fc4 "
              "has active endpoints", file=sys.stderr)
        sys.exit(1)
    state["networks"].remove(name)
elif args[:2] == ["network", "disconnect"]:
    print(f"Error response from daemon: endpoint {args[-1]} not found", file=sys.stderr)
    sys.exit(1)
elif args[:2] == ["volume", "ls"]:
    words(state["volumes"])
elif args[:2] == ["volume", "rm"]:
    state["volumes"] = [v for v in state["volumes"] if v not in args[2:]]
else:
    sys.exit(f"unexpected docker call: {args}")
json.dump(state, open(path, "w"))
"""

REFUSED = subprocess.CompletedProcess(
    ["docker", "compose", "down"],
    1,
    "",
    " Network wslab_default  Error\nfailed to remove network wslab_default: Error response from daemon: "
    "error while removing network: network wslab_default id 4fc4 has active endpoints\n",
)


@pytest.fixture
def engine_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the stand-in engine's state; its ``docker`` is first on PATH. Returns a reader."""
    path = tmp_path / "state.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake_docker.py").write_text(FAKE_DOCKER)
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\nexec {sys.executable} {bin_dir / "fake_docker.py"} {path} "$@"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setattr(compose_backend.time, "sleep", lambda seconds: None)

    def write(**state: object) -> None:
        base = {
            "project_containers": [],
            "other_containers": [],
            "networks": ["wslab_default"],
            "attached": {},
            "held": ["wslab_default"],
            "volumes": ["wslab_versions"],
        }
        path.write_text(json.dumps({**base, **state}))

    write()
    return write, lambda: json.loads(path.read_text())


def test_a_network_the_engine_holds_with_nothing_attached_leaves_the_stack_down(engine_state) -> None:
    _write, read = engine_state
    downs = []
    taken = compose_backend.compose_down(lambda: downs.append(1) or REFUSED, "wslab", lambda: ["probe"])
    assert len(downs) == 1 + compose_backend.DOWN_RETRIES
    assert taken.complete and taken.held_networks == ("wslab_default",)
    # Compose v1 stops at the network before the volumes: they are removed here.
    assert read()["volumes"] == []
    warning = taken.warning()
    assert "wslab_default" in warning and "moby/moby#42119" in warning and "restarting the engine" in warning


def test_a_network_a_live_container_is_attached_to_is_a_failed_down(engine_state) -> None:
    write, read = engine_state
    write(other_containers=["someone-else"], attached={"wslab_default": ["someone-else"]})
    taken = compose_backend.compose_down(lambda: REFUSED, "wslab", lambda: ["probe"])
    assert not taken.complete and taken.held_networks == () and taken.warning() == ""
    assert read()["volumes"] == ["wslab_versions"]


def test_a_container_of_the_project_left_is_a_failed_down(engine_state) -> None:
    write, _read = engine_state
    write(project_containers=["wslab-probe-1"])
    taken = compose_backend.compose_down(lambda: REFUSED, "wslab", lambda: ["probe"])
    assert not taken.complete and taken.held_networks == ()


def test_a_network_that_can_be_removed_is_removed_not_reported_held(engine_state) -> None:
    write, read = engine_state
    write(held=[])
    assert compose_backend.networks_held_by_engine("wslab") == ()
    assert read()["networks"] == []


def test_a_down_that_succeeds_is_complete_with_nothing_held(engine_state) -> None:
    ok = subprocess.CompletedProcess(["docker", "compose", "down"], 0, "", "")
    taken = compose_backend.compose_down(lambda: ok, "wslab", lambda: ["probe"])
    assert taken.complete and taken.held_networks == ()
