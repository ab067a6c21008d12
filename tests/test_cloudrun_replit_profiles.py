"""Platform profiles, the timeouts suite and `wslab compare`, on real proxies."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from wslab.backends import ACCELERATED, Deployment, StackOptions
from wslab.backends.local import LocalBackend
from wslab.deployment_choice import COMPARED, LONG_LIVED, REQUEST_RESPONSE, compare
from wslab.errors import TopologyError
from wslab.paths import COMPOSE_DIR
from wslab.records import DeploymentStatus, Outcome, Run, header_value
from wslab.reports.deployment_choice import render_markdown
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import FACTS, load_topologies, load_topology, source_status

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TAG = re.compile(
    r"\[(DOC|DOC-2nd|3P|ISSUE|CODE|INFERRED|UNVERIFIED|VERIFIED)(, older revision)?\]|assumption|https?://"
)
OLDER_AS_DOC = re.compile(r"\[DOC\][^\[]*\bolder revision")
"""A claim only an older revision makes, tagged as if the current page made it."""
WEBSOCKET_CLIENTS = ["websockets-echo", "chrome-handshake", "firefox-keepalive-upgrade"]


@pytest.fixture(scope="session")
def timeouts(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The timeouts suite through every topology, accelerated."""
    backend = LocalBackend(tmp_path_factory.mktemp("timeouts"), StackOptions(time_scale=ACCELERATED))
    scenarios = load_scenarios(suites=["timeouts"])
    return asyncio.run(run(backend, list(load_topologies().values()), scenarios))


def hold(result: Run, topology: str, scenario: str) -> dict:
    return result.cell(topology, scenario).client.hold


@pytest.mark.fast
def test_every_profile_parameter_behaviour_and_fact_names_its_source() -> None:
    profiles = [t for t in load_topologies().values() if t.platform]
    assert {
        "cloudrun",
        "cloudrun-h2c",
        "replit-dev",
        "replit-autoscale",
        "replit-reserved-vm",
        "replit-static",
    } <= {t.name for t in profiles}
    for topology in profiles:
        assert topology.behaviours, topology.name
        texts = [p.source for p in topology.parameters] + [f.source for f in topology.facts]
        for text in texts + list(topology.behaviours):
            assert SOURCE_TAG.search(text), f"{topology.name}: no source or 'assumption' in {text!r}"
            # platform-facts §9: what only older revisions of a page say is tagged so.
            assert not OLDER_AS_DOC.search(text), f"{topology.name}: [DOC, older revision] in {text!r}"
        for fact in topology.facts:
            assert fact.status == source_status(fact.source), (topology.name, fact)


@pytest.mark.fast
def test_claims_are_tagged_as_their_sources_make_them() -> None:
    """platform-facts §9, the fact check: each claim as strong as its source, no stronger."""
    topologies = load_topologies()

    def said(name: str, words: str) -> str:
        lines = [b for b in topologies[name].behaviours if words in b]
        assert len(lines) == 1, (name, words, lines)
        return lines[0]

    autoscale = {fact.name: fact for fact in topologies["replit-autoscale"].facts}
    # Only older revisions of Replit's autoscale page say these: inferred, the revision named.
    for name in ("scale_to_zero", "several_instances"):
        assert autoscale[name].status == "inferred"
        assert autoscale[name].source.startswith("[DOC, older revision] https://docs.replit.com/")
    assert said("replit-autoscale", "WebSockets and gRPC").startswith("Accepts HTTP, HTTP/2")
    assert "[DOC, older revision]" in said("replit-autoscale", "WebSockets and gRPC")
    assert "[DOC, older revision]" in said("replit-autoscale", "15 min")
    # Cloud Run underneath stays an inference; so does Autoscale's lifetime cap.
    assert said("replit-autoscale", "Runs on Cloud Run").startswith("Runs on Cloud Run [INFERRED]")
    assert source_status(topologies["replit-autoscale"].parameters[0].source) == "inferred"
    # The dev URL's host form is third-party; the documented one is named beside it.
    host = said("replit-dev", "Host is")
    assert host.startswith("Host is <uuid>-00-<id>.<server>.replit.dev [3P]")
    assert "UUID.servername.replit.dev [DOC] https://" in host
    assert "[3P] https://github.com/MikeDev101/cloudlink/issues/131" in said("replit-dev", "maintainer")
    # Cloud Run's injected X-Forwarded-* and trace headers: a user's test, third-party.
    for name in ("cloudrun", "cloudrun-h2c"):
        assert "[3P] https://github.com/ahmetb/cloud-run-faq/issues/71" in said(name, "X-Forwarded-Proto")
        assert "not sampled" in said(name, "traceparent") and "[INFERRED]" in said(name, "traceparent")


