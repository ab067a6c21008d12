"""Scenario files: the shipped ones load; bad ones fail with file, line and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wslab.scenario import ScenarioError, load_scenarios, load_suite

pytestmark = pytest.mark.fast

GOOD_HEAD = """\
suite: custom
scenarios:
  - id: ok
    title: fine
    steps:
      - connect: {path: /}
    expect:
      status: 101
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_scenarios_load_with_unique_ids() -> None:
    scenarios = load_scenarios()
    ids = [s.id for s in scenarios]
    assert len(ids) == len(set(ids)) >= 10
    required = {
        "websockets-echo",
        "chrome-handshake",
        "firefox-keepalive-upgrade",
        "browser-tab-get",
        "head-root",
        "tcp-probe",
        "http10-upgrade",
        "lowercase-headers",
        "subprotocol",
        "path-and-query",
    }
    assert required <= set(ids)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GOOD_HEAD.replace("connect: {path: /}", "conect: {path: /}"), 6, "'conect' was unexpected"),
        (GOOD_HEAD.replace("status: 101", "status: 1001"), 8, "1001"),
        (GOOD_HEAD.replace("status: 101", "stauts: 101"), 8, "'stauts' was unexpected"),
        (GOOD_HEAD.replace("    title: fine\n", ""), 3, "'title' is a required property"),
        (GOOD_HEAD.replace("{path: /}", "{path: no-slash}"), 6, "does not match '^/"),
        (
            GOOD_HEAD.replace("      - connect: {path: /}\n", "      - send: hi\n"),
            6,
            "'send' needs an open WebSocket",
        ),
        (GOOD_HEAD.replace("{path: /}", '{path: /, headers: ["Upgrade websocket"]}'), 6, "does not match"),
        (GOOD_HEAD + "  - id: ok\n", 9, None),
        (GOOD_HEAD.replace("expect:", "expect: [oops"), 8, "invalid YAML"),
    ],
)
def test_bad_file_names_file_line_and_problem(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_suite(path)
    error = caught.value
    assert error.path == str(path)
    assert error.line == line, str(error)
    if message:
        assert message in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_duplicate_ids_across_files_point_at_both(tmp_path: Path) -> None:
    write(tmp_path, GOOD_HEAD, "a.yaml")
    write(tmp_path, GOOD_HEAD.replace("suite: custom", "suite: other"), "b.yaml")
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([tmp_path])
    assert caught.value.path.endswith("b.yaml") and caught.value.line == 3
    assert "a.yaml:3" in caught.value.message


def test_cli_reports_bad_file_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_HEAD.replace("status: 101", "stauts: 101"))
    for command in (["validate", str(path)], ["run", "--scenarios", str(path)]):
        result = subprocess.run([sys.executable, "-m", "wslab", *command], capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"wslab: error: {path}:8: scenarios[0].expect: Additional properties are not allowed "
            "('stauts' was unexpected)"
        ]


def test_probe_server_steps_make_a_scenario_need_the_probe_server(tmp_path: Path) -> None:
    commands = GOOD_HEAD.replace(
        "      - connect: {path: /}\n", "      - connect: {path: /}\n      - command: {wslab: handshake}\n"
    )
    (scenario,) = load_suite(write(tmp_path, commands)).scenarios
    assert scenario.needs_probe_server
    (plain,) = load_suite(write(tmp_path, GOOD_HEAD, "plain.yaml")).scenarios
    assert not plain.needs_probe_server
    said = GOOD_HEAD.replace("    title: fine\n", "    title: fine\n    needs_probe_server: true\n")
    assert load_suite(write(tmp_path, said, "said.yaml")).scenarios[0].needs_probe_server
    contradiction = commands.replace("    title: fine\n", "    title: fine\n    needs_probe_server: false\n")
    with pytest.raises(ScenarioError) as error:
        load_suite(write(tmp_path, contradiction, "wrong.yaml"))
    assert str(error.value).endswith(
        "wrong.yaml:5: ok: needs_probe_server is false, but its steps talk to the lab's probe server "
        "(a command, server_ping)"
    )


def test_env_placeholders_must_name_set_variables(tmp_path: Path) -> None:
    from wslab.scenario import environment_values

    text = GOOD_HEAD.replace("{path: /}", "{path: /, headers: ['Authorization: Bearer {env:TOKEN}']}")
    scenarios = load_scenarios([write(tmp_path, text)])
    assert scenarios[0].environment == ["TOKEN"]
    assert environment_values(scenarios, {"TOKEN": "t0k"}) == {"TOKEN": "t0k"}
    with pytest.raises(ScenarioError) as error:
        environment_values(scenarios, {})
    assert "suite.yaml:3: ok: {env:TOKEN} names the environment variable TOKEN, which is not set" in str(
        error.value
    )
