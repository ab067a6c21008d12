"""The lifecycle suite: the event step's loader rules, what the lab can cause where, the records
and checks (fast, no proxy); then the suite played through real proxies (local backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import lived_through, topology

from wslab.errors import ScenarioError
from wslab.expectations import evaluate
from wslab.lifecycle import assumption, event_seconds, unsupported
from wslab.proxies import REGISTRY
from wslab.scenario import load_scenarios, load_suite
from wslab.topology import Topology

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.fast
def test_the_lifecycle_suite_loads_and_is_not_a_default_suite() -> None:
    scenarios = load_scenarios(suites=["lifecycle"])
    assert {s.id: s.events for s in scenarios} == {
        "proxy-reload": ["proxy-reload"],
        "server-restart": ["server-restart"],
    }
    assert all(s.exclusive and s.needs_probe_server for s in scenarios)
    assert "lifecycle" not in {s.suite for s in load_scenarios()}


@pytest.mark.fast
def test_an_event_step_needs_an_exclusive_scenario(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(
        "suite: x\nscenarios:\n  - id: a\n    title: a\n    steps:\n      - connect: {path: /}\n"
        "      - event: {cause: proxy-reload}\n    expect: {survives_event: true}\n"
    )
    with pytest.raises(ScenarioError, match="correlate: exclusive"):
        load_suite(file)
    file.write_text(file.read_text().replace("    title: a\n", "    title: a\n    correlate: exclusive\n"))
    assert load_suite(file).scenarios[0].needs_probe_server
    file.write_text(file.read_text().replace("proxy-reload", "power-cut"))
    with pytest.raises(ScenarioError):
        load_suite(file)


@pytest.mark.fast
def test_every_kind_says_how_it_reloads_with_its_documentation() -> None:
    for kind in REGISTRY.values():
        reload = kind.reload
        assert reload is not None and reload.source.startswith("https://"), kind.name
        assert (reload.signal is None and not reload.argv) == bool(reload.unsupported), kind.name
    assert REGISTRY["haproxy"].argv.split()[1:3] == ["-W", "-db"], "SIGUSR2 reloads only in master-worker"


@pytest.mark.fast
def test_what_the_lab_can_cause_where() -> None:
    assert unsupported("proxy-reload", topology(), "local") is None
    assert "no proxy" in (unsupported("proxy-reload", _direct(), "local") or "")
    assert "hot-restart" in (unsupported("proxy-reload", topology(proxy="envoy"), "local") or "")
    assert unsupported("proxy-reload", topology(proxy="caddy"), "local") is None, "caddy reload"
    assert unsupported("server-restart", _direct(), "local") is None
    for backend in ("compose", "containers"):
        assert unsupported("server-restart", topology(), backend) is None
        assert unsupported("proxy-reload", topology(), backend) is None
    assert "remote backend" in (unsupported("server-restart", topology(), "remote") or "")
    assert assumption(topology(), "proxy-reload") == ""
    assert assumption(topology(role="platform", platform="Render"), "proxy-reload").startswith(
        "assumption: Render"
    )
    assert event_seconds({"after": 1, "watch": 2, "down": 1, "reconnect": True, "reconnect_within": 5}) == 9


def _direct() -> Topology:
    return topology(proxy="none", config=None)


@pytest.mark.fast
def test_the_checks_read_the_event_record() -> None:
    expect = {"survives_event": True, "accepts_during_event": True}
    assert all(c.ok for c in evaluate(expect, lived_through()))
    failed = [
        c.name for c in evaluate(expect, lived_through(closed_after=0.1, code=1006, frame=False)) if not c.ok
    ]
    assert failed == ["survives_event"]
    restart = lived_through("server-restart", closed_after=0.01, code=1001)
    assert all(c.ok for c in evaluate({"event_close_code": 1001, "reconnects": True}, restart))
    assert lived_through().summary() == "kept"
    assert restart.summary() == "1001 ↻0.5s"


def _run(tmp_path: Path, *topologies: str) -> dict:
    out = tmp_path / "life.json"
    argv = [sys.executable, "-m", "wslab", "run", "--suite", "lifecycle", "--json", str(out)]
    for name in topologies:
        argv += ["-t", name]
    subprocess.run(argv, cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=240)
    return json.loads(out.read_text())


def _cells(result: dict) -> dict[tuple[str, str], dict]:
    return {(c["topology"], c["scenario"]): c for c in result["cells"]}


def test_reloads_and_restarts_through_real_proxies_do_what_their_docs_say(tmp_path: Path) -> None:
    for kind in ("nginx", "haproxy"):
        if REGISTRY[kind].locate() is None:
            pytest.skip(f"{kind} is not installed")
    cells = _cells(_run(tmp_path, "direct", "nginx-websocket", "haproxy-default"))
    # nginx: old workers keep serving open connections; HAProxy: the old worker keeps them.
    for name in ("nginx-websocket", "haproxy-default"):
        cell = cells[(name, "proxy-reload")]
        life = cell["client"]["lifecycle"]
        assert cell["outcome"] == "pass", cell["checks"]
        assert life["survived"] and life["lost"] == [] and life["new_connection"]["opened"]
        assert life["event"]["source"].startswith("https://")
    assert cells[("direct", "proxy-reload")]["outcome"] == "not-applicable"
    # The server's 1001 Going Away reaches the client through each, and a reconnecting client is back.
    for name in ("direct", "nginx-websocket", "haproxy-default"):
        cell = cells[(name, "server-restart")]
        life = cell["client"]["lifecycle"]
        assert cell["outcome"] == "pass", cell["checks"]
        assert life["code"] == 1001 and life["close_frame_received"] and life["closed_by"] == "peer"
        assert life["reconnect"]["back_after"] >= 0.9, "the server stays down 1 s"
        closes = [c["closed"] for c in cell["server"] if c["closed"]]
        assert closes[0]["code"] == 1001 and closes[0]["closed_by"] == "server"


def test_caddy_closes_websockets_on_reload_unless_stream_close_delay(tmp_path: Path) -> None:
    """caddy reload unloads the old config and, with it, the streams it proxied (1001 from Caddy
    at once); caddy-websocket's stream_close_delay 5m keeps the open WebSocket."""
    if REGISTRY["caddy"].locate() is None:
        pytest.skip("caddy is not installed")
    cells = _cells(_run(tmp_path, "caddy-default", "caddy-websocket"))
    closed = cells[("caddy-default", "proxy-reload")]
    life = closed["client"]["lifecycle"]
    assert closed["outcome"] == "fail" and life["code"] == 1001 and life["close_frame_received"]
    assert life["closed_after"] < 1 and life["new_connection"]["opened"]
    assert closed["diagnosis"]["rule"] == "reload-closed-websocket"
    assert "stream_close_delay" in closed["diagnosis"]["fix"]
    kept = cells[("caddy-websocket", "proxy-reload")]
    assert kept["outcome"] == "pass", kept["checks"]
    assert kept["client"]["lifecycle"]["survived"]


