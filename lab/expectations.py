"""Check a scenario's expectations against a cell's evidence.

Every key of a scenario's ``expect`` block is one check; each check yields
what was expected, what was observed and whether they agree. Nothing here
knows about topologies: the same data decides every cell.
"""

from __future__ import annotations

from typing import Any

from .evidence import Evidence
from .records import Check, header_value
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
    for key in ("reached_server", "server_error"):
        if key in expect:
            actual = getattr(evidence, key)
            checks.append(Check(name=key, expected=expect[key], actual=actual, ok=expect[key] == actual))
    if "server_received" in expect:
        checks.extend(_check_server_received(expect["server_received"], evidence))
    return checks
