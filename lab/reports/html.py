"""A self-contained HTML report: the answer first, then the matrix, every cell's evidence on a click.

:func:`render_html` reads a :class:`~wslab.records.Run` and returns one HTML
page with its CSS, script and data inline (no external URL), so it opens
offline from a file. The page reads like the terminal report: a summary band
(the run's :class:`~wslab.verdict.Verdict`: which topologies carry WebSockets,
how the others fail, what plain HTTP makes the server log, every cause with its
count; a slot for a deployment recommendation), then the matrix with
topologies as rows grouped by role and scenarios as short columns, so a full
run fits a laptop's width, then the run's options and components, folded.

The page is rendered by Jinja2 with autoescaping on; each cell's evidence
travels as JSON in a ``<script type="application/json">`` tag (with ``<``,
``>`` and ``&`` escaped, so a header value holding ``</script>`` cannot end
it) and the drill-down, like the band's highlights, is built from it with DOM
text nodes only.

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

from ..deployment_choice import Choice, recommend
from ..records import (
    STYLES,
    BrowserRequest,
    Cell,
    Header,
    Outcome,
    RequestHead,
    Run,
    ScenarioRecord,
    Transcript,
)
from ..verdict import CLIENT_SUITE, GROUPS, CauseGroup, Verdict, judge_run
from .terminal import compact
from .timeline import fault_timeline, timeline

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


def _exchange_for(client: Transcript, request: RequestHead | None) -> Transcript | BrowserRequest | None:
    """The client's side of this connection (``sent``, ``received``): a browser page makes
    several requests (the page, its /favicon.ico; each socket of a reconnect loop), matched by
    their WebSocket key, else by path; other clients make one. None: a connection of another
    client of the cell (a lifecycle's halfway new client or websockets' reconnection, whose
    requests the transcript does not keep), told apart by its WebSocket key."""
    exchanges = client.browser.requests if client.browser else []
    key = request.header("Sec-WebSocket-Key") if request else None
    for exchange in exchanges:
        if key and exchange.sent.header("Sec-WebSocket-Key") == key:
            return exchange
    for exchange in exchanges:
        if request and exchange.sent.path == request.path:
            return exchange
    own = client.sent.header("Sec-WebSocket-Key") if client.sent and not exchanges else None
    if key and own and key != own:
        return None
    return client


def _cell_data(cell: Cell) -> dict[str, Any]:
    client = cell.client or Transcript()
    server = []
    for conn in sorted(cell.server, key=lambda c: c.opened_at):
        # Over h2c the request is a stream inside the connection, not its first line.
        request = conn.request_seen
        exchange = _exchange_for(client, request)
        sent = exchange.sent if exchange is not None else None
        received = exchange.received if exchange is not None else None
        server.append(
            {
                **conn.model_dump(mode="json"),
                "request": request.model_dump(mode="json") if request else None,
                "other_client": exchange is None,
                "client_sent": sent.model_dump(mode="json") if sent else None,
                "client_received": received.model_dump(mode="json") if received else None,
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
        "timeline": timeline(client.lifecycle) if client.lifecycle else fault_timeline(client.faults),
        "error": cell.error,
        "log_tail": cell.log_tail,
        "proxy_log": cell.proxy_log,
        "app_log": [line.model_dump(mode="json") for line in cell.app_log],
    }


def _components(result: Run) -> list[tuple[str, str]]:
    components = result.components
    rows = [
        ("server", result.server_description()),
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


class Marks:
    """Sets of cells the summary band can highlight in the matrix, numbered in order of need."""

    def __init__(self, result: Run) -> None:
        self.index = {(cell.topology, cell.scenario): i for i, cell in enumerate(result.cells)}
        self.sets: list[list[int]] = []

    def add(self, keys: list[tuple[str, str]]) -> int | None:
        """The number of a set of (topology, scenario) cells, or None when none is in the run."""
        cells = sorted({self.index[key] for key in keys if key in self.index})
        if not cells:
            return None
        self.sets.append(cells)
        return len(self.sets) - 1


def _short(scenario: ScenarioRecord) -> str:
    return scenario.short or scenario.id


def _client_cells(result: Run, names: list[str]) -> list[tuple[str, str]]:
    """The real WebSocket clients' cells of these topologies: what says whether they carry WebSockets."""
    wanted = set(names)
    return [
        (c.topology, c.scenario) for c in result.cells if c.topology in wanted and c.suite == CLIENT_SUITE
    ]


