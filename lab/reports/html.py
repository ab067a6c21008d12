"""A self-contained HTML report: the matrix, filters, and every cell's evidence on a click.

:func:`render_html` reads a :class:`~lab.results.RunResult` and returns one HTML
page with its CSS, script and data inline (no external URL), so it opens
offline from a file. The page is rendered by Jinja2 with autoescaping on; each
cell's evidence travels as JSON in a ``<script type="application/json">`` tag
(with ``<``, ``>`` and ``&`` escaped, so a header value holding ``</script>``
cannot end it) and the drill-down is built from it with DOM text nodes only.

Like the terminal renderer, it decides nothing: verdicts, summaries and
diagnoses come from the results. It only lays the evidence side by side, e.g.
the headers the server received against those the client sent
(:func:`header_diff`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..results import ERROR, FAIL, PASS, UNAVAILABLE, CellResult, RunResult

TEMPLATES = Path(__file__).resolve().parent / "templates"

# outcome -> (symbol, css class, label). Outcomes not listed get UNKNOWN_STYLE.
OUTCOME_STYLE: dict[str, tuple[str, str, str]] = {
    PASS: ("✓", "pass", "pass"),
    FAIL: ("✗", "fail", "fail"),
    ERROR: ("!", "error", "lab error"),
    UNAVAILABLE: ("–", "unavailable", "unavailable"),
    "blocked": ("⊘", "blocked", "blocked"),
    "informational": ("ℹ", "info", "informational"),
    "info": ("ℹ", "info", "informational"),
}
UNKNOWN_STYLE = ("?", "unknown", "")
LEGEND_ORDER = (PASS, FAIL, ERROR, UNAVAILABLE, "blocked", "informational")

SAME, ADDED, REMOVED, REWRITTEN = "same", "added", "removed", "rewritten"

CONFIG_MAX_CHARS = 40_000
CELL_LOG_MAX_LINES = 60
CELL_ID = re.compile(r"[?&]wslab-cell=([A-Za-z0-9_-]+)")


def outcome_style(outcome: str) -> dict[str, str]:
    """Symbol, CSS class and label for an outcome; unknown outcomes get a neutral '?'."""
    symbol, css, label = OUTCOME_STYLE.get(outcome, UNKNOWN_STYLE)
    return {"outcome": outcome, "symbol": symbol, "css": css, "label": label or outcome}


def header_diff(sent: list[list[str]] | None, received: list[list[str]] | None) -> list[dict[str, Any]]:
    """The headers that arrived, marked against the headers that were sent.

    Names compare case-insensitively; values exactly, all values of a name
    joined by ', '. The result lists the received headers in arrival order,
    each ``same``, ``added`` (the client did not send that name) or
    ``rewritten`` (it did, with another value, given as ``was``), then the
    client's headers whose name never arrived, marked ``removed``.
    """
    sent, received = sent or [], received or []

    def grouped(headers: list[list[str]]) -> dict[str, str]:
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


def request_line_diff(sent: dict[str, Any] | None, received: dict[str, Any] | None) -> dict[str, str]:
    """The request-line parts (method, target, version) that differ: part -> what the client sent."""
    if not sent or not received:
        return {}
    return {
        part: sent[part]
        for part in ("method", "target", "version")
        if sent.get(part) is not None and sent.get(part) != received.get(part)
    }


def script_json(data: Any) -> Markup:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' survives unescaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def _read_text(path: str | None, limit: int = CONFIG_MAX_CHARS) -> tuple[str | None, bool]:
    """A file's text (up to ``limit`` characters) and whether it was cut, or (None, False)."""
    if not path:
        return None, False
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None, False
    return text[:limit], len(text) > limit


def _cell_ids(cell: CellResult) -> set[str]:
    """The correlation ids of a cell: from the server's records and the client's target."""
    ids = {conn["cell"] for conn in cell.server if conn.get("cell")}
    sent = (cell.client or {}).get("sent") or {}
    match = CELL_ID.search(sent.get("target") or "")
    if match:
        ids.add(match.group(1))
    return ids


def _log_lines(cell: CellResult, log: list[str] | None) -> list[str]:
    """The proxy log's lines that name this cell's correlation id."""
    ids = _cell_ids(cell)
    if not log or not ids:
        return []
    lines = [line for line in log if any(cell_id in line for cell_id in ids)]
    return lines[-CELL_LOG_MAX_LINES:]


TOPOLOGY_DEFAULTS = {
    "title": "",
    "proxy": "",
    "proxy_version": "",
    "status": "ready",
    "detail": "",
    "log_tail": "",
}
SCENARIO_DEFAULTS = {"suite": "", "title": ""}


def _topology_data(topology: dict[str, Any]) -> dict[str, Any]:
    config, truncated = _read_text(topology.get("config"))
    return {
        **TOPOLOGY_DEFAULTS,
        "config": None,
        **topology,
        "config_text": config,
        "config_truncated": truncated,
    }