def test_graceful_restarts_that_stop_accepting_are_diagnosed(tmp_path: Path) -> None:
    if REGISTRY["lighttpd"].locate() is None:
        pytest.skip("lighttpd is not installed")
    cell = _cells(_run(tmp_path, "lighttpd-websocket"))[("lighttpd-websocket", "proxy-reload")]
    # lighttpd's graceful restart keeps the open WebSocket but accepts nothing until it ends.
    assert cell["client"]["lifecycle"]["survived"]
    assert cell["diagnosis"]["rule"] == "reload-refused-new-connections"
    assert "server.graceful-restart-bg" in cell["diagnosis"]["fix"]


@pytest.mark.fast
def test_the_timeline_places_the_event_messages_close_and_return() -> None:
    from wslab.reports.timeline import timeline

    record = lived_through("server-restart", closed_after=0.5, code=1001).transcript.lifecycle
    assert record is not None
    line = timeline(record)
    kinds = {mark["kind"]: mark["x"] for mark in line["marks"]}
    assert set(kinds) == {"event", "close", "back", "new"}
    assert 0 <= kinds["event"] < kinds["close"] < kinds["back"] <= 100


@pytest.mark.fast
def test_compare_has_a_reload_row_from_measured_cells() -> None:
    from wslab.deployment_choice import Event, Seen
    from wslab.records import Outcome

    assert Event(Seen(Outcome.PASS, "kept"), assumed=False).text() == "kept [measured]"
    assert "[assumed]" in Event(Seen(Outcome.PASS, "kept"), assumed=True).text()
    assert Event(Seen(Outcome.NOT_MEASURED, "not here"), assumed=False).text() == "not measured here"
