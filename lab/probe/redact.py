"""Redaction of secrets in the probe server's records.

A deployed probe server sees real traffic: a client's ``Authorization``
header, its cookies, a token in the query string. Before a record is kept or
reported, :func:`redact_record` replaces those values with ``[redacted]``
everywhere the record holds them: the raw request head, the request target
and path, the header lists, the response's ``Set-Cookie`` and the error text
websockets wrote (which can quote the request line or a header value).

Everything here is a pure function of its input; nothing is modified in place.
It depends on the standard library only.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import unquote

from .wire import CELL_PARAM

REDACTED = "[redacted]"

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Header names (lower case) whose values are always redacted."""

URL_HEADERS = frozenset({"referer", "location", "content-location"})
"""Header names whose values are URLs: their token-like query parameters are redacted."""

SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "auth",
        "key",
        "api_key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "sig",
        "signature",
        "session",
        "jwt",
    }
)
"""Query parameter names (lower case) that are token-like."""

SECRET_WORDS = SECRET_PARAMS | {"authorization", "credential", "credentials"}
"""A parameter is token-like too when one word of its name is one of these
(``auth_token``, ``X-Amz-Signature``, ``sessionId``, ``client_secret``)."""

KEPT_PARAMS = frozenset({CELL_PARAM})
"""Never redacted: the lab's own correlation parameter."""

MIN_SWEPT = 4
"""Secret values at least this long are also searched for in free text (error messages)."""

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_QUERY_SPLIT = re.compile(r"([&;])")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_PARAM_IN_TEXT = re.compile(r"(?<=[?&;])([^\s=&;#?]+)=([^\s&;#]*)")
_LINE_END = re.compile(r"(\r\n|\n)")


def is_secret_header(name: str) -> bool:
    """Whether a header's value is always redacted (case-insensitive)."""
    return name.strip().lower() in SECRET_HEADERS


def is_secret_param(name: str) -> bool:
    """Whether a query parameter name is token-like (case-insensitive; never ``wslab-cell``)."""
    decoded = unquote(name).strip()
    lowered = decoded.lower()
    if lowered in KEPT_PARAMS:
        return False
    if lowered in SECRET_PARAMS:
        return True
    return any(word.lower() in SECRET_WORDS for word in _WORDS.findall(decoded))


def redact_query(query: str) -> str:
    """A query string with the values of token-like parameters replaced; separators kept."""
    parts = _QUERY_SPLIT.split(query)
    for index in range(0, len(parts), 2):
        name, sep, value = parts[index].partition("=")
        if sep and value and is_secret_param(name):
            parts[index] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_target(target: str) -> str:
    """A request target (or any URL) with its token-like query values and userinfo replaced."""
    target = _USERINFO.sub(lambda match: f"{match.group(1)}{REDACTED}@", target)
    path, sep, rest = target.partition("?")
    if not sep:
        return target
    query, hash_sep, fragment = rest.partition("#")
    return f"{path}?{redact_query(query)}{hash_sep}{fragment}"


def redact_header_value(name: str, value: str) -> str:
    """One header's value as it may be kept."""
    lowered = name.strip().lower()
    if lowered in SECRET_HEADERS:
        return REDACTED if value else value
    if lowered in URL_HEADERS:
        return redact_target(value)
    return value


def redact_headers(headers: list[Any]) -> list[list[str]]:
    """``[[name, value], ...]`` with secret values replaced, in the same order and case.

    A continuation line (obsolete line folding: it starts with a space or a
    tab, and :mod:`wslab.probe.wire` keeps it as its own pair) after a secret
    header is redacted too.
    """
    redacted = []
    secret = False
    for name, value in headers:
        if name[:1] in (" ", "\t"):
            if secret:
                name, value = name[: len(name) - len(name.lstrip())] + REDACTED, ""
        else:
            secret = is_secret_header(name)
            value = redact_header_value(name, value)
        redacted.append([name, value])
    return redacted


def _redact_request_line(line: str) -> str:
    parts = line.split(" ")
    if len(parts) == 3:
        return " ".join([parts[0], redact_target(parts[1]), parts[2]])
    return redact_text(line)