@pytest.mark.fast
def test_replit_deployments_state_the_single_port_the_port_check_the_stages_and_their_environment() -> None:
    """platform-facts §9: what a client of a deployment meets before and after promotion."""
    topologies = load_topologies()
    for name in ("replit-autoscale", "replit-reserved-vm"):
        behaviours = topologies[name].behaviours

        def said(words: str, behaviours: tuple[str, ...] = behaviours, name: str = name) -> str:
            lines = [b for b in behaviours if words in b]
            assert len(lines) == 1, (name, words, lines)
            return lines[0]

        assert "[DOC] https://docs.replit.com/replit-workspace/ports" in said("single external port")
        assert "[DOC] https://docs.replit.com/replit-app/configuration" in said("ignorePorts = true")
        stages = said("Provision, Security Scan, Build, Bundle, Promote")
        assert "[DOC] https://docs.replit.com/build/publish-your-app" in stages
        assert "[3P]" in said("[deployment] build"), "the missing build step: a third party's post-mortem"
        assert "[DOC]" in said("REPLIT_DEPLOYMENT=1")
        assert "[UNVERIFIED]" in said("method, path")
    vm = topologies["replit-reserved-vm"]
    assert "single external port" in vm.summary and "ignorePorts" in vm.summary
    assert "single external port" in vm.websocket_fix, "the health check reaches the WebSocket server"


@pytest.mark.fast
def test_each_compared_option_states_its_facts_with_how_they_are_known() -> None:
    topologies = load_topologies()
    for name in COMPARED:
        facts = {fact.name: fact for fact in topologies[name].facts}
        assert set(facts) == set(FACTS), name
        for fact in facts.values():
            assert SOURCE_TAG.search(fact.source), (name, fact)
            if fact.status == "documented":
                assert "[DOC" in fact.source and "https://" in fact.source, (name, fact)
            if fact.status == "assumed":
                assert "assumption" in fact.source, (name, fact)
        # Recorded in the run, so a results file carries them to `wslab compare` and the report.
        recorded = Deployment(topologies[name], DeploymentStatus.READY).record().facts
        assert {key: (f.value, f.status, f.holds) for key, f in recorded.items()} == {
            f.name: (f.value, f.status, f.holds) for f in facts.values()
        }
    # Never an inference presented as documented: the lifetime cap Autoscale inherits from Cloud
    # Run is inferred, Cloud Run's own is documented.
    autoscale, cloudrun = topologies["replit-autoscale"], topologies["cloudrun"]
    assert source_status(autoscale.parameters[0].source) == "inferred"
    assert source_status(cloudrun.parameters[0].source) == "documented"
    assert source_status(topologies["replit-reserved-vm"].parameters[0].source) == "assumed"
    own = {fact.name: fact for fact in topologies["nginx-websocket"].facts}
    assert own["scale_to_zero"].holds is False and own["cost"].holds is True


@pytest.mark.fast
@pytest.mark.parametrize(
    ("fact", "message"),
    [
        ("  cost: {value: cheap, status: documented, source: '[DOC] the pricing page'}", "does not match"),
        ("  cost: {value: cheap, status: guessed, source: 'assumption: none'}", "guessed"),
        ("  cost: {value: cheap, status: assumed, source: '[INFERRED] from the name'}", "does not match"),
        ("  price: {value: cheap, status: assumed, source: 'assumption: none'}", "price"),
        ("  cost: {value: cheap, source: 'assumption: none'}", "status"),
        # Only an older revision of the page says it: inferred, never documented.
        (
            "  cost: {value: cheap, status: documented, source: '[DOC, older revision] https://x.invalid/'}",
            "fact cost is documented, but its source's first tag makes it inferred",
        ),
        (
            "  cost: {value: cheap, status: inferred, source: '[DOC] https://x.invalid/ says so'}",
            "makes it documented",
        ),
    ],
)
def test_the_topology_schema_checks_each_fact(tmp_path: Path, fact: str, message: str) -> None:
    folder = tmp_path / "replit-static"
    shutil.copytree(COMPOSE_DIR / "replit-static", folder)
    text = (folder / "topology.yaml").read_text()
    (folder / "topology.yaml").write_text(text[: text.index("facts:")] + "facts:\n" + fact + "\n")
    with pytest.raises(TopologyError, match=message) as raised:
        load_topology(folder)
    assert ":" in str(raised.value).split(" ")[0], "file:line"


