"""Check a scenario's expectations against a cell's evidence.

Every key of a scenario's ``expect`` block is one check; each check yields
what was expected, what was observed and whether they agree. Nothing here
knows about topologies: the same data decides every cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .evidence import Facts, header
from .scenario import OPENING_STEPS


@dataclass
class Check:
    name: str
    expected: Any
    actual: Any
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status_matches(pattern: int | str, status: int | None) -> bool:
    if status is None:
        return False
    if isinstance(pattern, int):
        return status == pattern
    return str(status)[0] == pattern[0]


def _check_status(expected: Any, facts: Facts) -> Check:
    patterns = expected if isinstance(expected, list) else [expected]
    status = facts.status
    ok = any(_status_matches(pattern, status) for pattern in patterns)
    return Check("status", expected, status if status is not None else "no response", ok)


def _check_server_received(expected: dict[str, Any], facts: Facts) -> list[Check]:
    request = facts.server_request
    if request is None:
        return [Check("server_received", expected, "nothing reached the server", False)]
    headers = request["headers"]
    checks = []
    for key in ("version", "method", "path"):
        if key in expected:
            checks.append(
                Check(f"server_received.{key}", expected[key], request[key], expected[key] == request[key])
            )
    for name in expected.get("headers_present", []):
        value = header(headers, name)
        checks.append(
            Check(
                f"server_received has {name}",
                "present",
                value if value is not None else "absent",
                value is not None,
            )
        )
    for name in expected.get("headers_absent", []):
        value = header(headers, name)
        checks.append(
            Check(
                f"server_received lacks {name}",
                "absent",
                value if value is not None else "absent",
                value is None,
            )
        )
    for name, want in expected.get("headers", {}).items():
        value = header(headers, name)
        checks.append(
            Check(
                f"server_received {name}",
                want,
                value if value is not None else "absent",
                value is not None and value.lower() == want.lower(),
            )
        )
    return checks


def _steps_check(facts: Facts) -> Check | None:
    """Every step must have run, unless the opening step got an HTTP answer other than 101
    (then the status decides)."""
    failed = [step for step in facts.transcript["steps"] if not step["ok"]]
    if not failed:
        return None
    step = failed[0]
    if step["step"] in OPENING_STEPS and facts.status is not None and not facts.transcript["upgraded"]:
        return None
    return Check(f"step {step['step']}", "completes", step.get("detail", "failed"), False)


def evaluate(expect: dict[str, Any], facts: Facts) -> list[Check]:
    """All checks of a scenario's expectations, in a stable order."""
    checks: list[Check] = []
    steps = _steps_check(facts)
    if steps is not None:
        checks.append(steps)
    transcript = facts.transcript
    if "status" in expect:
        checks.append(_check_status(expect["status"], facts))
    for key in ("upgraded", "connected", "subprotocol"):
        if key in expect:
            checks.append(Check(key, expect[key], transcript[key], expect[key] == transcript[key]))
    if "survives" in expect:
        hold = transcript.get("hold") or {}
        survived = hold.get("closed") is False
        actual = "still open" if survived else f"closed after {hold.get('lived_faithful', '?')} s (faithful)"
        checks.append(Check("survives", expect["survives"], actual, expect["survives"] == survived))
    if "reached_server" in expect:
        checks.append(
            Check(
                "reached_server",
                expect["reached_server"],
                facts.reached_server,
                expect["reached_server"] == facts.reached_server,
            )
        )
    if "server_error" in expect:
        checks.append(
            Check(
                "server_error",
                expect["server_error"],
                facts.server_error,
                expect["server_error"] == facts.server_error,
            )
        )
    if "server_received" in expect:
        checks.extend(_check_server_received(expect["server_received"], facts))
    return checks
