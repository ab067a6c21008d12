"""A cell's evidence with no secret left: Authorization, cookies, token-like parameters.

Results are meant to be shared: every output format is built from the copies
these functions return. The rules themselves (which headers and parameters
are secret, and how a value is replaced) live in :mod:`wslab.probe.redact`,
which the deployable probe server uses too.
"""

from __future__ import annotations

from typing import Any

from .probe.redact import redact_header_value, redact_headers, redact_record, redact_target
from .records import Connection, Transcript


def _redact_header_line(line: str) -> str:
    name, sep, value = line.partition(":")
    return f"{name}{sep} {redact_header_value(name, value.strip())}" if sep else line


def _redact_argument(argument: Any) -> Any:
    """A step's argument as written in the scenario: its path and raw header lines."""
    if not isinstance(argument, dict):
        return argument
    redacted = dict(argument)
    if isinstance(redacted.get("path"), str):
        redacted["path"] = redact_target(redacted["path"])
    if isinstance(redacted.get("headers"), list):
        redacted["headers"] = [_redact_header_line(line) for line in redacted["headers"]]
    return redacted


def _redact_heads(exchange: dict[str, Any]) -> dict[str, Any]:
    """The ``sent`` and ``received`` heads of an exchange with no secret left."""
    redacted = {}
    for key in ("sent", "received"):
        head = exchange.get(key)
        if head:
            redacted[key] = {**head, "headers": redact_headers(head["headers"])}
            for field in ("target", "path"):
                if field in head:
                    redacted[key][field] = redact_target(head[field])
    return redacted


def redact_transcript(transcript: Transcript) -> Transcript:
    """A copy of the client's transcript with no secret value left."""
    data = transcript.model_dump(mode="json")
    redacted = {**data, **_redact_heads(data)}
    browser = data.get("browser")
    if browser:
        requests = [
            {**request, **_redact_heads(request), "url": redact_target(request["url"])}
            for request in browser["requests"]
        ]
        redacted["browser"] = {**browser, "requests": requests}
    redacted["steps"] = [{**step, "argument": _redact_argument(step["argument"])} for step in data["steps"]]
    return Transcript.model_validate(redacted)


def redact_connection(connection: Connection) -> Connection:
    """A copy of a connection the server saw with no secret value left (raw head included)."""
    return Connection.model_validate(redact_record(connection.model_dump(mode="json")))