def _plain_http_cells(result: Run, names: list[str], error: str) -> list[tuple[str, str]]:
    """The cells of these topologies where a request without an upgrade made the server log ``error``."""
    wanted = set(names)
    return [
        (cell.topology, cell.scenario)
        for cell in result.cells
        if cell.topology in wanted
        and cell.client
        and cell.client.sent
        and not cell.client.sent.asks_upgrade
        and any(connection.error and connection.error.text == error for connection in cell.server)
    ]


def _where(cells: dict[str, list[str]], shorts: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"topology": topology, "scenarios": [shorts.get(s, s) for s in scenarios]}
        for topology, scenarios in cells.items()
    ]


def _cause(group: CauseGroup, kind: str, shorts: dict[str, str], marks: Marks) -> dict[str, Any]:
    keys = [(topology, scenario) for topology, scenarios in group.cells.items() for scenario in scenarios]
    return {
        "kind": kind,
        "rule": group.rule,
        "count": group.count,
        "topologies": len(group.cells),
        "server_errors": group.server_errors,
        "cause": group.cause,
        "fix": group.fix,
        "fix_as": None,
        "where": _where(group.cells, shorts),
        "mark": marks.add(keys),
        **outcome_style(Outcome.FAIL if kind == "fail" else Outcome.ERROR),
    }


def summary_band(result: Run, verdict: Verdict, marks: Marks) -> dict[str, Any]:
    """What the band at the top shows: the verdict in parts, then every cause with its count.

    The carrying topologies come by role (``of``: how many of that role were judged, so a
    group where all carry can say so without its names).

    Each part that names cells carries ``mark``, the number of its set in :class:`Marks`
    (None when it names none), so a click can highlight those cells in the matrix. A fix
    shared by several causes is given once: the later ones get ``fix_as``, the first's rule.
    """
    shorts = {s.id: _short(s) for s in result.scenarios}
    ran = [t for t in verdict.topologies if t.carries is not None]
    carrying = verdict.carrying()
    groups = []
    for role, title in [*GROUPS.items(), *[(t.role, t.role) for t in ran if t.role not in GROUPS]]:
        judged = [t for t in ran if t.role == role]
        names = [t.name for t in judged if t.carries]
        if names and role not in [group["role"] for group in groups]:
            groups.append({"role": role, "title": title, "names": names, "of": len(judged)})
    causes = [_cause(group, "fail", shorts, marks) for group in verdict.causes]
    first_with: dict[str, str] = {}
    for cause in causes:
        if cause["fix"] in first_with:
            cause["fix_as"] = first_with[cause["fix"]]
        else:
            first_with[cause["fix"]] = cause["rule"]
    causes += [_cause(group, "error", shorts, marks) for group in verdict.lab_errors]
    unmeasured: dict[str, list[str]] = {}
    for cell in result.cells:
        if cell.outcome == Outcome.NOT_MEASURED:
            unmeasured.setdefault(cell.topology, []).append(cell.scenario)
    if unmeasured:
        first = next(c for c in result.cells if c.outcome == Outcome.NOT_MEASURED)
        keys = [(topology, scenario) for topology, scenarios in unmeasured.items() for scenario in scenarios]
        causes.append(
            {
                "kind": "not-measured",
                "rule": STYLES[Outcome.NOT_MEASURED].label,
                "count": len(keys),
                "topologies": len(unmeasured),
                "server_errors": [],
                "cause": first.error or "",
                "fix": "",
                "fix_as": None,
                "where": _where(unmeasured, shorts),
                "mark": marks.add(keys),
                **outcome_style(Outcome.NOT_MEASURED),
            }
        )
    return {
        "ran": len(ran),
        "carrying": {
            "count": len(carrying),
            "groups": groups,
            "mark": marks.add(_client_cells(result, carrying)),
        },
        "not_carrying": sum(t.carries is False for t in ran),
        "failing": [
            {"how": how, "names": names, "mark": marks.add(_client_cells(result, names))}
            for how, names in verdict.failing().items()
        ],
        "plain_http": [
            {"error": error, "names": names, "mark": marks.add(_plain_http_cells(result, names, error))}
            for error, names in verdict.plain_http().items()
        ],
        "not_judged": [t.name for t in verdict.topologies if t.carries is None],
        "causes": causes,
        "sentences": verdict.sentences(),
    }


