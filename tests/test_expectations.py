"""A scenario's `expect` block checked against evidence built by hand (no proxy, no Docker)."""

from __future__ import annotations

import pytest
from builders import CHROME_TAB, UPGRADE, connection, evidence, held, hold, request, transcript, without

from wslab.expectations import evaluate
from wslab.records import ClientKind, Step

pytestmark = pytest.mark.fast

THROUGH_PROXY = without(CHROME_TAB, "Connection")
SEED = evidence(
    transcript(request(CHROME_TAB), 426), connection(request(THROUGH_PROXY), 426, "missing Connection header")
)


def verdicts(expect: dict, cell=SEED) -> list[tuple[str, bool]]:
    return [(check.name, check.ok) for check in evaluate(expect, cell)]


@pytest.mark.parametrize(
    ("pattern", "ok"), [(426, True), (101, False), ("4xx", True), ("2xx", False), ([101, "4xx"], True)]
)
def test_status_takes_a_code_a_class_or_a_list(pattern: object, ok: bool) -> None:
    [check] = evaluate({"status": pattern}, SEED)
    assert (check.name, check.expected, check.actual, check.ok) == ("status", pattern, 426, ok)


def test_no_response_is_said_as_such() -> None:
    silent = evidence(
        transcript(request(CHROME_TAB), None, error="raw: connection closed without a response")
    )
    [check] = evaluate({"status": 200}, silent)
    assert check.actual == "no response" and not check.ok


def test_what_the_server_received() -> None:
    expect = {
        "server_received": {
            "version": "HTTP/1.1",
            "method": "GET",
            "path": "/",
            "headers_present": ["x-forwarded-for"],
            "headers_absent": ["Connection", "Sec-Fetch-Mode"],
            "headers": {"host": "127.0.0.1:8080", "Upgrade-Insecure-Requests": "2"},
        }
    }
    assert verdicts(expect) == [
        ("server_received.version", True),
        ("server_received.method", True),
        ("server_received.path", True),
        ("server_received has x-forwarded-for", True),
        ("server_received lacks Connection", True),
        ("server_received lacks Sec-Fetch-Mode", False),
        ("server_received host", True),
        ("server_received Upgrade-Insecure-Requests", False),
    ]
    nothing = evidence(transcript(request(CHROME_TAB), 403))
    [check] = evaluate(expect, nothing)
    assert (check.actual, check.ok) == ("nothing reached the server", False)


def test_server_error_reached_server_and_the_client_flags() -> None:
    expect = {
        "server_error": "missing Connection header",
        "reached_server": True,
        "upgraded": False,
        "connected": True,
        "subprotocol": None,
    }
    assert all(ok for _, ok in verdicts(expect))
    assert verdicts({"server_error": None}) == [("server_error", False)]


def test_a_failed_opening_step_with_an_http_answer_is_judged_by_the_status() -> None:
    refused = evidence(transcript(request(UPGRADE), 403, ok=False, error="connect: server rejected"))
    assert verdicts({"status": 403}, refused) == [("status", True)]


def test_a_failed_later_step_is_its_own_check() -> None:
    client = transcript(request(UPGRADE), 101, kind=ClientKind.CONNECT)
    client.steps.append(
        Step(step="expect_message", argument="hi", ok=False, detail="expected 'hi', received 'x'")
    )
    [steps, status] = evaluate({"status": 101}, evidence(client, connection(request(UPGRADE), 101)))
    assert (steps.name, steps.actual, steps.ok) == (
        "step expect_message",
        "expected 'hi', received 'x'",
        False,
    )
    assert status.ok


def test_survives_reads_the_hold() -> None:
    [cut] = evaluate({"survives": True}, held(hold(lived=1.2, since_last_byte=1.2)))
    assert (cut.actual, cut.ok) == ("closed after 60 s (faithful)", False)
    [kept] = evaluate({"survives": True}, held(hold(lived=3.0, since_last_byte=0.1, closed=False)))
    assert (kept.actual, kept.ok) == ("still open", True)


def test_checks_come_in_a_stable_order() -> None:
    expect = {"server_error": None, "status": 426, "upgraded": False}
    assert [name for name, _ in verdicts(expect)] == ["status", "upgraded", "server_error"]