@pytest.mark.fast
def test_the_replit_recipe_in_deploy_md_builds_and_names_both_spellings() -> None:
    """docs/deploy.md's .replit (platform-facts §9): modules, a build step, the run command the
    probe server answers on, both deploymentTarget spellings and who decides the type."""
    from wslab.probe.standalone import DEFAULT_PORT

    page = (ROOT / "docs" / "deploy.md").read_text()
    section = page[page.index("## Replit\n") : page.index("## A container")]
    recipe = tomllib.loads(
        re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1).replace("\n   ", "\n")
    )
    assert recipe["modules"] == ["python-3.11"]
    deployment = recipe["deployment"]
    assert deployment["build"][:2] == ["pip", "install"]
    assert deployment["run"] == ["python", "-m", "wslab.probe.standalone", "--public"]
    assert deployment["deploymentTarget"] == "cloudrun"
    assert recipe["ports"] == [{"localPort": DEFAULT_PORT, "externalPort": 80}], "a single external port"
    for spelling in ('"cloudrun"', '"autoscale"', '"gce"', '"vm"', '"static"'):
        assert f"`{spelling}`" in section, spelling
    assert "**The Publishing UI decides the deployment type**" in section
    for words in ("REPLIT_DEPLOYMENT=1", "ignorePorts = true", "Provision, Security Scan,"):
        assert words in section, words
    # Every source tag the section uses is one of the reference's.
    tags = set(re.findall(r"`\[([A-Z0-9][A-Za-z0-9, -]*)\]`", section))
    assert {"DOC", "3P"} <= tags <= {"DOC", "DOC, older revision", "3P", "INFERRED"}, tags


def test_replit_dev_reproduces_the_seed(matrix: Run, healthcheck_matrix: Run) -> None:
    for scenario in ("browser-tab-get", "preview-pane-get"):
        cell = matrix.cell("replit-dev", scenario)
        request = cell.server[0].request
        assert header_value(request.headers, "Connection") is None
        assert header_value(request.headers, "X-Forwarded-Proto") == "https"
        assert header_value(request.headers, "X-Forwarded-For") == "127.0.0.1"
        assert header_value(request.headers, "Host").endswith(".picard.replit.dev")
        assert cell.server[0].error.text == "missing Connection header"
        assert cell.diagnosis.rule == "plain-http-through-keepalive-proxy"
        assert healthcheck_matrix.cell("replit-dev", scenario).outcome == Outcome.PASS
    for scenario in WEBSOCKET_CLIENTS:
        assert matrix.cell("replit-dev", scenario).client.received.status == 101


def test_a_replit_deployment_s_single_port_takes_its_health_check_to_the_websocket_server(
    matrix: Run, healthcheck_matrix: Run
) -> None:
    """One external port (platform-facts §9): the promotion health check meets the WebSocket
    server itself, which refuses it (426) until process_request answers it."""
    for name in ("replit-autoscale", "replit-reserved-vm"):
        check, echo = matrix.cell(name, "deploy-health-check"), matrix.cell(name, "websockets-echo")
        assert check.server[0].listener == echo.server[0].listener == name
        assert echo.client.received.status == 101
        assert check.client.received.status == 426
        assert check.server[0].error.text == "missing Connection header"
        assert healthcheck_matrix.cell(name, "deploy-health-check").client.received.status == 200


