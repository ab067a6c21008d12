"""Redaction of secrets in the probe server's records.

A probe server sees real traffic: a client's ``Authorization`` header, its
cookies, an API key, a token in the query string or in
``Sec-WebSocket-Protocol`` (the only header a browser lets a page set).
Before a record is kept or published, :func:`redact_record` replaces those
values everywhere the record holds them: the raw request head, the request
target and path, the header lists (of the request and of each HTTP/2
stream), the response's headers and the error text websockets wrote (which
can quote the request line or a header value).

A replaced value reads ``[redacted len=24 sha256:1a2b3c4d]``: its length and
the first 8 hex digits of the SHA-256 of its UTF-8 bytes, so that two cells
(or the client and the server) that carried the same secret still show the
same thing, and a proxy that cut or changed a token shows a different one.
What tells how a value is used stays visible: the ``Bearer`` scheme of an
``Authorization`` value, each cookie's name, the ``access_token`` marker of
a subprotocol list.

Everything here is a pure function of its input; nothing is modified in
place; applying it twice changes nothing more. It depends on the standard
library only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from typing import Any
from urllib.parse import unquote

from .wire import CELL_PARAM

REDACTED_PATTERN = re.compile(r"\[redacted len=[0-9]+ sha256:[0-9a-f]{8}\]")
"""What a replaced value looks like."""

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)
"""Header names (lower case) whose values are always redacted."""

SECRET_HEADER_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "token",
        "secret",
        "key",
        "apikey",
        "session",
        "password",
        "passwd",
        "credential",
        "credentials",
        "signature",
        "jwt",
        "csrf",
        "xsrf",
        "cookie",
    }
)
"""A header is secret too when one word of its name (split at ``-``, ``_`` and case changes)
is one of these: ``X-Amz-Security-Token``, ``X-CSRF-Token``, ``X-Session-Id``, ``Api_Key``.
Whole words only, so ``Authority``, ``Keep-Alive`` and ``WWW-Authenticate`` are not."""

KEPT_HEADER_PREFIX = "sec-websocket-"
"""The handshake's own headers (Key, Accept, Version, Extensions) are never secret; the
Protocol one is read item by item (:func:`redact_subprotocols`)."""

SUBPROTOCOL_HEADER = "sec-websocket-protocol"

AUTH_SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
"""Values of the form ``Scheme credentials``: the scheme stays visible."""

URL_HEADERS = frozenset({"referer", "location", "content-location", ":path"})
"""Header names whose values are URLs (and HTTP/2's ``:path``): their token-like query
parameters are redacted."""

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

SUBPROTOCOL_MARKERS = frozenset(
    {
        "access_token",
        "access-token",
        "accesstoken",
        "token",
        "auth",
        "auth_token",
        "auth-token",
        "authorization",
        "bearer",
        "jwt",
        "id_token",
        "api_key",
        "apikey",
    }
)
"""Subprotocol items (lower case) that announce a credential in the next item
(``Sec-WebSocket-Protocol: access_token, <JWT>``)."""

MIN_TOKEN_LENGTH = 20
"""A subprotocol item at least this long that does not read as a protocol name is a credential."""

MIN_SWEPT = 4
"""Secret values at least this long are also searched for in free text (error messages)."""

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_QUERY_SPLIT = re.compile(r"([&;])")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_PARAM_IN_TEXT = re.compile(r"(?<=[?&;])([^\s=&;#?]+)=(" + REDACTED_PATTERN.pattern + r"|[^\s&;#]*)")
_LINE_END = re.compile(r"(\r\n|\n)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)([ \t]+)(\S.*)$", re.DOTALL)
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){2}(\.[A-Za-z0-9_-]*){0,2}$")
_NAME_PART = re.compile(
    r"^(?:[a-z]+[0-9]{0,4}|[A-Z][a-z]+[0-9]{0,4}|[A-Z]{1,6}|v?[0-9]{1,4}|[A-Za-z0-9]{1,3})$"
)
_NAME_SEPARATORS = re.compile(r"[.\-_/+:]")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
_PREFIXED_TOKEN = re.compile(r"^(.*?\bbearer\.[A-Za-z0-9.-]*?\.)([A-Za-z0-9_=+/-]{8,})$", re.IGNORECASE)
"""Kubernetes' ``base64url.bearer.authorization.k8s.io.<token>``: the token after the marker."""


def redacted(value: str) -> str:
    """What replaces a secret value: its length and a short hash, never the value."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"[redacted len={len(value)} sha256:{digest}]"


def is_redacted(value: str) -> bool:
    """Whether a value is already a redacted form (so that redacting twice changes nothing)."""
    return REDACTED_PATTERN.fullmatch(value.strip()) is not None


def _replace(value: str) -> str:
    return value if not value or is_redacted(value) else redacted(value)


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(name)]


@functools.lru_cache(maxsize=4096)
def is_secret_header(name: str) -> bool:
    """Whether a header's value is a secret (case-insensitive): :data:`SECRET_HEADERS`, or a
    name with a word of :data:`SECRET_HEADER_WORDS`; never ``Sec-WebSocket-*``."""
    lowered = name.strip().lower()
    if lowered in SECRET_HEADERS:
        return True
    if lowered.startswith(KEPT_HEADER_PREFIX) or lowered.startswith(":"):
        return False
    return any(word in SECRET_HEADER_WORDS for word in _words(name.strip()))


def is_secret_param(name: str) -> bool:
    """Whether a query parameter name is token-like (case-insensitive; never ``wslab-cell``)."""
    decoded = unquote(name).strip()
    lowered = decoded.lower()
    if lowered in KEPT_PARAMS:
        return False
    if lowered in SECRET_PARAMS:
        return True
    return any(word in SECRET_WORDS for word in _words(decoded))


def looks_like_credential(item: str) -> bool:
    """Whether one subprotocol item reads as a credential rather than a protocol name.

    A JWT (``eyJ…`` in three or five base64url segments) is one; so is any item of
    :data:`MIN_TOKEN_LENGTH` characters or more unless each of its ``.``/``-``/``_``
    separated parts is a word or a version number (``graphql-transport-ws``,
    ``wamp.2.msgpack.batched``, ``com.example.chat`` are names).
    """
    item = item.strip()
    if not item or is_redacted(item):
        return False
    if _JWT.match(item):
        return True
    if len(item) < MIN_TOKEN_LENGTH or not _TOKEN_CHARS.match(item):
        return False
    parts = [part for part in _NAME_SEPARATORS.split(item) if part]
    return not parts or not all(_NAME_PART.match(part) for part in parts)


def _subprotocol_items(value: str) -> list[tuple[str, str, str]]:
    """(leading space, item, trailing space) of each comma-separated item."""
    items = []
    for piece in value.split(","):
        stripped = piece.strip(" \t")
        start = piece.find(stripped) if stripped else len(piece)
        items.append((piece[:start], stripped, piece[start + len(stripped) :]))
    return items


def subprotocol_secrets(value: str) -> list[str]:
    """The credentials a ``Sec-WebSocket-Protocol`` value carries (see :func:`redact_subprotocols`)."""
    found = []
    after_marker = False
    for _, item, _ in _subprotocol_items(value):
        prefixed = _PREFIXED_TOKEN.match(item)
        if is_redacted(item):
            pass
        elif prefixed:
            found.append(prefixed.group(2))
        elif item and (after_marker or looks_like_credential(item)):
            found.append(item)
        after_marker = item.lower() in SUBPROTOCOL_MARKERS
    return found


def redact_subprotocols(value: str) -> str:
    """A ``Sec-WebSocket-Protocol`` value with its credentials replaced: an item after a
    marker (``access_token``, ``bearer``, ``token``, ``auth``…), an item that
    :func:`looks_like_credential`, the token after Kubernetes' ``…bearer.….`` prefix.
    Protocol names (``chat``, ``wslab.v1``, ``v12.stomp``) and the markers stay."""
    pieces = []
    after_marker = False
    for lead, item, trail in _subprotocol_items(value):
        prefixed = _PREFIXED_TOKEN.match(item)
        if is_redacted(item):
            new = item
        elif prefixed:
            new = prefixed.group(1) + redacted(prefixed.group(2))
        elif item and (after_marker or looks_like_credential(item)):
            new = redacted(item)
        else:
            new = item
        after_marker = item.lower() in SUBPROTOCOL_MARKERS
        pieces.append(f"{lead}{new}{trail}")
    return ",".join(pieces)


def _redact_cookie_pairs(value: str, first_only: bool) -> str:
    """``a=1; b=2`` as ``a=[redacted …]; b=[redacted …]``; for Set-Cookie only the first
    pair (the attributes after it, ``Path``, ``Expires``…, are not secret)."""
    pairs = value.split(";")
    for index, pair in enumerate(pairs):
        if first_only and index > 0:
            break
        name, sep, cookie = pair.partition("=")
        if sep:
            stripped = cookie.strip()
            lead = cookie[: len(cookie) - len(cookie.lstrip())]
            trail = cookie[len(cookie.rstrip()) :]
            pairs[index] = f"{name}={lead}{_replace(stripped)}{trail}" if stripped else pair
        elif pair.strip():
            lead = pair[: len(pair) - len(pair.lstrip())]
            pairs[index] = f"{lead}{_replace(pair.strip())}"
    return ";".join(pairs)


def _cookie_values(value: str, first_only: bool) -> list[str]:
    found = []
    for index, pair in enumerate(value.split(";")):
        if first_only and index > 0:
            break
        name, sep, cookie = pair.partition("=")
        found.append(cookie.strip() if sep else pair.strip())
    return [value for value in found if value and not is_redacted(value)]


def redact_header_value(name: str, value: str) -> str:
    """One header's value as it may be kept."""
    lowered = name.strip().lower()
    if not value:
        return value
    if lowered == SUBPROTOCOL_HEADER:
        return redact_subprotocols(value)
    if lowered in URL_HEADERS:
        return redact_target(value)
    if not is_secret_header(name) or is_redacted(value):
        return value
    if lowered in AUTH_SCHEME_HEADERS:
        scheme = _SCHEME.match(value)
        if scheme:
            return f"{scheme.group(1)}{scheme.group(2)}{_replace(scheme.group(3))}"
    if lowered == "cookie":
        return _redact_cookie_pairs(value, first_only=False)
    if lowered == "set-cookie":
        return _redact_cookie_pairs(value, first_only=True)
    return redacted(value)


def header_secrets(name: str, value: str) -> list[str]:
    """The secret strings one header value carries, as :func:`redact_header_value` replaces them."""
    lowered = name.strip().lower()
    if not value:
        return []
    if lowered == SUBPROTOCOL_HEADER:
        return subprotocol_secrets(value)
    if lowered in URL_HEADERS:
        return _target_secrets(value)
    if not is_secret_header(name) or is_redacted(value):
        return []
    if lowered in AUTH_SCHEME_HEADERS:
        scheme = _SCHEME.match(value)
        if scheme:
            return [scheme.group(3)] if not is_redacted(scheme.group(3)) else []
    if lowered in ("cookie", "set-cookie"):
        return _cookie_values(value, first_only=lowered == "set-cookie")
    return [value]


def redact_query(query: str) -> str:
    """A query string with the values of token-like parameters replaced; separators kept."""
    parts = _QUERY_SPLIT.split(query)
    for index in range(0, len(parts), 2):
        name, sep, value = parts[index].partition("=")
        if sep and value and is_secret_param(name):
            parts[index] = f"{name}={_replace(value)}"
    return "".join(parts)


def redact_target(target: str) -> str:
    """A request target (or any URL) with its token-like query values and userinfo replaced."""
    target = _USERINFO.sub(lambda match: f"{match.group(1)}{_replace(match.group(2))}@", target)
    path, sep, rest = target.partition("?")
    if not sep:
        return target
    query, hash_sep, fragment = rest.partition("#")
    return f"{path}?{redact_query(query)}{hash_sep}{fragment}"


def _target_secrets(target: str) -> list[str]:
    found = []
    userinfo = _USERINFO.match(target)
    if userinfo and userinfo.group(2) and not is_redacted(userinfo.group(2)):
        found.append(userinfo.group(2))
    for match in _PARAM_IN_TEXT.finditer(target):
        value = match.group(2)
        if value and not is_redacted(value) and is_secret_param(match.group(1)):
            found.append(value)
    return found


def _is_continuation(name: str) -> bool:
    return name[:1] in (" ", "\t")


def redact_headers(headers: list[Any]) -> list[list[str]]:
    """``[[name, value], ...]`` with secret values replaced, in the same order and case.

    A continuation line (obsolete line folding: it starts with a space or a
    tab, and :mod:`wslab.probe.wire` keeps it as its own pair) after a secret
    header is redacted too.
    """
    result = []
    secret = False
    for name, value in headers:
        if _is_continuation(name):
            if secret:
                indent = name[: len(name) - len(name.lstrip())]
                name, value = indent + _replace(name.strip()), value
        else:
            secret = is_secret_header(name)
            value = redact_header_value(name, value)
        result.append([name, value])
    return result


def _redact_request_line(line: str) -> str:
    """``METHOD TARGET VERSION``; the target may hold spaces once redacted."""
    method, sep, rest = line.partition(" ")
    target, sep2, version = rest.rpartition(" ")
    if sep and sep2 and method and version.startswith("HTTP/"):
        return f"{method} {redact_target(target)} {version}"
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
        if _is_continuation(line):
            if secret:
                pieces[index] = line[: len(line) - len(line.lstrip())] + _replace(line.strip())
            continue
        name, sep, value = line.partition(":")
        secret = bool(sep) and is_secret_header(name)
        if sep:
            stripped = value.strip(" \t")
            new = redact_header_value(name, stripped)
            if new != stripped:
                lead = value[: len(value) - len(value.lstrip(" \t"))]
                trail = value[len(value.rstrip(" \t")) :]
                pieces[index] = f"{name}:{lead}{new}{trail}"
    return "".join(pieces)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Free text (an error message) with token-like ``name=value`` query pairs replaced,
    and every occurrence of the given secret values (longest first)."""
    text = _PARAM_IN_TEXT.sub(
        lambda m: (
            f"{m.group(1)}={_replace(m.group(2))}"
            if m.group(2) and is_secret_param(m.group(1))
            else m.group(0)
        ),
        text,
    )
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SWEPT and not REDACTED_PATTERN.search(secret):
            text = _replace_outside_redacted(text, secret)
    return text


def _replace_outside_redacted(text: str, secret: str) -> str:
    """``text`` with ``secret`` replaced, leaving redacted forms already in it alone."""
    pieces = REDACTED_PATTERN.split(text)
    forms = REDACTED_PATTERN.findall(text)
    out = [pieces[0].replace(secret, redacted(secret))]
    for form, piece in zip(forms, pieces[1:], strict=True):
        out += [form, piece.replace(secret, redacted(secret))]
    return "".join(out)


def _variants(value: str) -> set[str]:
    """A value as it was received (latin-1) and as websockets quotes it in errors (UTF-8)."""
    variants = {value, unquote(value)}
    with contextlib.suppress(UnicodeEncodeError):
        variants.add(value.encode("latin-1").decode("utf-8", errors="backslashreplace"))
    return variants


def _request_dicts(record: dict[str, Any]) -> list[dict[str, Any]]:
    requests = [record.get(key) or {} for key in ("request", "http2_request")]
    return requests + [stream for stream in record.get("http2_streams") or [] if isinstance(stream, dict)]


def secret_values(record: dict[str, Any]) -> list[str]:
    """The secret strings a record holds: secret header values (the credentials after an
    auth scheme, each cookie's value, subprotocol credentials, the whole value of any
    other secret header) and token-like query values."""
    found: set[str] = set()
    requests = _request_dicts(record)
    headers = [pair for request in requests for pair in request.get("headers") or []]
    raw = record.get("raw_head") or ""
    for line in _LINE_END.split(raw)[2::2]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append([name, value.strip()])
    for name, value in headers:
        found.update(header_secrets(name, value))
    targets = [request.get("target") or "" for request in requests]
    targets.append(_LINE_END.split(raw, maxsplit=1)[0])
    for target in targets:
        found.update(_target_secrets(target))
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
    in which no secret value remains: ``raw_head``, ``request``, ``http2_request``
    and each of ``http2_streams`` (target, path, headers), ``response`` headers and
    ``error`` text. Undecoded HTTP/2 frames (``http2_frames``) are dropped: HPACK
    hides what they hold."""
    secrets = secret_values(record)
    result = {key: value for key, value in record.items() if key != "http2_frames"}
    if isinstance(record.get("raw_head"), str):
        result["raw_head"] = redact_raw_head(record["raw_head"])
    for key in ("request", "http2_request"):
        if record.get(key):
            result[key] = _redact_request(record[key])
    if record.get("http2_streams"):
        result["http2_streams"] = [_redact_request(stream) for stream in record["http2_streams"]]
    response = record.get("response")
    if response:
        result["response"] = {**response, "headers": redact_headers(response.get("headers") or [])}
    error = record.get("error")
    if error:
        result["error"] = {
            key: redact_text(value, secrets) if isinstance(value, str) else value
            for key, value in error.items()
        }
    return result
