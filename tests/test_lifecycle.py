"""The lifecycle suite: the event step's loader rules, what the lab can cause where, the records
and checks (fast, no proxy); then the suite played through real proxies (local backend)."""

from __future__ import annotations

import json
import os
import re
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
    events = {
        "proxy-reload": ["proxy-reload"],
        "server-restart": ["server-restart"],
        "redeploy": ["redeploy"],
        "redeploy-no-sigterm": ["redeploy"],
        "instance-replacement": ["instance-replacement"],
        "scale-to-zero": ["scale-to-zero"],
    }
    # Each event again with a Chromium page's WebSocket, with the same expectations.
    assert {s.id: s.events for s in scenarios} == events | {f"chromium-{k}": v for k, v in events.items()}
    by_id = {s.id: s for s in scenarios}
    for scenario in events:
        assert by_id[f"chromium-{scenario}"].expect == by_id[scenario].expect, scenario
        assert by_id[f"chromium-{scenario}"].uses_browser and not by_id[scenario].uses_browser
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
        assert reload.supported != bool(reload.unsupported), kind.name
        assert (reload.change is None) == (reload.change_file == ""), kind.name
    assert REGISTRY["haproxy"].argv.split()[1:3] == ["-W", "-db"], "SIGUSR2 reloads only in master-worker"


@pytest.mark.fast
def test_what_the_lab_can_cause_where() -> None:
    assert unsupported("proxy-reload", topology(), "local") is None
    assert "no proxy" in (unsupported("proxy-reload", _direct(), "local") or "")
    assert unsupported("proxy-reload", topology(proxy="envoy"), "local") is None, "hot restart"
    assert unsupported("proxy-reload", topology(proxy="traefik"), "local") is None, "a watched file"
    assert unsupported("proxy-reload", topology(proxy="caddy"), "local") is None, "caddy reload"
    assert unsupported("server-restart", _direct(), "local") is None
    for backend in ("compose", "containers"):
        assert unsupported("server-restart", topology(), backend) is None
        assert unsupported("proxy-reload", topology(), backend) is None
        assert unsupported("proxy-reload", topology(proxy="traefik"), backend) is None, "written by exec"
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


WEBSOCKETS_CLIENT = [
    "proxy-reload",
    "server-restart",
    "redeploy",
    "redeploy-no-sigterm",
    "instance-replacement",
    "scale-to-zero",
]
"""The scenarios whose watched connection is websockets' client's (the others are Chromium's)."""


def _run(tmp_path: Path, *topologies: str, scenarios: list[str] = WEBSOCKETS_CLIENT) -> dict:
    out = tmp_path / "life.json"
    argv = [sys.executable, "-m", "wslab", "run", "--suite", "lifecycle", "--json", str(out)]
    for name in topologies:
        argv += ["-t", name]
    for scenario in scenarios:
        argv += ["--scenario", scenario]
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


def test_reload_commands_caddy_closes_and_varnish_keeps(tmp_path: Path) -> None:
    """caddy reload unloads the old config and, with it, the streams it proxied (1001 from Caddy
    at once); caddy-websocket's stream_close_delay 5m keeps the open WebSocket. Varnish's
    vcl.load + vcl.use leaves a piped WebSocket on the VCL it started with."""
    for kind in ("caddy", "varnish"):
        if REGISTRY[kind].locate() is None:
            pytest.skip(f"{kind} is not installed")
    cells = _cells(_run(tmp_path, "caddy-default", "caddy-websocket", "varnish-websocket"))
    closed = cells[("caddy-default", "proxy-reload")]
    life = closed["client"]["lifecycle"]
    assert closed["outcome"] == "fail" and life["code"] == 1001 and life["close_frame_received"]
    assert life["closed_after"] < 1 and life["new_connection"]["opened"]
    assert closed["diagnosis"]["rule"] == "reload-closed-websocket"
    assert "stream_close_delay" in closed["diagnosis"]["fix"]
    for name in ("caddy-websocket", "varnish-websocket"):
        kept = cells[(name, "proxy-reload")]
        assert kept["outcome"] == "pass", kept["checks"]
        assert kept["client"]["lifecycle"]["survived"], name
        assert kept["client"]["lifecycle"]["new_connection"]["opened"], name


