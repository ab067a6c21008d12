"""Lifecycle events with a browser's WebSocket: a Chromium page's new WebSocket(url) and its
reconnect loop (lab/page_socket.py). First the pure parts (the page's report on the lab's clock,
the records, the timeline, the diagnosis), then real Chromium through real proxies."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import lived_through

from wslab import browser
from wslab.backends import StackOptions
from wslab.backends.local import LocalBackend
from wslab.errors import ScenarioError
from wslab.page_socket import Handshake, Retry, handshakes, page_lifecycle, page_reconnect, parse_report
from wslab.proxies import REGISTRY
from wslab.records import LifecycleEvent, Outcome, PageAttempt, ResponseHead, header_value
from wslab.runner import run
from wslab.scenario import load_scenarios, load_suite
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent
URL = "ws://127.0.0.1:9000/lifecycle?wslab-ping=off"

PAGE = {
    "sockets": [
        {"started": 1000.0, "opened": 1010.0, "closed": 2000.0, "code": 1001, "reason": "", "clean": True},
        {"started": 2250.0, "opened": None, "closed": 2252.0, "code": 1006, "reason": "", "clean": False},
        {"started": 2752.0, "opened": 2760.0, "closed": None, "code": None, "reason": "", "clean": None},
    ],
    "sent": {"1": 1100.0, "2": 1900.0, "3": 1990.0},
    "echoed": {"1": 1102.0, "2": 1903.0},
}
"""What a page's wslab.report() gives (its clock, milliseconds): the watched socket closed with
1001, one attempt refused, the next one opened; message 3 was never echoed."""
REFUSED = "Error in connection establishment: net::ERR_CONNECTION_REFUSED"


def _on(instance: int) -> Handshake:
    return Handshake(received=ResponseHead(status=101, headers=[("X-Wslab-Instance", str(instance))]))


def _event() -> LifecycleEvent:
    return LifecycleEvent(cause="server-restart", at=0.0, how="stop", source="https://example.invalid/")


@pytest.mark.fast
def test_the_pages_report_becomes_the_same_lifecycle_record_as_websockets_clients() -> None:
    # Page time 1500 ms is 101.5 s on the lab's clock: the event.
    report = parse_report(PAGE, 100.0, [_on(2), Handshake(error=REFUSED), _on(3)])
    record = page_lifecycle(_event(), report, 101.5, 1.5)
    assert (record.closed_after, record.code, record.closed_by) == (0.5, 1001, "peer")
    assert record.close_frame_received and record.close_frame_sent and not record.survived
    assert (record.sent, record.echoed, record.lost) == (3, 2, [3])
    assert (record.sent_after_event, record.echoed_after_event) == (2, 1)
    assert record.instance_before == 2
    assert [m.seq for m in record.messages] == [1, 2, 3] and record.messages[0].sent == -0.4
    again = page_reconnect(report, Retry(), 101.5)
    assert (again.client, again.back_after, again.attempts, again.instance) == ("chromium", 0.76, 2, 3)
    assert again.error == REFUSED and "0.25 s later" in again.policy
    assert again.sockets[0] == PageAttempt(
        started=-0.5, opened=-0.49, closed=0.5, code=1001, reason="", clean=True, instance=2
    )
    assert again.sockets[1].opened is None and again.sockets[1].clean is False
    assert again.sockets[2].started == 1.252 and again.sockets[2].instance == 3


@pytest.mark.fast
def test_a_page_cut_without_a_close_frame_and_not_back() -> None:
    page = json.loads(json.dumps(PAGE))
    page["sockets"][0].update(code=1006, clean=False)
    page["sockets"][2].update(opened=None, closed=2770.0, code=1006, clean=False)
    report = parse_report(page, 100.0, [_on(2)])
    record = page_lifecycle(_event(), report, 101.5, 1.5)
    assert record.closed_by == "abnormal" and not record.close_frame_received and not record.close_frame_sent
    again = page_reconnect(report, Retry(delay=1, factor=1, cap=1), 101.5)
    assert again.back_after is None and again.attempts == 2 and again.instance is None
    # No DevTools error for it: what the page's close event said.
    assert again.error == "closed with 1006 before opening"
    assert again.policy.endswith("1 s later, every time")


@pytest.mark.fast
def test_devtools_names_each_socket_of_the_tab_in_order() -> None:
    def event(method: str, number: str, **params: object) -> dict:
        return {"method": f"Network.{method}", "params": {"requestId": number, **params}}

    headers = {"Upgrade": "websocket", "X-Wslab-Instance": "4"}
    events = [
        event("webSocketCreated", "1", url=URL),
        event(
            "webSocketWillSendHandshakeRequest", "1", request={"headers": {"Origin": "http://127.0.0.1:1"}}
        ),
        event("webSocketHandshakeResponseReceived", "1", response={"status": 101, "headers": headers}),
        event("webSocketCreated", "2", url=URL),
        event("webSocketFrameError", "2", errorMessage=REFUSED),
        event("webSocketCreated", "3", url=URL),
        event(
            "webSocketFrameError",
            "3",
            errorMessage="Error during WebSocket handshake: Unexpected response code: 426",
        ),
    ]
    first, second, third = handshakes(events)
    assert third.received is not None and third.received.status == 426, "a refused upgrade's status"
    assert first.instance == 4 and first.sent is not None and first.sent.target == "/lifecycle?wslab-ping=off"
    assert header_value(first.sent.headers, "Origin") == "http://127.0.0.1:1"
    assert second.instance is None and second.error == REFUSED


@pytest.mark.fast
def test_the_retry_policy_from_the_step() -> None:
    assert Retry.from_step(None) == Retry(0.25, 2.0, 4.0)
    assert Retry.from_step({"delay": 1, "max": 8}) == Retry(1.0, 2.0, 8.0)
    assert "x2, up to 8 s" in Retry(1, 2, 8).describe()


@pytest.mark.fast
def test_only_an_event_step_may_follow_browser_connect(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    steps = "      - browser_connect: {path: /, retry: {delay: 0.5}}\n      - event: {cause: redeploy}\n"
    file.write_text(
        "suite: x\nscenarios:\n  - id: a\n    title: a\n    correlate: exclusive\n    steps:\n"
        f"{steps}    expect: {{reconnects: true}}\n"
    )
    scenario = load_suite(file).scenarios[0]
    assert scenario.uses_browser and scenario.needs_probe_server
    file.write_text(file.read_text().replace("event: {cause: redeploy}", "send: hello"))
    with pytest.raises(ScenarioError, match="only an 'event' step"):
        load_suite(file)


def _chromium(again_client: str = "chromium", instance: int = 3, clean: bool = False) -> object:
    """A redeploy cut without a close frame, reconnected by a Chromium page's loop."""
    from wslab.records import PageAttempt, Reconnect

    cut = lived_through("redeploy", closed_after=1.8, code=1006, frame=False, instances=(3, 4))
    record = cut.transcript.lifecycle
    assert record is not None
    record.reconnect = Reconnect(
        back_after=0.26,
        attempts=2,
        error=REFUSED,
        instance=instance,
        client=again_client,
        policy=Retry().describe(),
        sockets=[
            PageAttempt(started=-0.5, opened=-0.49, closed=1.8, code=1006, clean=clean, instance=3),
            PageAttempt(started=2.05, opened=None, closed=2.06, code=1006, clean=False, error=REFUSED),
            PageAttempt(started=2.3, opened=2.31, closed=None, instance=instance),
        ],
    )
    return cut


