"""A loaded YAML document checked against a JSON Schema, with errors at file:line.

Scenario files and topology folders are written by people: the first schema
error is reported as one line naming the file, the line of the culprit (an
unexpected key's own line) and what is wrong, in words rather than in the
schema's terms where they would confuse.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from .errors import InputError
from .safe_yaml import Document

_PASSED: dict[tuple[int, str], dict[str, Any]] = {}
"""(schema, document digest) pairs that passed, each holding its schema (so that its id is not
reused): a warm lab's fork server checks every shipped file once, and the runs it forks skip
what has not changed since (lab/forkserver.py)."""


def check_against(document: Document, schema: dict[str, Any], error: type[InputError]) -> None:
    """Raise ``error`` (file, line, message) for the document's first schema error, if any."""
    key = (id(schema), document.digest)
    if document.digest and key in _PASSED:
        return
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(document.data),
        key=lambda found: document.line_of(found.absolute_path) or 0,
    )
    if errors:
        first = errors[0]
        where = tuple(first.absolute_path)
        line = document.line_of(_culprit(first, where))
        raise error(document.path, line, f"{where_in(where)}: {_schema_message(first)}")
    _PASSED[key] = schema


def where_in(path: tuple) -> str:
    """A JSON path as a person reads it: ``scenarios[0].steps[2].connect``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "top level"


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.context:
        error = jsonschema.exceptions.best_match(error.context)
    if error.validator in ("minProperties", "maxProperties") and "steps" in error.absolute_path:
        return "a step has exactly one action (connect, raw, tcp_probe, send, ...)"
    if error.validator == "not" and isinstance(error.instance, str):
        return f"{_shown(error.instance)} holds a CR, LF or NUL, which would split or end the line"
    if error.validator in ("maxLength", "maxItems", "maximum"):
        return f"{_shown(error.instance)} is over the limit: {error.message.split(' is ', 1)[-1]}"
    return error.message


def _shown(value: Any) -> str:
    """A value quoted for an error message: escaped, and cut when long."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:45]}... ({len(text)} characters)"


def _culprit(error: jsonschema.ValidationError, where: tuple) -> tuple:
    """The path whose line best shows the error: an unexpected key's own line, if any."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = [key for key in error.instance if key not in error.schema.get("properties", {})]
        if extra:
            return (*where, extra[0])
    return where