def test_envoy_hot_restart_keeps_the_websocket_on_the_draining_process(tmp_path: Path) -> None:
    """A successor envoy (same base id, epoch 1) takes the listeners; the old one keeps the open
    WebSocket while it drains; new clients get in. Through the Cloud Run emulation too, and no
    envoy of either epoch outlives the run."""
    if REGISTRY["envoy"].locate() is None:
        pytest.skip("envoy is not installed")
    cells = _cells(_run(tmp_path, "envoy-websocket", "cloudrun"))
    for name in ("envoy-websocket", "cloudrun"):
        cell = cells[(name, "proxy-reload")]
        life = cell["client"]["lifecycle"]
        assert cell["outcome"] == "pass", cell["checks"]
        assert life["survived"] and life["new_connection"]["opened"], name
        assert life["event"]["how"].startswith("hot restart"), life["event"]
    left = subprocess.run(["pgrep", "-f", "--", "--restart-epoch"], capture_output=True, text=True)
    assert left.stdout == "", "an envoy outlived the run"


def test_traefik_applies_a_changed_watched_file_and_keeps_the_open_websocket(tmp_path: Path) -> None:
    """The lab writes a new router beside the config Traefik's file provider watches; the event ends
    once Traefik answers the check only that router answers, and the watch starts then. Traefik's
    documentation promises no connection loss on a dynamic reload, and says nothing of WebSockets:
    measured, the open WebSocket is kept, through both topologies, and new clients get in."""
    if REGISTRY["traefik"].locate() is None:
        pytest.skip("traefik is not installed")
    names = ("traefik-default", "traefik-websocket")
    out, run_dir = tmp_path / "life.json", tmp_path / "run"
    argv = [sys.executable, "-m", "wslab", "run", "--suite", "lifecycle", "--scenario", "proxy-reload"]
    argv += ["--json", str(out), "--run-dir", str(run_dir), "--fresh"]
    for name in names:
        argv += ["-t", name]
    subprocess.run(argv, cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=120)
    cells = _cells(json.loads(out.read_text()))
    for name in names:
        cell = cells[(name, "proxy-reload")]
        life = cell["client"]["lifecycle"]
        assert cell["outcome"] == "pass", cell["checks"]
        applied = re.search(
            r"token (\w+)\) written; the proxy answered with the changed config ([\d.]+) s",
            life["event"]["detail"],
        )
        assert applied is not None, life["event"]
        token, after = applied.group(1), float(applied.group(2))
        assert token in (run_dir / name / "dynamic" / "wslab-reload.yml").read_text()
        assert life["survived"] and life["lost"] == [] and life["new_connection"]["opened"], name
        # Watched its whole 2 s once the change was live (the detail's figure is rounded), messages
        # crossing all along.
        echoed_late = [m for m in life["messages"] if m["echoed"] is not None and m["sent"] > after + 1.5]
        assert life["watched"] >= after + 1.95 and echoed_late, (life["watched"], life["messages"][-3:])
        assert life["event"]["source"] == "https://doc.traefik.io/traefik/providers/file/#watch"


def test_graceful_restarts_that_stop_accepting_are_diagnosed(tmp_path: Path) -> None:
    if REGISTRY["lighttpd"].locate() is None:
        pytest.skip("lighttpd is not installed")
    cell = _cells(_run(tmp_path, "lighttpd-websocket"))[("lighttpd-websocket", "proxy-reload")]
    # lighttpd's graceful restart keeps the open WebSocket but accepts nothing until it ends.
    assert cell["client"]["lifecycle"]["survived"]
    assert cell["diagnosis"]["rule"] == "reload-refused-new-connections"
    assert "server.graceful-restart-bg" in cell["diagnosis"]["fix"]


@pytest.mark.fast
def test_a_traefik_reload_is_a_new_router_only_the_labs_check_matches() -> None:
    import yaml

    from wslab.probe.wire import READINESS_PATH
    from wslab.proxies import CHANGE_HEADER, traefik_change

    reload = REGISTRY["traefik"].reload
    assert reload is not None and reload.change is traefik_change and reload.change_file.endswith(".yml")
    http = yaml.safe_load(traefik_change("0123abcd"))["http"]
    router = http["routers"]["wslab-reload"]
    assert router["rule"] == f"Path(`{READINESS_PATH}`) && Header(`{CHANGE_HEADER}`, `0123abcd`)"
    # Traefik answers it itself: nothing reaches the server behind, whatever its routes.
    assert router["service"] == "noop@internal" and "entryPoints" not in router
    answer = http["middlewares"][router["middlewares"][0]]["headers"]["customResponseHeaders"]
    assert answer == {CHANGE_HEADER: "0123abcd"}
    assert traefik_change("a") != traefik_change("b"), "Traefik skips an unchanged configuration"
    for bad in ("a`b", "a b", "", "x\ny"):
        with pytest.raises(ValueError):
            traefik_change(bad)