@pytest.mark.fast
def test_the_timeline_marks_the_pages_attempts_and_its_return() -> None:
    from wslab.reports.timeline import timeline

    cut = _chromium()
    line = timeline(cut.transcript.lifecycle)
    marks = [(m["kind"], m["label"]) for m in line["marks"]]
    retries = [label for kind, label in marks if kind == "retry"]
    assert retries == [f"the page's attempt at +2.05 s did not open: {REFUSED}"]
    back = next(label for kind, label in marks if kind == "back")
    assert back == "the Chromium page's loop reconnected 0.26 s after the close on instance 3"
    websockets = lived_through("server-restart", closed_after=0.5, code=1001).transcript.lifecycle
    labels = [m["label"] for m in timeline(websockets)["marks"] if m["kind"] == "back"]
    assert labels == ["websockets' connect() reconnected 0.50 s after the close"]


@pytest.mark.fast
def test_the_diagnosis_says_what_the_page_saw_and_keeps_one_fix() -> None:
    from wslab.diagnosis import diagnose
    from wslab.topology import load_topologies

    cloudrun = load_topologies()["cloudrun"]
    page = diagnose(_chromium(instance=4), cloudrun, [])
    assert page.rule == "redeploy-cut-without-close"
    assert "the page's close event said code 1006, wasClean false" in page.cause
    assert "cannot tell this from a lost network" in page.cause
    assert "was back 0.26 s later on instance 4 (2 attempts)" in page.cause
    websockets = diagnose(lived_through("redeploy", closed_after=1.8, code=1006, frame=False), cloudrun, [])
    assert "In the browser" not in websockets.cause
    assert page.fix == websockets.fix and "close handler" in page.fix, "one fix: printed once"


