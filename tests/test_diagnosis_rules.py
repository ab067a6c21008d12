"""The diagnosis table, rule by rule and in order, on evidence built by hand (no proxy, no Docker).

Each case is the smallest evidence a real proxy produces for that cause (see
the real-proxy tests in test_default_matrix.py for the same cells observed);
the order cases pin which rule wins when a cell's evidence fits several.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import (
    CHROME_TAB,
    UPGRADE,
    connection,
    evidence,
    held,
    hold,
    lived_through,
    request,
    stream,
    topology,
    transcript,
    without,
)

from wslab.diagnosis import PROCESS_REQUEST_FIX, RULES, diagnose
from wslab.evidence import Evidence
from wslab.records import Check, ClientKind, FaultRecord

pytestmark = pytest.mark.fast

TAB_THROUGH_PROXY = without(CHROME_TAB, "Connection")
STRIPPED = without(UPGRADE, "Connection", "Upgrade")
H2C_PREFACE = request([], method="PRI", version="HTTP/2.0", path="*")


def stalled(closed_after: float | None) -> Evidence:
    """A held connection cut 1.2 s in, with a stall on the proxy-server hop since its start."""
    cut = held(hold(lived=1.2, since_last_byte=1.25))
    stall = FaultRecord(
        kind="stall", hop="proxy-server", port=40000, applied_at=100.0, closed_after=closed_after
    )
    cut.transcript.faults.append(stall)
    return cut


CASES: dict[str, Evidence] = {
    "reload-closed-websocket": lived_through(closed_after=0.02, code=1006, frame=False),
    "reload-refused-new-connections": lived_through(opened=False),
    "restart-close-without-frame": lived_through("server-restart", closed_after=0.01, code=1006, frame=False),
    "restart-not-back": lived_through("server-restart", closed_after=0.01, code=1001, back_after=None),
    "redeploy-cut-without-close": lived_through("redeploy", closed_after=1.8, code=1006, frame=False),
    "scale-to-zero-closed-quiet-connection": lived_through(
        "scale-to-zero", closed_after=6.0, code=1006, frame=False
    ),
    "stall-idle-timeout": stalled(closed_after=1.2),
    "timeout": evidence(
        transcript(request(UPGRADE), None, timed_out=True, error="raw: no answer within 5 s")
    ),
    "idle-timeout": held(hold(lived=1.2, since_last_byte=1.2)),
    "lifetime-cap": held(hold(lived=6.0, since_last_byte=0.4)),
    "upstream-speaks-http2": evidence(
        transcript(request(UPGRADE), 502),
        connection(
            H2C_PREFACE,
            None,
            "did not receive a valid HTTP request",
            "InvalidMessage",
            http2_request=stream(),
        ),
    ),
    "proxy-downgraded-http10": evidence(
        transcript(request(UPGRADE), 502),
        connection(
            request([("Connection", "close")], version="HTTP/1.0"), 505, "unsupported HTTP version: HTTP/1.0"
        ),
    ),
    "proxy-upgraded-http10": evidence(
        transcript(request(UPGRADE, version="HTTP/1.0"), 101), connection(request(UPGRADE), 101)
    ),
    "proxy-removed-upgrade": evidence(
        transcript(request(UPGRADE), 426), connection(request(STRIPPED), 426, "missing Connection header")
    ),
    "proxy-rejected-upgrade": evidence(transcript(request(UPGRADE), 403)),
    "server-closed-without-response": evidence(
        transcript(
            request(CHROME_TAB, method="HEAD"), None, error="raw: connection closed without a response"
        ),
        connection(
            request(TAB_THROUGH_PROXY, method="HEAD"),
            None,
            "did not receive a valid HTTP request",
            "InvalidMessage",
            "ValueError: unsupported HTTP method; expected GET; got HEAD",
        ),
    ),
    "plain-http-through-keepalive-proxy": evidence(
        transcript(request(CHROME_TAB), 426),
        connection(request(TAB_THROUGH_PROXY), 426, "missing Connection header"),
    ),
    "proxy-rewrote-connection": evidence(
        transcript(request(CHROME_TAB), 426),
        connection(
            request([*without(CHROME_TAB, "Connection"), ("Connection", "close")]),
            426,
            "invalid Connection header: close",
        ),
    ),
    "client-sent-no-upgrade": evidence(
        transcript(request(CHROME_TAB), 426),
        connection(request(CHROME_TAB), 426, "invalid Connection header: keep-alive"),
    ),
    "server-rejected": evidence(
        transcript(request(UPGRADE), 400),
        connection(request(UPGRADE), 400, "invalid Sec-WebSocket-Key header"),
    ),
    "nothing-reached-server": evidence(transcript(request(CHROME_TAB), 404)),
}


def test_every_rule_has_a_case() -> None:
    assert list(CASES) == [rule.id for rule in RULES], "a new rule needs its case here, in table order"


def test_a_stall_names_the_proxys_idle_directive_and_both_sides() -> None:
    diagnosis = diagnose(CASES["stall-idle-timeout"], topology(), [])
    assert "between the proxy and the server (port 40000)" in diagnosis.cause
    assert "1.20 s after it began" in diagnosis.cause and "client saw code 1006" in diagnosis.cause
    assert "server saw close code 1006" in diagnosis.cause
    assert "nginx proxy_read_timeout" in diagnosis.fix
    haproxy = dataclasses.replace(topology(), proxy="haproxy")
    assert "haproxy timeout tunnel" in diagnose(CASES["stall-idle-timeout"], haproxy, []).fix


def test_a_cut_after_the_stall_was_cleared_is_not_blamed_on_it() -> None:
    assert diagnose(stalled(closed_after=None), topology(), []).rule == "idle-timeout"


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_recognises_its_evidence(rule: str) -> None:
    diagnosis = diagnose(CASES[rule], topology(), [])
    assert diagnosis.rule == rule
    assert diagnosis.cause and diagnosis.fix


def test_a_reload_that_drops_the_connection_says_1006_and_gives_the_proxys_directive() -> None:
    diagnosis = diagnose(CASES["reload-closed-websocket"], topology(), [])
    assert "no close frame" in diagnosis.cause and "1006" in diagnosis.cause
    assert "2 numbered messages in flight were lost" in diagnosis.cause
    assert "worker_shutdown_timeout" in diagnosis.fix and "nginx.org" in diagnosis.fix


def test_a_reload_that_closes_with_a_frame_names_its_code() -> None:
    diagnosis = diagnose(lived_through(closed_after=0.5, code=1001), topology(proxy="haproxy"), [])
    assert diagnosis.rule == "reload-closed-websocket" and "code 1001" in diagnosis.cause
    assert "hard-stop-after" in diagnosis.fix


def test_the_seed_cause_says_what_arrived_and_gives_process_request() -> None:
    diagnosis = diagnose(CASES["plain-http-through-keepalive-proxy"], topology(), [])
    assert "Connection: 'keep-alive'" in diagnosis.cause
    assert "'missing Connection header'" in diagnosis.cause and "answered 426" in diagnosis.cause
    assert diagnosis.fix == PROCESS_REQUEST_FIX


def test_a_stripped_upgrade_names_both_sides_and_the_topologys_own_fix() -> None:
    diagnosis = diagnose(CASES["proxy-removed-upgrade"], topology(fix="proxy_set_header Upgrade"), [])
    assert "sent Connection: 'Upgrade' and Upgrade: 'websocket'" in diagnosis.cause
    assert "received Connection: absent and Upgrade: absent" in diagnosis.cause
    assert diagnosis.fix == "proxy_set_header Upgrade"
    generic = diagnose(CASES["proxy-removed-upgrade"], topology(fix=""), [])
    assert "Connection: upgrade" in generic.fix


@pytest.mark.parametrize(
    ("forwarded", "error", "recipe"),
    [
        ("close", "invalid Connection header: close", "map $http_upgrade"),
        ("upgrade", "missing Upgrade header", '"upgrade"'),
    ],
)
def test_a_rewritten_connection_names_the_recipe_and_the_error(
    forwarded: str, error: str, recipe: str
) -> None:
    rewritten = evidence(
        transcript(request(CHROME_TAB), 426),
        connection(request([*without(CHROME_TAB, "Connection"), ("Connection", forwarded)]), 426, error),
    )
    diagnosis = diagnose(rewritten, topology(), [])
    assert diagnosis.rule == "proxy-rewrote-connection"
    assert f"Connection: '{forwarded}'" in diagnosis.cause and f"'{error}'" in diagnosis.cause
    assert recipe in diagnosis.cause and diagnosis.fix == PROCESS_REQUEST_FIX


def test_a_head_request_is_not_blamed_on_a_rewritten_connection() -> None:
    head = evidence(
        transcript(request(CHROME_TAB, method="HEAD"), 405),
        connection(
            request([*without(CHROME_TAB, "Connection"), ("Connection", "close")], method="HEAD"),
            405,
            "unsupported HTTP method; expected GET; got HEAD",
            "InvalidMessage",
        ),
    )
    assert diagnose(head, topology(), []).rule == "client-sent-no-upgrade"


@pytest.mark.parametrize(
    ("status", "said"), [(403, "answered 403 and"), (200, "answered 200, a page instead of 101")]
)
def test_a_refused_upgrade_says_what_came_back(status: int, said: str) -> None:
    """A static host answers a handshake to / with its page (200): refused all the same."""
    diagnosis = diagnose(evidence(transcript(request(UPGRADE), status)), topology(fix="Deploy a server."), [])
    assert diagnosis.rule == "proxy-rejected-upgrade"
    assert said in diagnosis.cause and "nothing reached the server" in diagnosis.cause
    assert diagnosis.fix == "Deploy a server."


def test_h2c_names_the_cells_own_stream() -> None:
    cause = diagnose(CASES["upstream-speaks-http2"], topology(), []).cause
    assert "stream 7 on it: CONNECT /echo with :protocol websocket" in cause
    assert "the proxy answered 502" in cause


def test_limits_quote_the_topologys_configured_parameters() -> None:
    idle = diagnose(CASES["idle-timeout"], topology(), [])
    assert "after 60 s (faithful; 1.20 s in this run)" in idle.cause
    assert "idle = 60 s ([DOC] https://example.invalid/idle)" in idle.fix
    assert "ping_interval" in idle.fix
    assert "reconnect" in diagnose(CASES["lifetime-cap"], topology(), []).fix


@pytest.mark.parametrize(
    ("case", "also", "winner"),
    [
        ("proxy-removed-upgrade", {"timed_out": True}, "timeout"),
        ("upstream-speaks-http2", {}, "upstream-speaks-http2"),
        ("proxy-downgraded-http10", {}, "proxy-downgraded-http10"),
        ("server-closed-without-response", {}, "server-closed-without-response"),
        ("plain-http-through-keepalive-proxy", {}, "plain-http-through-keepalive-proxy"),
        ("proxy-rewrote-connection", {}, "proxy-rewrote-connection"),
    ],
)
def test_the_first_matching_rule_wins(case: str, also: dict, winner: str) -> None:
    """These cells also fit a later rule (a removed upgrade, a client that sent no upgrade)."""
    base = CASES[case]
    fits = [rule.id for rule in RULES if rule.when(base)]
    assert len(fits) >= 2 or also, fits
    changed = Evidence(base.transcript.model_copy(update=also), base.connections)
    assert diagnose(changed, topology(), []).rule == winner


def test_a_tcp_probe_that_reached_nothing_is_not_blamed_on_the_proxy() -> None:
    probe = evidence(transcript(None, None, kind=ClientKind.TCP_PROBE))
    failed = [Check(name="reached_server", expected=True, actual=False, ok=False)]
    diagnosis = diagnose(probe, topology(), failed)
    assert diagnosis.rule == "expectation-mismatch"
    assert "reached_server: expected True, got False" in diagnosis.cause


def test_rules_are_pure() -> None:
    for rule, case in CASES.items():
        assert diagnose(case, topology(), []) == diagnose(case, topology(), []), rule