@pytest.mark.fast
def test_the_change_check_is_the_readiness_request_and_reads_its_token_back() -> None:
    from wslab.lifecycle import answers_change, change_request
    from wslab.probe.wire import is_readiness_check, parse_request_head

    request = change_request("0123abcd")
    # The probe server and the tap answer it themselves and record nothing, until the change is live.
    assert is_readiness_check(request)
    head = parse_request_head(request)
    assert head is not None and ("X-Wslab-Reload", "0123abcd") in head.headers
    live = b"HTTP/1.1 418 I'm a teapot\r\nX-Wslab-Reload: 0123abcd\r\nContent-Length: 0"
    assert answers_change(live, "0123abcd")
    assert answers_change(live.replace(b"X-Wslab-Reload", b"x-wslab-reload"), "0123abcd")
    assert not answers_change(live, "another"), "an earlier reload's config"
    assert not answers_change(b"HTTP/1.1 200 OK\r\nContent-Length: 3", "0123abcd"), "the probe server"
    assert not answers_change(b"garbage", "0123abcd")


@pytest.mark.fast
def test_change_applied_asks_the_proxy_until_it_answers_with_the_token() -> None:
    import asyncio

    from wslab.endpoint import Endpoint
    from wslab.lifecycle import change_applied

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        live = b"X-Wslab-Reload: live\r\n" in head
        writer.write(
            b"HTTP/1.1 418 x\r\nX-Wslab-Reload: live\r\n\r\n" if live else b"HTTP/1.1 200 OK\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def ask() -> list[bool]:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        endpoint = Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])
        async with server:
            answers = [await change_applied(endpoint, "live"), await change_applied(endpoint, "stale")]
        return [*answers, await change_applied(endpoint, "live")]

    assert asyncio.run(ask()) == [True, False, False], "live; an earlier config; nothing listens"


@pytest.mark.fast
def test_traefik_renders_its_config_into_the_directory_its_file_provider_watches() -> None:
    import yaml

    from wslab.compose_file import proxy_service
    from wslab.topology import load_topologies

    kind = REGISTRY["traefik"]
    traefiks = [t for t in load_topologies().values() if t.proxy == "traefik"]
    assert {t.name for t in traefiks} >= {"traefik-default", "traefik-websocket"}
    for item in traefiks:
        assert item.config is not None
        values = {name: "1" for name in ("WSLAB_LISTEN_PORT", "WSLAB_UPSTREAM_PORT")}
        values |= {"WSLAB_LISTEN_HOST": "h", "WSLAB_UPSTREAM_HOST": "h", "WSLAB_RUN_DIR": "/run"}
        rendered = yaml.safe_load(item.render_config(values | item.placeholders(1.0)))
        watched = kind.config_path(Path("/run"), item.config.name).parent
        # watch is on unless a config turns it off (Traefik's default): none does.
        assert rendered["providers"]["file"] == {"directory": str(watched)}, item.name
        command = proxy_service(item)["command"]
        assert (
            command[1] == f"/tmp/wslab/dynamic/{item.config.name}" and f"--configFile={command[1]}" in command
        )


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


def _platform(name: str) -> Topology:
    from wslab.topology import load_topologies

    return load_topologies()[name]


@pytest.mark.fast
def test_each_platform_states_how_it_ends_an_instance_with_its_source() -> None:
    from wslab.lifecycle import grace_of, lifecycle_limit, waits

    graces = {name: grace_of(_platform(name)) for name in ("cloudrun", "heroku", "fly", "render", "direct")}
    assert {name: g.seconds for name, g in graces.items() if g} == {
        "cloudrun": 10,
        "heroku": 30,
        "fly": 5,
        "render": 30,
        "direct": 90,
    }
    assert graces["cloudrun"] is not None and graces["cloudrun"].source.startswith("[DOC]")
    assert graces["direct"] is not None and graces["direct"].source.startswith("assumption")
    render = _platform("render")
    assert waits("redeploy", render) == 90, "Render: SIGTERM 60 s after the cutover, SIGKILL 30 s later"
    idle = lifecycle_limit(_platform("replit-autoscale"), "idle-to-zero")
    assert idle is not None and idle.seconds == 900 and waits("scale-to-zero", _platform("cloudrun")) == 1800
    # The probe server plays these times; the proxies' configs never see them.
    assert not any("SHUTDOWN" in key or "ZERO" in key for key in render.placeholders(1.0))


@pytest.mark.fast
def test_where_redeploys_replacements_and_scale_to_zero_apply() -> None:
    for name in ("direct", "nginx-websocket", "cloudrun", "heroku"):
        assert unsupported("redeploy", _platform(name), "local") is None, name
    assert "no app instance" in (unsupported("redeploy", _platform("replit-static"), "local") or "")
    assert unsupported("instance-replacement", _platform("heroku"), "local") is None
    assert "self-hosted" in (unsupported("instance-replacement", _direct(), "local") or "")
    assert "yours" in (unsupported("instance-replacement", _platform("aws-alb"), "local") or "")
    assert unsupported("scale-to-zero", _platform("cloudrun"), "local") is None
    assert unsupported("scale-to-zero", _platform("replit-autoscale"), "local") is None
    for name in ("direct", "replit-reserved-vm", "render"):
        assert (unsupported("scale-to-zero", _platform(name), "local") or "").startswith("not applicable"), (
            name
        )
    assert unsupported("redeploy", _platform("cloudrun"), "compose") is None, "the control channel"
    assert "remote backend" in (unsupported("redeploy", _platform("cloudrun"), "remote") or "")


@pytest.mark.fast
def test_an_instance_limit_without_evidence_is_refused(tmp_path: Path) -> None:
    from wslab.errors import TopologyError
    from wslab.topology import load_topology

    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "topology.yaml").write_text(
        "name: bare\ntitle: t\nproxy: none\nrole: platform\nport: 19999\nsummary: s\n"
        "parameters:\n  shutdown_grace: {seconds: 10, limit: shutdown-grace, source: the vendor says so}\n"
    )
    with pytest.raises(TopologyError, match="names no evidence"):
        load_topology(folder)
    (folder / "topology.yaml").write_text(
        (folder / "topology.yaml").read_text().replace("the vendor says so", "'assumption: none found'")
    )
    assert load_topology(folder).parameters[0].limit == "shutdown-grace"