def _show(value: Any) -> str:
    """A check's expected/actual value as text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _exchange_for(client: dict[str, Any], request: dict[str, Any] | None) -> dict[str, Any]:
    """The client's side of this connection (``sent``, ``received``): a browser page makes
    several requests (the page, its /favicon.ico), matched by path; other clients make one."""
    for exchange in (client.get("browser") or {}).get("requests", []):
        if request and exchange["sent"]["path"] == request["path"]:
            return exchange
    return client


def _cell_data(cell: CellResult, log: list[str] | None) -> dict[str, Any]:
    client = cell.client or {}
    server = []
    for conn in sorted(cell.server, key=lambda c: c.get("opened_at") or 0):
        # Over h2c the request is a stream inside the connection, not its first line.
        request = conn.get("http2_request") or conn.get("request")
        exchange = _exchange_for(client, request)
        sent = exchange.get("sent")
        server.append(
            {
                **conn,
                "request": request,
                "client_sent": sent,
                "client_received": exchange.get("received"),
                "header_diff": header_diff(sent["headers"], request["headers"]) if sent and request else None,
                "line_diff": request_line_diff(sent, request),
            }
        )
    return {
        "topology": cell.topology,
        "scenario": cell.scenario,
        "suite": cell.suite,
        "outcome": outcome_style(cell.outcome),
        "summary": cell.summary,
        "duration": cell.duration,
        "client": cell.client,
        "server": server,
        "checks": [
            {
                **check,
                "expected_text": _show(check.get("expected")),
                "actual_text": _show(check.get("actual")),
            }
            for check in cell.checks
        ],
        "diagnosis": cell.diagnosis,
        "error": cell.error,
        "log_tail": cell.log_tail,
        "log_lines": _log_lines(cell, log),
    }


def _logs(result: RunResult) -> dict[str, list[str]]:
    logs = {}
    for topology in result.topologies:
        text, _ = _read_text(topology.get("log"), limit=5_000_000)
        if text:
            logs[topology["name"]] = text.splitlines()
    return logs


def _components(result: RunResult) -> list[tuple[str, str]]:
    components = dict(result.components)
    rows = [
        ("websockets (server)", components.pop("websockets_server", "")),
        ("websockets (client)", components.pop("websockets_client", "")),
        ("python", components.pop("python", "")),
    ]
    proxies = components.pop("proxies", {}) or {}
    rows += [(str(kind), str(version)) for kind, version in proxies.items()]
    rows += [(str(key), _show(value)) for key, value in components.items()]
    return [(name, str(version)) for name, version in rows if version]


def _options(result: RunResult) -> list[tuple[str, str]]:
    rows = []
    for key, value in result.options.items():
        text = _show(value)
        if key == "time_scale" and isinstance(value, int | float) and 0 < value < 1:
            text += f" (accelerated: limits {1 / value:g}× shorter)"
        elif key == "time_scale" and value == 1:
            text += " (faithful)"
        rows.append((str(key), text))
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


def render_html(result: RunResult) -> str:
    """The whole report as one self-contained HTML page."""
    by_key = {(cell.topology, cell.scenario): index for index, cell in enumerate(result.cells)}
    logs = _logs(result)
    topologies = [_topology_data(topology) for topology in result.topologies]
    scenarios = [{**SCENARIO_DEFAULTS, **scenario} for scenario in result.scenarios]
    rows = []
    for scenario in scenarios:
        cells = []
        for column, topology in enumerate(result.topologies):
            index = by_key.get((topology["name"], scenario["id"]))
            if index is None:
                cells.append({"index": None, "column": column, "topology": topology["name"]})
                continue
            cell = result.cells[index]
            cells.append(
                {
                    "index": index,
                    "column": column,
                    "topology": topology["name"],
                    "summary": cell.summary,
                    **outcome_style(cell.outcome),
                }
            )
        rows.append({"scenario": scenario, "cells": cells})

    counts = Counter(cell.outcome for cell in result.cells)
    known = {outcome_style(outcome)["css"] for outcome in LEGEND_ORDER}
    others = sorted(outcome for outcome in counts if outcome_style(outcome)["css"] not in known)
    legend = [outcome_style(outcome) for outcome in (*LEGEND_ORDER, *others)]
    order = {outcome: position for position, outcome in enumerate((*LEGEND_ORDER, *others))}
    ordered = sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    data = {
        "topologies": {topology["name"]: topology for topology in topologies},
        "scenarios": {scenario["id"]: scenario for scenario in scenarios},
        "cells": [_cell_data(cell, logs.get(cell.topology)) for cell in result.cells],
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
            counts=[(outcome_style(outcome), count) for outcome, count in ordered],
            legend=legend,
            data=script_json(data),
        )
    )
