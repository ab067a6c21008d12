"""A self-contained HTML report: the matrix, filters, and every cell's evidence on a click.

:func:`render_html` reads a :class:`~wslab.records.Run` and returns one HTML
page with its CSS, script and data inline (no external URL), so it opens
offline from a file. The page is rendered by Jinja2 with autoescaping on; each
cell's evidence travels as JSON in a ``<script type="application/json">`` tag
(with ``<``, ``>`` and ``&`` escaped, so a header value holding ``</script>``
cannot end it) and the drill-down is built from it with DOM text nodes only.

Like the terminal renderer, it decides nothing and reads nothing but the run:
verdicts, summaries, diagnoses, the proxies' configs and log lines all come
from the results. It only lays the evidence side by side, e.g. the headers
the server received against those the client sent (:func:`header_diff`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..records import STYLES, BrowserRequest, Cell, Header, Outcome, RequestHead, Run, Transcript

TEMPLATES = Path(__file__).resolve().parent / "templates"

SAME, ADDED, REMOVED, REWRITTEN = "same", "added", "removed", "rewritten"


def outcome_style(outcome: Outcome) -> dict[str, str]:
    """Symbol, CSS class and label of an outcome, for the template and the script."""
    style = STYLES[outcome]
    return {"outcome": outcome.value, "symbol": style.symbol, "css": style.css, "label": style.label}


def header_diff(sent: list[Header] | None, received: list[Header] | None) -> list[dict[str, Any]]:
    """The headers that arrived, marked against the headers that were sent.

    Names compare case-insensitively; values exactly, all values of a name
    joined by ', '. The result lists the received headers in arrival order,
    each ``same``, ``added`` (the client did not send that name) or
    ``rewritten`` (it did, with another value, given as ``was``), then the
    client's headers whose name never arrived, marked ``removed``.
    """
    sent, received = sent or [], received or []

    def grouped(headers: list[Header]) -> dict[str, str]:
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name.lower(), []).append(value)
        return {name: ", ".join(joined) for name, joined in values.items()}

    before, after = grouped(sent), grouped(received)
    rows: list[dict[str, Any]] = []
    for name, value in received:
        key = name.lower()
        if key not in before:
            rows.append({"name": name, "value": value, "status": ADDED, "was": None})
        elif before[key] != after[key]:
            rows.append({"name": name, "value": value, "status": REWRITTEN, "was": before[key]})
        else:
            rows.append({"name": name, "value": value, "status": SAME, "was": None})
    for name, value in sent:
        if name.lower() not in after:
            rows.append({"name": name, "value": value, "status": REMOVED, "was": None})
    return rows


def request_line_diff(sent: RequestHead | None, received: RequestHead | None) -> dict[str, str]:
    """The request-line parts (method, target, version) that differ: part -> what the client sent."""
    if sent is None or received is None:
        return {}
    return {
        part: getattr(sent, part)
        for part in ("method", "target", "version")
        if getattr(sent, part) != getattr(received, part)
    }


def script_json(data: Any) -> Markup:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' survives unescaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


SCENARIO_DEFAULTS = {"suite": "", "title": ""}


def _show(value: Any) -> str:
    """A check's expected/actual value as text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _exchange_for(client: Transcript, request: RequestHead | None) -> Transcript | BrowserRequest:
    """The client's side of this connection (``sent``, ``received``): a browser page makes
    several requests (the page, its /favicon.ico), matched by path; other clients make one."""
    for exchange in client.browser.requests if client.browser else []:
        if request and exchange.sent.path == request.path:
            return exchange
    return client


def _cell_data(cell: Cell) -> dict[str, Any]:
    client = cell.client or Transcript()
    server = []
    for conn in sorted(cell.server, key=lambda c: c.opened_at):
        # Over h2c the request is a stream inside the connection, not its first line.
        request = conn.request_seen
        exchange = _exchange_for(client, request)
        sent = exchange.sent
        server.append(
            {
                **conn.model_dump(mode="json"),
                "request": request.model_dump(mode="json") if request else None,
                "client_sent": sent.model_dump(mode="json") if sent else None,
                "client_received": exchange.received.model_dump(mode="json") if exchange.received else None,
                "header_diff": header_diff(sent.headers, request.headers) if sent and request else None,
                "line_diff": request_line_diff(sent, request),
            }
        )
    return {
        **cell.model_dump(mode="json", include={"topology", "scenario", "suite", "summary", "duration"}),
        "outcome": outcome_style(cell.outcome),
        "client": cell.client.model_dump(mode="json") if cell.client else None,
        "server": server,
        "checks": [
            {
                **check.model_dump(mode="json"),
                "expected_text": _show(check.expected),
                "actual_text": _show(check.actual),
            }
            for check in cell.checks
        ],
        "diagnosis": cell.diagnosis.model_dump(mode="json") if cell.diagnosis else None,
        "error": cell.error,
        "log_tail": cell.log_tail,
        "proxy_log": cell.proxy_log,
    }


def _components(result: Run) -> list[tuple[str, str]]:
    components = result.components
    rows = [
        ("websockets (server)", components.websockets_server),
        ("websockets (client)", components.websockets_client),
        ("python", components.python),
        *components.proxies.items(),
        ("browser", components.browser or ""),
    ]
    return [(name, version) for name, version in rows if version]


def _options(result: Run) -> list[tuple[str, str]]:
    rows = []
    for key, value in result.options.model_dump().items():
        text = _show(value)
        if key == "time_scale" and 0 < value < 1:
            text += f" (accelerated: limits {1 / value:g}× shorter)"
        elif key == "time_scale" and value == 1:
            text += " (faithful)"
        rows.append((key, text))
    return rows


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(result: Run) -> str:
    """The whole report as one self-contained HTML page."""
    by_key = {(cell.topology, cell.scenario): index for index, cell in enumerate(result.cells)}
    topologies = [topology.model_dump(mode="json") for topology in result.topologies]
    scenarios = [{**SCENARIO_DEFAULTS, **scenario.model_dump(mode="json")} for scenario in result.scenarios]
    rows = []
    for scenario in scenarios:
        cells = []
        for column, topology in enumerate(result.topologies):
            index = by_key.get((topology.name, scenario["id"]))
            if index is None:
                cells.append({"index": None, "column": column, "topology": topology.name})
                continue
            cell = result.cells[index]
            cells.append(
                {
                    "index": index,
                    "column": column,
                    "topology": topology.name,
                    "summary": cell.summary,
                    **outcome_style(cell.outcome),
                }
            )
        rows.append({"scenario": scenario, "cells": cells})

    counts = Counter(cell.outcome for cell in result.cells)
    data = {
        "topologies": {topology["name"]: topology for topology in topologies},
        "scenarios": {scenario["id"]: scenario for scenario in scenarios},
        "cells": [_cell_data(cell) for cell in result.cells],
    }
    suites = list(dict.fromkeys(scenario["suite"] or "" for scenario in scenarios))
    tiers = list(dict.fromkeys(str(s["tier"]) for s in scenarios if s.get("tier") is not None))
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            result=result,
            components=_components(result),
            options=_options(result),
            topologies=topologies,
            not_running=[topology for topology in topologies if topology["status"] != "ready"],
            rows=rows,
            suites=suites,
            tiers=tiers,
            counts=[(outcome_style(outcome), counts[outcome]) for outcome in STYLES if counts[outcome]],
            legend=[outcome_style(outcome) for outcome in STYLES],
            data=script_json(data),
        )
    )