@pytest.mark.fast
def test_the_new_instance_check_reads_the_instances() -> None:
    moved = lived_through("redeploy", closed_after=0.01, code=1001, instances=(2, 3))
    assert [c.ok for c in evaluate({"new_instance": True, "event_close_code": 1001}, moved)] == [True, True]
    same = evaluate(
        {"new_instance": True}, lived_through("redeploy", closed_after=0.01, code=1001, instances=(2, 2))
    )
    assert not same[0].ok and same[0].actual == "instance 2 before, 2 after"
    unnamed = evaluate({"new_instance": True}, lived_through("redeploy", closed_after=0.01, code=1001))
    assert not unnamed[0].ok and "no instance named" in unnamed[0].actual


@pytest.mark.fast
def test_a_redeploy_cut_without_a_close_frame_names_the_grace_period_and_the_sigterm_fix() -> None:
    from wslab.diagnosis import diagnose

    cut = lived_through("redeploy", closed_after=0.2, code=1006, frame=False)
    found = diagnose(cut, _platform("cloudrun"), [])
    assert found.rule == "redeploy-cut-without-close"
    assert "loop.add_signal_handler(signal.SIGTERM, server.close)" in found.fix
    # One fix whatever the platform, so the summary prints the program once for every such cell.
    assert diagnose(cut, _platform("heroku"), []).fix == found.fix
    quiet = diagnose(
        lived_through("scale-to-zero", closed_after=6.0, code=1006, frame=False), _platform("cloudrun"), []
    )
    assert quiet.rule == "scale-to-zero-closed-quiet-connection" and "request_timeout (300 s" in quiet.fix


@pytest.mark.fast
def test_the_sigterm_program_is_a_complete_program() -> None:
    import ast

    from wslab.fixes import SIGTERM_PROGRAM

    tree = ast.parse(SIGTERM_PROGRAM)
    assert any(isinstance(node, ast.AsyncFunctionDef) and node.name == "main" for node in tree.body)


