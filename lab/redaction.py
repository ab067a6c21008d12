"""A cell's evidence with no secret left: Authorization, cookies, API keys, tokens.

Results are meant to be shared: every output format is built from the copies
these functions return. The probe server has redacted its own records before
publishing them (it says so in its greeting); the runner applies the same rules
to the client's transcript, to the records of a server that did not say so (a
deployed one, which may run another release), and to the proxy log lines a cell
keeps. The rules themselves (which headers and parameters are secret, and how
a value is replaced) live in :mod:`wslab.probe.redact`, which the probe
servers use.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from .probe.redact import (
    redact_header_value,
    redact_headers,
    redact_record,
    redact_subprotocols,
    redact_target,
    redact_text,
    secret_values,
)
from .records import Connection, Transcript


def _redact_header_line(line: str) -> str:
    name, sep, value = line.partition(":")
    return f"{name}{sep} {redact_header_value(name, value.strip())}" if sep else line


def _redact_argument(argument: Any) -> Any:
    """A step's argument as written in the scenario: its path, raw header lines and subprotocols."""
    if not isinstance(argument, dict):
        return argument
    redacted = dict(argument)
    if isinstance(redacted.get("path"), str):
        redacted["path"] = redact_target(redacted["path"])
    if isinstance(redacted.get("headers"), list):
        redacted["headers"] = [_redact_header_line(line) for line in redacted["headers"]]
    subprotocols = redacted.get("subprotocols")
    if isinstance(subprotocols, list) and all(isinstance(item, str) for item in subprotocols):
        # Item by item, but in context: the item after an access_token marker is the credential.
        redacted["subprotocols"] = [
            item.strip() for item in redact_subprotocols(",".join(subprotocols)).split(",")
        ]
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
    """The client's transcript with no secret value left: a copy if one was replaced."""
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
    if redacted == data:  # most cells send no secret: no second record to build
        return transcript
    return Transcript.model_validate(redacted)


def redact_connection(connection: Connection) -> Connection:
    """A copy of a connection the server saw with no secret value left (raw head included)."""
    return Connection.model_validate(redact_record(connection.model_dump(mode="json")))


def transcript_secrets(transcript: Transcript) -> set[str]:
    """The secret values the client sent in one cell (headers, query values, subprotocols),
    as found before redaction: what to sweep from free text such as a proxy's log lines."""
    heads = [transcript.sent] + ([r.sent for r in transcript.browser.requests] if transcript.browser else [])
    requests = [{"target": head.target, "headers": head.headers} for head in heads if head is not None]
    found = {value for request in requests for value in secret_values({"request": request, "raw_head": ""})}
    for step in transcript.steps:
        argument = step.argument
        if not isinstance(argument, dict):
            continue
        lines = [line for line in argument.get("headers") or [] if isinstance(line, str)]
        headers = [
            [name, value.strip()] for name, sep, value in (line.partition(":") for line in lines) if sep
        ]
        subprotocols = argument.get("subprotocols")
        if isinstance(subprotocols, list):
            headers.append(["Sec-WebSocket-Protocol", ", ".join(str(item) for item in subprotocols)])
        path = argument.get("path") if isinstance(argument.get("path"), str) else ""
        found.update(secret_values({"request": {"target": path, "headers": headers}, "raw_head": ""}))
    return found


def redact_log_line(line: str, secrets: set[str]) -> str:
    """A proxy's log line with token-like query values and the given secret values replaced."""
    return redact_text(line, sorted(secrets))


Model = TypeVar("Model", bound=BaseModel)


def _swept(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_swept(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _swept(item, secrets) for key, item in value.items()}
    return value


def sweep(record: Model, secrets: set[str]) -> Model:
    """A copy of ``record`` with every occurrence of the given values replaced in every text it
    holds: for values the lab knows are secret wherever they appear (``{env:NAME}`` values)."""
    if not secrets:
        return record
    return type(record).model_validate(_swept(record.model_dump(mode="json"), sorted(secrets)))