@pytest.mark.fast
def test_a_tab_that_reconnects_keeps_a_scale_to_zero_instance() -> None:
    from wslab.diagnosis import diagnose
    from wslab.topology import load_topologies

    quiet = _chromium(instance=3)
    record = quiet.transcript.lifecycle
    record.event.cause = "scale-to-zero"
    record.event.ends_after = 18.0
    found = diagnose(quiet, load_topologies()["cloudrun"], [])
    assert found.rule == "scale-to-zero-closed-quiet-connection"
    assert "on instance 3, the same one" in found.cause
    assert "keeps its instance from ever scaling to zero" in found.cause


def _cells(result: dict) -> dict[tuple[str, str], dict]:
    return {(c["topology"], c["scenario"]): c for c in result["cells"]}


def _run(tmp_path: Path, topologies: list[str], scenarios: list[str]) -> dict:
    out = tmp_path / "life.json"
    argv = [sys.executable, "-m", "wslab", "run", "--suite", "lifecycle", "--json", str(out)]
    argv += [arg for name in topologies for arg in ("-t", name)]
    argv += [arg for scenario in scenarios for arg in ("--scenario", scenario)]
    subprocess.run(argv, cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=300)
    return json.loads(out.read_text())


def _instance_served(cell: dict, instance: int) -> bool:
    """Whether the probe server's records hold a handshake from Chromium (its Origin, the loopback
    page) that it answered as ``instance``."""
    for connection in cell["server"]:
        response, request = connection.get("response") or {}, connection.get("request") or {}
        said = dict((k.lower(), v) for k, v in response.get("headers", []))
        origin = dict((k.lower(), v) for k, v in request.get("headers", [])).get("origin", "")
        if said.get("x-wslab-instance") == str(instance) and origin.startswith("http://127.0.0.1:"):
            return True
    return False