def redact_raw_head(text: str) -> str:
    """A raw request head (latin-1 text, possibly incomplete) with secrets replaced.

    The request line's target and the values of secret header lines are
    replaced; line endings, header case and spacing are kept.
    """
    pieces = _LINE_END.split(text)
    secret = False
    for index in range(0, len(pieces), 2):
        line = pieces[index]
        if index == 0:
            pieces[index] = _redact_request_line(line)
            continue
        if line[:1] in (" ", "\t"):
            if secret:
                pieces[index] = line[: len(line) - len(line.lstrip())] + REDACTED
            continue
        name, sep, value = line.partition(":")
        secret = bool(sep) and is_secret_header(name)
        if sep:
            stripped = value.lstrip(" \t")
            new = redact_header_value(name, stripped)
            if new != stripped:
                pieces[index] = f"{name}:{value[: len(value) - len(stripped)]}{new}"
    return "".join(pieces)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Free text (an error message) with token-like ``name=value`` query pairs replaced,
    and every occurrence of the given secret values (longest first)."""
    text = _PARAM_IN_TEXT.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if m.group(2) and is_secret_param(m.group(1)) else m.group(0),
        text,
    )
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SWEPT:
            text = text.replace(secret, REDACTED)
    return text


def _variants(value: str) -> set[str]:
    """A value as it was received (latin-1) and as websockets quotes it in errors (UTF-8)."""
    variants = {value, unquote(value)}
    with contextlib.suppress(UnicodeEncodeError):
        variants.add(value.encode("latin-1").decode("utf-8", errors="backslashreplace"))
    return variants


def secret_values(record: dict[str, Any]) -> list[str]:
    """The secret strings a record holds: secret header values (whole, the credentials
    after an auth scheme, each cookie's value) and token-like query values."""
    found: set[str] = set()
    requests = [record.get(key) or {} for key in ("request", "http2_request")]
    headers = [pair for request in requests for pair in request.get("headers") or []]
    raw = record.get("raw_head") or ""
    for line in _LINE_END.split(raw)[2::2]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append([name, value.strip()])
    for name, value in headers:
        if not is_secret_header(name) or not value:
            continue
        found.add(value)
        scheme, space, credentials = value.partition(" ")
        if space:
            found.add(credentials.strip())
        for cookie in value.split(";"):
            found.add(cookie.strip())
            found.add(cookie.partition("=")[2].strip())
    targets = [request.get("target") or "" for request in requests]
    first_line = _LINE_END.split(raw, maxsplit=1)[0]
    targets.append(first_line)
    for target in targets:
        for match in _PARAM_IN_TEXT.finditer(target):
            if match.group(2) and is_secret_param(match.group(1)):
                found.add(match.group(2))
    swept: set[str] = set()
    for value in found:
        if value:
            swept |= _variants(value)
    return sorted(swept)


def _redact_request(request: dict[str, Any]) -> dict[str, Any]:
    return {
        **request,
        "target": redact_target(request.get("target") or ""),
        "path": redact_target(request.get("path") or ""),
        "headers": redact_headers(request.get("headers") or []),
    }


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a handshake record (see ``ObservingConnection._handshake_record``)
    in which no secret value remains: ``raw_head``, ``request`` and ``http2_request``
    (target, path, headers), ``response`` headers and ``error`` text. Undecoded
    HTTP/2 frames (``http2_frames``) are dropped: HPACK hides what they hold."""
    secrets = secret_values(record)
    redacted = {key: value for key, value in record.items() if key != "http2_frames"}
    if isinstance(record.get("raw_head"), str):
        redacted["raw_head"] = redact_raw_head(record["raw_head"])
    for key in ("request", "http2_request"):
        if record.get(key):
            redacted[key] = _redact_request(record[key])
    response = record.get("response")
    if response:
        redacted["response"] = {**response, "headers": redact_headers(response.get("headers") or [])}
    error = record.get("error")
    if error:
        redacted["error"] = {
            key: redact_text(value, secrets) if isinstance(value, str) else value
            for key, value in error.items()
        }
    return redacted