def test_redeploys_move_clients_to_a_new_instance_and_sigterm_decides_1001_or_1006(tmp_path: Path) -> None:
    for kind in ("nginx", "envoy"):
        if REGISTRY[kind].locate() is None:
            pytest.skip(f"{kind} is not installed")
    names = ("direct", "nginx-websocket", "cloudrun", "replit-autoscale")
    cells = _cells(_run(tmp_path, *names))
    for name in names:
        handled, killed = cells[(name, "redeploy")], cells[(name, "redeploy-no-sigterm")]
        life = handled["client"]["lifecycle"]
        assert handled["outcome"] == "pass", (name, handled["checks"])
        assert life["code"] == 1001 and life["closed_after"] < 0.5, "1001 at the SIGTERM"
        assert life["instance_after"] == life["instance_before"] + 1
        assert life["new_connection"]["instance"] == life["instance_after"], "new clients land on the new one"
        cut = killed["client"]["lifecycle"]
        assert killed["outcome"] == "fail" and killed["diagnosis"]["rule"] == "redeploy-cut-without-close"
        assert cut["code"] == 1006 and not cut["close_frame_received"]
        assert cut["new_connection"]["instance"] == cut["instance_before"] + 1
    # The SIGKILL comes at the end of each one's grace period (x0.02): Cloud Run 10 s, systemd 90 s.
    assert 0.15 < cells[("cloudrun", "redeploy-no-sigterm")]["client"]["lifecycle"]["closed_after"] < 0.6
    assert 1.7 < cells[("direct", "redeploy-no-sigterm")]["client"]["lifecycle"]["closed_after"] < 2.3
    assert cells[("cloudrun", "instance-replacement")]["outcome"] == "pass"
    assert cells[("nginx-websocket", "instance-replacement")]["outcome"] == "not-applicable"
    assert cells[("direct", "scale-to-zero")]["outcome"] == "not-applicable"
    # Scale to zero: the request timeout (300 s, x0.02) closes the quiet WebSocket long before the
    # instance's 15 min idle time; once it is gone, a new client starts a new instance.
    for name in ("cloudrun", "replit-autoscale"):
        cell = cells[(name, "scale-to-zero")]
        life = cell["client"]["lifecycle"]
        assert life["instance_after"] == life["instance_before"] + 1, name
        assert cell["diagnosis"]["rule"] == "scale-to-zero-closed-quiet-connection", name


@pytest.mark.fast
def test_the_timeline_marks_when_a_redeployed_instance_is_gone() -> None:
    from wslab.reports.timeline import timeline

    record = lived_through("redeploy", closed_after=1.8, code=1006, frame=False).transcript.lifecycle
    assert record is not None
    record.event.ends_after = 1.8
    assert record.new_connection is not None
    record.new_connection.instance = 3
    marks = {mark["kind"]: mark["label"] for mark in timeline(record)["marks"]}
    assert marks["gone"].startswith("the old instance's SIGKILL") and marks["new"].endswith("on instance 3")


@pytest.mark.fast
def test_every_topology_with_a_proxy_says_what_a_reload_does_to_open_websockets() -> None:
    from wslab.topology import load_topologies

    for option in load_topologies().values():
        if option.direct:
            assert option.reload is None
            continue
        documented = option.reload
        assert documented is not None, f"{option.name}: no reload: block in its topology.yaml"
        if option.role == "platform":
            # Platforms document nothing of their front ends' config pushes: an assumption, named.
            assert documented.status == "assumed" and option.platform.split()[0] in documented.source
        elif option.proxy == "traefik":
            # Traefik documents no connection loss on a hot reload, nothing of WebSockets: inferred.
            assert documented.status == "inferred" and "WebSockets" in documented.source, option.name
        else:
            assert documented.status == "documented" and "https://" in documented.source, option.name
    # Caddy closes upgraded connections when the config that proxied them is unloaded, unless
    # stream_close_delay defers it: the two Caddy topologies say so apart.
    assert _platform("caddy-default").reload.open_websockets == "closed"  # type: ignore[union-attr]
    assert _platform("caddy-websocket").reload.open_websockets == "kept"  # type: ignore[union-attr]