def test_a_pages_reconnect_loop_is_timed_through_real_proxies(tmp_path: Path) -> None:
    if not browser.CHROMIUM.exists():
        pytest.skip("Chromium is not installed")
    for kind in ("nginx", "envoy"):
        if REGISTRY[kind].locate() is None:
            pytest.skip(f"{kind} is not installed")
    names = ["direct", "nginx-websocket", "cloudrun"]
    scenarios = ["redeploy", "chromium-server-restart", "chromium-redeploy", "chromium-redeploy-no-sigterm"]
    cells = _cells(_run(tmp_path, names, scenarios))
    for name in names:
        # The server stays down 1 s: the page's attempts fail (refused, or the proxy's 502/503)
        # until it listens again, then it lands on the restarted server's new instance.
        restart = cells[(name, "chromium-server-restart")]
        life, again = restart["client"]["lifecycle"], restart["client"]["lifecycle"]["reconnect"]
        assert restart["outcome"] == "pass", (name, restart["checks"])
        assert restart["client"]["kind"] == "browser"
        assert life["code"] == 1001 and life["close_frame_received"] and again["sockets"][0]["clean"] is True
        assert again["client"] == "chromium" and 0.9 <= again["back_after"] <= 4, again
        assert again["attempts"] >= 2 and again["sockets"][1]["opened"] is None, again
        assert again["error"] and again["sockets"][1]["code"] == 1006
        assert again["instance"] == life["instance_before"] + 1 == life["instance_after"]
        assert _instance_served(restart, again["instance"]), "the server's record agrees"
        # A redeploy: 1001 at the SIGTERM, back one retry delay (0.25 s) later on the new instance.
        moved = cells[(name, "chromium-redeploy")]
        life, again = moved["client"]["lifecycle"], moved["client"]["lifecycle"]["reconnect"]
        assert moved["outcome"] == "pass", (name, moved["checks"])
        assert life["echoed"] > 0 and len(life["lost"]) <= 1, "at most the one in flight at the close"
        assert 0.2 <= again["back_after"] < 1 and again["attempts"] == 1, again
        assert again["instance"] == life["instance_before"] + 1
        assert _instance_served(moved, again["instance"])
        # websockets' client, reconnecting from the close too, is back at once (no retry delay).
        assert cells[(name, "redeploy")]["client"]["lifecycle"]["reconnect"]["back_after"] < 0.2
        # Cut at the SIGKILL: the page sees 1006, not clean, and says so in the diagnosis.
        cut = cells[(name, "chromium-redeploy-no-sigterm")]
        again = cut["client"]["lifecycle"]["reconnect"]
        assert cut["outcome"] == "fail" and cut["diagnosis"]["rule"] == "redeploy-cut-without-close"
        assert again["sockets"][0]["code"] == 1006 and again["sockets"][0]["clean"] is False
        assert "wasClean false" in cut["diagnosis"]["cause"]
        assert again["instance"] == cut["client"]["lifecycle"]["instance_before"] + 1


def test_without_chromium_the_browser_lifecycle_cells_are_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    scenarios = [s for s in load_scenarios(suites=["lifecycle"]) if s.id == "chromium-redeploy"]
    backend = LocalBackend(tmp_path, StackOptions())
    result = asyncio.run(run(backend, [load_topologies()["direct"]], scenarios))
    (cell,) = result.cells
    assert cell.outcome == Outcome.UNAVAILABLE and "apt-get install -y chromium" in (cell.error or "")


@pytest.mark.fast
def test_html_pairs_each_server_connection_with_the_pages_socket_by_its_key() -> None:
    from wslab.records import BrowserReport, BrowserRequest, RequestHead, Transcript
    from wslab.reports.html import _exchange_for

    def head(key: str) -> RequestHead:
        return RequestHead(
            method="GET", target="/lifecycle", path="/lifecycle", version="HTTP/1.1",
            headers=[("Sec-WebSocket-Key", key)],
        )  # fmt: skip

    sockets = [
        BrowserRequest(url=URL, type="WebSocket", sent=head(key), received=None, error=None) for key in "ab"
    ]
    client = Transcript(sent=head("a"), browser=BrowserReport(product="HeadlessChrome/1", requests=sockets))
    assert _exchange_for(client, head("b")) is sockets[1]
    assert _exchange_for(client, head("a")) is sockets[0]


@pytest.mark.fast
def test_html_marks_nothing_against_another_client_of_a_websockets_lifecycle_cell() -> None:
    """websockets' client keeps only its first request: the halfway new client's and the
    reconnection's connections (other keys) are not diffed against it."""
    from wslab.records import RequestHead, Transcript
    from wslab.reports.html import _exchange_for

    def head(key: str) -> RequestHead:
        return RequestHead(
            method="GET", target="/lifecycle", path="/lifecycle", version="HTTP/1.1",
            headers=[("Sec-WebSocket-Key", key)],
        )  # fmt: skip

    client = Transcript(sent=head("first"))
    assert _exchange_for(client, head("first")) is client
    assert _exchange_for(client, head("second")) is None
    assert _exchange_for(Transcript(sent=None), head("second")).sent is None  # type: ignore[union-attr]