def test_cloudrun_headers_and_h2c(matrix: Run) -> None:
    request = matrix.cell("cloudrun", "websockets-echo").server[0].request
    assert re.fullmatch(r"[0-9a-f]{32}/\d+;o=0", header_value(request.headers, "X-Cloud-Trace-Context"))
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", header_value(request.headers, "traceparent"))
    assert header_value(request.headers, "X-Forwarded-Proto") == "https"
    for scenario in WEBSOCKET_CLIENTS:
        cell = matrix.cell("cloudrun-h2c", scenario)
        assert cell.outcome == Outcome.FAIL
        assert cell.diagnosis.rule == "upstream-speaks-http2"
        assert "no-use-http2" in cell.diagnosis.fix
        assert cell.server[0].request.method == "PRI"
        stream = cell.server[0].http2_request
        assert (stream.method, header_value(stream.headers, ":protocol")) == ("CONNECT", "websocket")
        assert stream.path == cell.client.sent.path, "each cell finds its own stream"
        assert f"stream {stream.stream}" in cell.diagnosis.cause
    browser = matrix.cell("cloudrun-h2c", "browser-tab-get").server[0].http2_request
    assert browser.method == "GET" and header_value(browser.headers, ":protocol") is None
    assert matrix.cell("cloudrun-h2c", "http10-upgrade").server == [], "Envoy answered HTTP/1.0 itself"


def test_lifetime_cap_cuts_even_with_pings(timeouts: Run) -> None:
    for topology in ("cloudrun", "replit-autoscale"):
        busy = hold(timeouts, topology, "lifetime-with-pings")
        assert busy.closed and 270 <= busy.lived_faithful <= 330, busy
        assert busy.since_last_byte < busy.lived / 5, "pings were flowing until the cut"
        cell = timeouts.cell(topology, "lifetime-with-pings")
        assert cell.diagnosis.rule == "lifetime-cap"
    assert not hold(timeouts, "replit-reserved-vm", "lifetime-with-pings").closed


@pytest.mark.parametrize(("topology", "configured"), [("nginx-websocket", 60), ("haproxy-default", 50)])
def test_idle_cutoffs_match_configuration(timeouts: Run, topology: str, configured: float) -> None:
    idle = hold(timeouts, topology, "idle-without-pings")
    assert idle.closed
    assert abs(idle.lived_faithful - configured) <= configured * 0.1, idle
    assert timeouts.cell(topology, "idle-without-pings").diagnosis.rule == "idle-timeout"
    # websockets' default 20 s pings keep the same proxy open.
    assert timeouts.cell(topology, "idle-with-default-pings").outcome == Outcome.PASS


def test_compare_recommends_reserved_vm_and_gives_the_fix(
    matrix: Run, healthcheck_matrix: Run, timeouts: Run
) -> None:
    merged = Run(**{**vars(matrix), "cells": matrix.cells + timeouts.cells})
    comparison = compare(merged, healthcheck_matrix)
    assert comparison.recommendation is not None
    chosen = {choice.app: choice.option for choice in comparison.recommendation.choices}
    assert chosen == {LONG_LIVED: "replit-reserved-vm", REQUEST_RESPONSE: "replit-autoscale"}
    assert comparison.disagreements() == [], "every measured limit agrees with its configuration"
    page = render_markdown(comparison)
    assert "| | **Replit dev URL** |" in page and "`missing Connection header`" in page
    assert "process_request" in page and re.search(r"300s \[inferred\] \(measured \d+s\)", page)
    assert page.count("def process_request") == 1, "the fix once"
    head = next(line for line in page.splitlines() if line.startswith("| HEAD /"))
    assert "ℹ" in head and "✗" not in head, "informational, as in wslab run"
    static = next(o for o in comparison.options if o.name == "replit-static")
    assert not static.carries_websockets


@pytest.fixture(scope="module")
def compare_command(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """`wslab compare --markdown PATH` once, on a 100-column terminal: the page and the output."""
    page = tmp_path_factory.mktemp("compare") / "compare.md"
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "compare", "--markdown", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return page.read_text(), result.stdout


def test_compare_writes_the_table_with_each_figure_s_status(compare_command: tuple[str, str]) -> None:
    page, terminal = compare_command
    assert page.startswith(
        "# Which deployment carries the WebSocket server?\n\n**On Replit: for a long-lived"
    )
    lines = page.splitlines()
    header = next(line for line in lines if line.startswith("| | "))
    assert header.count("|") == 8, "the row labels, then six options"
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and line != header}
    measured = [label for label in rows if label.endswith("[measured]")]
    assert measured[0] == "real WebSocket clients [measured]" and len(measured) == 6
    assert "HEAD / [measured]" in measured
    for label in ("idle cut", "lifetime cap"):
        assert re.search(r"\[(documented|inferred|assumed)\]", rows[label]), rows[label]
    assert (
        "300s [inferred] (measured" in rows["lifetime cap"]
        and "300s [documented] (measured" in rows["lifetime cap"]
    )
    for label in ("scales to zero", "cold starts", "several instances", "cost, in kind"):
        cells = rows[label].split(" | ")[1:]
        assert len(cells) == 6 and all(re.search(r"\[(documented|inferred|assumed)\]", c) for c in cells)
    assert "## Recommendation" in page and "(row “lifetime cap”)" in page
    # The terminal gets the same page through rich, within 100 columns.
    assert "Replit Reserved VM" in terminal and max(len(line) for line in terminal.splitlines()) <= 100