@pytest.mark.fast
def test_a_reload_statement_without_evidence_is_refused_with_its_line(tmp_path: Path) -> None:
    from wslab.errors import TopologyError
    from wslab.topology import load_topology

    folder = tmp_path / "nginx-websocket"
    folder.mkdir()
    original = (ROOT / "compose" / "nginx-websocket" / "topology.yaml").read_text()
    (folder / "nginx.conf").write_text((ROOT / "compose" / "nginx-websocket" / "nginx.conf").read_text())
    (folder / "topology.yaml").write_text(
        original.replace(
            "    [DOC] https://nginx.org/en/docs/control", "    see https://nginx.org/en/docs/control"
        )
    )
    with pytest.raises(TopologyError, match="reload names no evidence") as raised:
        load_topology(folder)
    line = next(
        n
        for n, text in enumerate(original.splitlines(), 1)
        if text.startswith("  source:") and n > original.splitlines().index("reload:")
    )
    assert f":{line}" in str(raised.value)


def test_every_reload_the_lab_can_cause_agrees_with_what_the_topology_file_says(tmp_path: Path) -> None:
    """The whole proxy-reload row through real proxies: where a WebSocket was open at the reload,
    kept or closed is what the topology's reload: block says (its documentation, or for a platform
    the assumption it names)."""
    out = tmp_path / "reload.json"
    argv = [sys.executable, "-m", "wslab", "run", "--suite", "lifecycle", "--scenario", "proxy-reload"]
    subprocess.run([*argv, "--json", str(out)], cwd=ROOT, capture_output=True, timeout=240)
    cells = {c["topology"]: c for c in json.loads(out.read_text())["cells"]}
    compared = {}
    for name, cell in cells.items():
        life = (cell["client"] or {}).get("lifecycle")
        if life is not None:
            assert life["event"]["documented"], name
            compared[name] = life["as_documented"]
    assert compared and all(compared.values()), {n: ok for n, ok in compared.items() if not ok}
    # Every self-hosted kind the lab reloads and every platform whose emulation upgrades is compared.
    self_hosted = ["nginx-websocket", "haproxy-default", "apache-websocket", "lighttpd-websocket"]
    self_hosted += ["caddy-default", "caddy-websocket", "envoy-websocket", "varnish-websocket"]
    self_hosted += ["traefik-default", "traefik-websocket"]
    for name in [*self_hosted, "cloudrun", "replit-autoscale", "replit-dev", "replit-reserved-vm", "fly"]:
        assert name in compared, (name, cells[name]["summary"], cells[name]["error"])
    assert cells["caddy-default"]["client"]["lifecycle"]["code"] == 1001
    said = cells["caddy-default"]["diagnosis"]["cause"]
    assert "That is what its topology file says: closed (documented: [DOC]" in said, said


@pytest.mark.slow
def test_faithful_redeploys_agree_with_accelerated_ones(tmp_path: Path) -> None:
    """The two platforms with the shortest grace periods (Fly 5 s, Railway 3 s) in real seconds
    and at x0.02: the same outcomes and close codes, and the SIGKILL's cut at the grace period
    of each mode's clock."""
    scenarios = ["redeploy", "redeploy-no-sigterm", "instance-replacement"]
    seen = {}
    for mode in ("--accelerated", "--faithful"):
        out = tmp_path / f"{mode}.json"
        argv = [
            sys.executable,
            "-m",
            "wslab",
            "run",
            "--suite",
            "lifecycle",
            "-t",
            "fly",
            "-t",
            "railway",
            mode,
        ]
        for scenario in scenarios:
            argv += ["--scenario", scenario]
        subprocess.run([*argv, "--json", str(out)], cwd=ROOT, capture_output=True, timeout=240)
        seen[mode] = {(c["topology"], c["scenario"]): c for c in json.loads(out.read_text())["cells"]}
    assert set(seen["--faithful"]) == set(seen["--accelerated"]) and len(seen["--faithful"]) == 6
    for key, faithful in seen["--faithful"].items():
        accelerated = seen["--accelerated"][key]
        slow, quick = faithful["client"]["lifecycle"], accelerated["client"]["lifecycle"]
        assert faithful["outcome"] == accelerated["outcome"], key
        assert (slow["code"], slow["closed_by"]) == (quick["code"], quick["closed_by"]), key
        assert slow["event"]["ends_after"] == pytest.approx(quick["event"]["ends_after"] / 0.02), key
        if key[1] == "redeploy-no-sigterm":  # cut at the SIGKILL, at the end of the grace period
            for life, slack in ((slow, 0.5), (quick, 0.2)):
                assert (
                    life["event"]["ends_after"] <= life["closed_after"] <= life["event"]["ends_after"] + slack
                )
        else:  # SIGTERM at once: 1001 at once
            assert slow["closed_after"] < 0.5 and quick["closed_after"] < 0.5, key
