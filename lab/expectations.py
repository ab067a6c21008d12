"""Check a scenario's expectations against a cell's evidence.

Every key of a scenario's ``expect`` block is one check; each check yields
what was expected, what was observed and whether they agree. Nothing here
knows about topologies: the same data decides every cell.
"""

from __future__ import annotations

from typing import Any

from .evidence import Evidence
from .records import Check, Lifecycle, header_value
from .scenario import OPENING_STEPS


def _status_matches(pattern: int | str, status: int | None) -> bool:
    if status is None:
        return False
    if isinstance(pattern, int):
        return status == pattern
    return str(status)[0] == pattern[0]


def _check_status(expected: Any, evidence: Evidence) -> Check:
    patterns = expected if isinstance(expected, list) else [expected]
    status = evidence.status
    ok = any(_status_matches(pattern, status) for pattern in patterns)
    return Check(
        name="status", expected=expected, actual=status if status is not None else "no response", ok=ok
    )


def _check_server_received(expected: dict[str, Any], evidence: Evidence) -> list[Check]:
    request = evidence.server_request
    if request is None:
        return [
            Check(name="server_received", expected=expected, actual="nothing reached the server", ok=False)
        ]
    headers = request.headers
    checks = []
    for key in ("version", "method", "path"):
        if key in expected:
            actual = getattr(request, key)
            checks.append(
                Check(
                    name=f"server_received.{key}",
                    expected=expected[key],
                    actual=actual,
                    ok=expected[key] == actual,
                )
            )
    for name in expected.get("headers_present", []):
        value = header_value(headers, name)
        checks.append(
            Check(
                name=f"server_received has {name}",
                expected="present",
                actual=value if value is not None else "absent",
                ok=value is not None,
            )
        )
    for name in expected.get("headers_absent", []):
        value = header_value(headers, name)
        checks.append(
            Check(
                name=f"server_received lacks {name}",
                expected="absent",
                actual=value if value is not None else "absent",
                ok=value is None,
            )
        )
    for name, want in expected.get("headers", {}).items():
        value = header_value(headers, name)
        checks.append(
            Check(
                name=f"server_received {name}",
                expected=want,
                actual=value if value is not None else "absent",
                ok=value is not None and value.lower() == want.lower(),
            )
        )
    return checks


def _steps_check(evidence: Evidence) -> Check | None:
    """Every step must have run, unless the opening step got an HTTP answer other than 101
    (then the status decides)."""
    failed = [step for step in evidence.transcript.steps if not step.ok]
    if not failed:
        return None
    step = failed[0]
    if step.step in OPENING_STEPS and evidence.status is not None and not evidence.transcript.upgraded:
        return None
    return Check(name=f"step {step.step}", expected="completes", actual=step.detail or "failed", ok=False)


def _lifecycle_checks(expect: dict[str, Any], evidence: Evidence) -> list[Check]:
    """The event step's checks: kept open, the close code the client saw, back after a close."""
    record = evidence.transcript.lifecycle
    checks = []
    if "survives_event" in expect:
        if record is None:
            actual: Any = "no event happened"
        elif record.survived:
            actual = f"still open {record.watched:g} s after the {record.event.cause}"
        else:
            actual = f"closed {record.closed_after} s after the {record.event.cause}, code {record.code}"
        survived = record is not None and record.survived
        checks.append(
            Check(
                name="survives_event",
                expected=expect["survives_event"],
                actual=actual,
                ok=expect["survives_event"] == survived,
            )
        )
    if "event_close_code" in expect:
        wanted = expect["event_close_code"]
        code = record.code if record is not None else None
        checks.append(
            Check(
                name="event_close_code",
                expected=wanted,
                actual=code if code is not None else "not closed",
                ok=code in (wanted if isinstance(wanted, list) else [wanted]),
            )
        )
    if "accepts_during_event" in expect:
        fresh = record.new_connection if record is not None else None
        if fresh is None:
            actual = "not attempted"
        else:
            actual = (
                f"opened {fresh.at:g} s after the event"
                if fresh.opened
                else f"not opened {fresh.at:g} s after the event: {fresh.error}"
            )
        opened = fresh is not None and fresh.opened
        checks.append(
            Check(
                name="accepts_during_event",
                expected=expect["accepts_during_event"],
                actual=actual,
                ok=expect["accepts_during_event"] == opened,
            )
        )
    if "reconnects" in expect:
        again = record.reconnect if record is not None else None
        back = again is not None and again.back_after is not None
        if again is None:
            actual = "no reconnection attempted (not closed)"
        elif back:
            actual = f"back {again.back_after:g} s after the close ({again.attempts} attempts)"
        else:
            actual = f"not back ({again.attempts} attempts: {again.error})"
        checks.append(
            Check(
                name="reconnects",
                expected=expect["reconnects"],
                actual=actual,
                ok=expect["reconnects"] == back,
            )
        )
    if "new_instance" in expect:
        checks.append(_new_instance_check(expect["new_instance"], record))
    return checks


def _new_instance_check(wanted: bool, record: Lifecycle | None) -> Check:
    """Whether the client after the event landed on another instance than the watched one."""
    before = record.instance_before if record is not None else None
    after = record.instance_after if record is not None else None
    if before is None or after is None:
        actual = "no instance named (the server behind is not the lab's probe server, or no client got in)"
    else:
        actual = f"instance {before} before, {after} after"
    moved = before is not None and after is not None and before != after
    return Check(name="new_instance", expected=wanted, actual=actual, ok=wanted == moved)


def evaluate(expect: dict[str, Any], evidence: Evidence) -> list[Check]:
    """All checks of a scenario's expectations, in a stable order."""
    checks: list[Check] = []
    steps = _steps_check(evidence)
    if steps is not None:
        checks.append(steps)
    transcript = evidence.transcript
    if "status" in expect:
        checks.append(_check_status(expect["status"], evidence))
    for key in ("upgraded", "connected", "subprotocol"):
        if key in expect:
            actual = getattr(transcript, key)
            checks.append(Check(name=key, expected=expect[key], actual=actual, ok=expect[key] == actual))
    if "survives" in expect:
        hold = transcript.hold
        survived = hold is not None and not hold.closed
        lived = f"{hold.lived_faithful:g}" if hold is not None else "?"
        actual = "still open" if survived else f"closed after {lived} s (faithful)"
        checks.append(
            Check(
                name="survives", expected=expect["survives"], actual=actual, ok=expect["survives"] == survived
            )
        )
    checks.extend(_lifecycle_checks(expect, evidence))
    for key in ("reached_server", "server_error"):
        if key in expect:
            actual = getattr(evidence, key)
            checks.append(Check(name=key, expected=expect[key], actual=actual, ok=expect[key] == actual))
    if "server_received" in expect:
        checks.extend(_check_server_received(expect["server_received"], evidence))
    return checks