STATIC_SCENARIOS = """\
suite: static-paths
scenarios:
  - id: handshake-root
    title: websockets client to /
    steps:
      - connect: {path: /}
    expect: {status: 101}
  - id: handshake-unknown
    title: websockets client to an unknown path
    steps:
      - connect: {path: /chat}
    expect: {status: 101}
"""


async def _ask(endpoint: tuple[str, int], head: str) -> tuple[int, str, str]:
    """Send one request head; the status, the Content-Type and the body that come back (a
    handshake keeps the connection open: the body is read by its Content-Length)."""
    reader, writer = await asyncio.open_connection(*endpoint)
    try:
        writer.write(head.encode())
        await writer.drain()
        top = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in top.split("\r\n")[1:] if line)
        )
        body = await asyncio.wait_for(reader.readexactly(int(fields.get("content-length", "0"))), 10)
    finally:
        writer.close()
    return int(top.split()[1]), fields.get("content-type", ""), body.decode()


def test_replit_static_answers_by_path_and_never_upgrades(tmp_path: Path) -> None:
    """platform-facts §9: a static site serves index.html at / (200) and a 404 elsewhere,
    WebSocket handshakes included; the real nginx of the emulation answers."""
    static = load_topologies()["replit-static"]
    handshake = (
        "GET {path} HTTP/1.1\r\nHost: wslab-demo.replit.app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    page = "GET {path} HTTP/1.1\r\nHost: wslab-demo.replit.app\r\nConnection: close\r\n\r\n"

    async def ask_all() -> dict[str, tuple[int, str, str]]:
        backend = LocalBackend(tmp_path / "static", StackOptions(time_scale=ACCELERATED))
        try:
            deployment = (await backend.start([static]))["replit-static"]
            assert deployment.status == DeploymentStatus.READY and deployment.endpoint, deployment.detail
            endpoint = (deployment.endpoint.host, deployment.endpoint.port)
            asks = {
                "/": page.format(path="/"),
                "/index.html": page.format(path="/index.html"),
                "/no-such-page": page.format(path="/no-such-page"),
                "ws /": handshake.format(path="/"),
                "ws /chat": handshake.format(path="/chat"),
            }
            return {name: await _ask(endpoint, head) for name, head in asks.items()}
        finally:
            await backend.stop()

    answers = asyncio.run(ask_all())
    for name in ("/", "/index.html", "ws /"):
        status, kind, body = answers[name]
        assert (status, kind) == (200, "text/html") and body.startswith("<!doctype html>"), (
            name,
            answers[name],
        )
    for name in ("/no-such-page", "ws /chat"):
        status, kind, body = answers[name]
        assert (status, kind) == (404, "text/html") and "<!doctype html>" in body, (name, answers[name])

    # Through the lab: a WebSocket client gets the page at / and a 404 elsewhere; nothing reaches
    # a server, and the diagnosis says the front end answered the upgrade itself.
    scenarios = tmp_path / "static.yaml"
    scenarios.write_text(STATIC_SCENARIOS)
    backend = LocalBackend(tmp_path / "run", StackOptions(time_scale=ACCELERATED))
    result = asyncio.run(run(backend, [static], load_scenarios([scenarios])))
    for scenario, status in (("handshake-root", 200), ("handshake-unknown", 404)):
        cell = result.cell("replit-static", scenario)
        assert cell.outcome == Outcome.FAIL and cell.client.received.status == status, cell.summary
        assert cell.server == [] and cell.diagnosis.rule == "proxy-rejected-upgrade"
        assert f"answered {status}" in cell.diagnosis.cause
    assert "a page instead of 101" in result.cell("replit-static", "handshake-root").diagnosis.cause