def matrix_layout(result: Run, verdict: Verdict) -> dict[str, Any]:
    """The matrix as the template lays it out: topologies down in groups, scenarios across.

    ``columns`` are the scenarios in run order, each with its short code and ``band``, the
    number of its entry in ``suites``: the consecutive runs of one suite over the columns (the
    header row above the codes); ``groups`` the
    topologies by role in the verdict's order (:data:`wslab.verdict.GROUPS`), each row with one
    entry per column: the cell's index in the run (None if it was not run), its symbol and its
    summary, whole and compacted to fit a narrow column.
    """
    by_key = {(cell.topology, cell.scenario): index for index, cell in enumerate(result.cells)}
    records = {topology.name: topology for topology in result.topologies}
    columns = [
        {"id": s.id, "short": _short(s), "suite": s.suite or "", "tier": s.tier, "title": s.title or s.id}
        for s in result.scenarios
    ]
    suites: list[dict[str, Any]] = []
    for column in columns:
        if suites and suites[-1]["suite"] == column["suite"]:
            suites[-1]["span"] += 1
        else:
            suites.append({"suite": column["suite"], "span": 1})
        column["band"] = len(suites) - 1
    groups: list[dict[str, Any]] = []
    for topology in verdict.topologies:
        if not groups or groups[-1]["role"] != topology.role:
            groups.append(
                {"role": topology.role, "title": GROUPS.get(topology.role, topology.role), "rows": []}
            )
        record = records[topology.name]
        cells = []
        for column in columns:
            index = by_key.get((topology.name, column["id"]))
            if index is None:
                cells.append({"index": None, "scenario": column["id"]})
                continue
            cell = result.cells[index]
            cells.append(
                {
                    "index": index,
                    "scenario": column["id"],
                    "summary": cell.summary,
                    "short": compact(cell.summary),
                    **outcome_style(cell.outcome),
                }
            )
        groups[-1]["rows"].append(
            {
                "topology": record.model_dump(
                    mode="json", include={"name", "title", "proxy", "proxy_version", "status"}
                ),
                "carries": topology.carries,
                "how": topology.how,
                "cells": cells,
            }
        )
    return {"columns": columns, "suites": suites, "groups": groups}


def _recommendation(recommendation: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if recommendation is None:
        return []
    return [recommendation] if isinstance(recommendation, str) else [str(line) for line in recommendation]


def _distinct_reasons(choices: tuple[Choice, ...] | list[Choice]) -> list[str]:
    """Each choice's first reason that another choice has not already given, named by its app:
    the same "real WebSocket clients pass" twice says nothing about why they differ."""
    shown: list[str] = []
    lines = []
    for choice in choices:
        reason = next((r.text for r in choice.reasons if r.text not in shown), None)
        if reason is not None:
            shown.append(reason)
            lines.append(f"{choice.app}: {reason}")
    return lines


def render_html(result: Run, recommendation: str | list[str] | tuple[str, ...] | None = None) -> str:
    """The whole report as one self-contained HTML page.

    ``recommendation`` fills the band's recommendation slot (the template's ``recommendation``
    block) when a deployment choice was made for this run, e.g. from platform profiles: plain
    text, a headline then its reasons, one string each; escaped like all the rest. Without
    it, the recommendation is computed from the run when Replit's deployment profiles ran in
    it (:func:`wslab.deployment_choice.recommend`), else the slot is left out.
    """
    if recommendation is None and (found := recommend(result)) is not None:
        recommendation = [found.headline(), *_distinct_reasons(found.choices)]
    verdict = judge_run(result)
    marks = Marks(result)
    band = summary_band(result, verdict, marks)
    topologies = [topology.model_dump(mode="json") for topology in result.topologies]
    scenarios = [{**SCENARIO_DEFAULTS, **scenario.model_dump(mode="json")} for scenario in result.scenarios]
    counts = Counter(cell.outcome for cell in result.cells)
    data = {
        "topologies": {topology["name"]: topology for topology in topologies},
        "scenarios": {scenario["id"]: scenario for scenario in scenarios},
        "cells": [_cell_data(cell) for cell in result.cells],
        "marks": marks.sets,
    }
    layout = matrix_layout(result, verdict)
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
            band=band,
            events=[event.sentence() for event in verdict.events],
            client_suite=CLIENT_SUITE,
            recommendation=_recommendation(recommendation),
            columns=layout["columns"],
            suite_spans=layout["suites"],
            groups=layout["groups"],
            suites=suites,
            tiers=tiers,
            counts=[(outcome_style(outcome), counts[outcome]) for outcome in STYLES if counts[outcome]],
            legend=[outcome_style(outcome) for outcome in STYLES],
            data=script_json(data),
        )
    )
