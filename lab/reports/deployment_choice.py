"""The comparison page as Markdown (printed in the terminal through rich).

One table, the options as columns: the measured rows with the symbols of ``wslab run``, the
limits beside their configured values, the facts; each figure tagged with how it is known. Then
the recommendation, the causes per option, each distinct fix once, and the sources.

Everything from the run (option names and platforms, which a --target URL sets, the cells'
summaries, the server's errors, causes, fixes, facts and sources) goes through
:mod:`wslab.reports.safe_text`. This module decides nothing: the figures, their statuses and
the recommendation are :mod:`wslab.deployment_choice`'s.
"""

from __future__ import annotations

import re

from ..deployment_choice import (
    FACT_ROWS,
    LIFECYCLE_ROWS,
    LIMIT_ROWS,
    REPLIT_DEPLOYMENTS,
    ROW_CLIENTS,
    STATUSES,
    TRAFFIC_ROWS,
    Comparison,
    Event,
    Limit,
    Option,
    Reason,
    Recommendation,
    Seen,
    Traffic,
    join_and,
)
from ..records import STYLES, Outcome
from ..topology import SCALE_TOLERANCE
from .safe_text import markdown_block, markdown_code, markdown_text

MEASURED = "[measured]"
_UNIT = re.compile(r"(\d) (s\b)")


def _tags(text: str) -> str:
    """Escaped text with its status tags ('[inferred]') unescaped: the same when rendered, and
    the raw Markdown reads like the rendered page."""
    for status in STATUSES:
        text = text.replace(f"\\[{status}\\]", f"[{status}]")
    return text


def _figure(text: str) -> str:
    """A figure for a table cell, its durations written '300s' as in `wslab run`'s cells: a
    narrow column then never wraps between a number and its unit."""
    return _UNIT.sub(r"\1\2", _tags(markdown_text(text)))


def _symbol(outcome: Outcome | None) -> str:
    return STYLES[outcome].symbol if outcome is not None else STYLES[Outcome.UNAVAILABLE].symbol


def _seen(seen: Seen) -> str:
    return f"{_symbol(seen.outcome)} {markdown_text(seen.summary)}"


def _clients(option: Option) -> str:
    if option.carries is None:
        return "–"
    outcome = Outcome.PASS if option.carries else Outcome.FAIL
    text = f"{_symbol(outcome)} {option.clients_passed}/{option.clients_total} pass"
    if option.clients_failed is not None:
        text += f" ({markdown_text(option.clients_failed.summary)})"
    return text


def _traffic(traffic: Traffic | None) -> str:
    if traffic is None or traffic.plain is None:
        return "–"
    text = _seen(traffic.plain)
    if traffic.plain.server_error:
        text += f", logs {markdown_code(traffic.plain.server_error, table=True)}"
    fixed = traffic.fixed
    if fixed is not None and (fixed.outcome, fixed.summary) != (traffic.plain.outcome, traffic.plain.summary):
        text += f"; fixed: {_seen(fixed)}"
    return text


def _limit(limit: Limit | None) -> str:
    if limit is None or (limit.cell is None and limit.configured is None):
        return "–"
    text = _figure(limit.text())
    if limit.agrees is False:
        text = f"**{text}**"
    return f"{_symbol(limit.cell.outcome)} {text}" if limit.cell else text


def _event(event: Event | None) -> str:
    if event is None:
        return "–"
    return f"{_symbol(event.cell.outcome)} {_figure(event.text())}"


def _fact(option: Option, name: str) -> str:
    fact = option.facts.get(name)
    if fact is None:
        return "–"
    return _figure(f"{fact.value} [{fact.status}]")


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def table(options: list[Option]) -> list[str]:
    """The options side by side: measured rows, limits, facts."""
    lines = [
        "| | " + " | ".join(f"**{markdown_text(o.label)}**" for o in options) + " |",
        "|---|" + "---|" * len(options),
        _row(f"{ROW_CLIENTS} {MEASURED}", [_clients(o) for o in options]),
    ]
    for scenario, label in TRAFFIC_ROWS.items():
        if any(scenario in o.traffic for o in options):
            lines.append(_row(f"{label} {MEASURED}", [_traffic(o.traffic.get(scenario)) for o in options]))
    for scenario, label in LIMIT_ROWS.items():
        limits = [o.limits.get(scenario) for o in options]
        if any(limit is not None and limit.cell is not None for limit in limits):
            lines.append(_row(label, [_limit(limit) for limit in limits]))
    for scenario, label in LIFECYCLE_ROWS.items():
        if any(scenario in o.events for o in options):
            lines.append(_row(label, [_event(o.events.get(scenario)) for o in options]))
    for name, label in FACT_ROWS.items():
        if any(name in o.facts for o in options):
            lines.append(_row(label, [_fact(o, name) for o in options]))
    return lines


def _reason(reason: Reason) -> str:
    rows = ", ".join(f"“{markdown_text(row)}”" for row in reason.rows)
    return f"- {_tags(markdown_text(reason.text))} (row{'s' if len(reason.rows) > 1 else ''} {rows})"


def _recommendation(recommendation: Recommendation) -> list[str]:
    lines = ["## Recommendation", ""]
    for choice in recommendation.choices:
        lines += [f"### For {markdown_text(choice.app)}: {markdown_text(choice.label)}", ""]
        lines += [_reason(reason) for reason in choice.reasons]
        lines.append("")
    if recommendation.common:
        lines += ["### Whatever the option", ""]
        lines += [_reason(reason) for reason in recommendation.common]
        lines.append("")
    return lines


def _causes(comparison: Comparison) -> list[str]:
    lines = ["## Why cells fail", ""]
    for option in comparison.options:
        where = f"{markdown_text(option.name)}: {markdown_text(option.platform)}"
        name = f"**{markdown_text(option.label)}** ({where})"
        if not option.causes:
            lines.append(f"- {name}: every scenario passes or is informational.")
            continue
        causes = "; ".join(
            f"{markdown_text(cause.rule)}, {cause.cells} cell{'' if cause.cells == 1 else 's'}: "
            f"fix {cause.fix + 1}"
            for cause in option.causes
        )
        lines.append(f"- {name}: {causes}.")
    lines.append("")
    if comparison.fixes:
        lines += ["## Fixes", ""]
        for index, fix in enumerate(comparison.fixes):
            users = [o.label for o in comparison.options if any(c.fix == index for c in o.causes)]
            lines += [f"**Fix {index + 1}**, for {markdown_text(join_and(users))}:", ""]
            lines += [*markdown_block(fix), ""]
    return lines


def _sources(options: list[Option]) -> list[str]:
    lines = ["## Where the facts and limits come from", ""]
    for option in options:
        entries = [
            f"- {FACT_ROWS.get(name, markdown_text(name))} [{markdown_text(fact.status)}]: "
            f"{markdown_text(fact.source)}"
            for name, fact in option.facts.items()
        ]
        entries += [
            f"- {LIMIT_ROWS[scenario]}: {markdown_text(limit.parameter)} = {limit.configured:.0f} s "
            f"[{markdown_text(limit.status)}]: {markdown_text(limit.source)}"
            for scenario, limit in option.limits.items()
            if limit.parameter and limit.configured is not None
        ]
        if entries:
            heading = f"**{markdown_text(option.label)}** ({markdown_text(option.platform)}):"
            lines += [heading, "", *entries, ""]
    return lines


def render_markdown(comparison: Comparison) -> str:
    """The whole page: the choice, the table and its legend, the recommendation, the causes,
    the fixes once, the sources."""
    scale = comparison.time_scale
    timing = (
        "faithful time limits"
        if scale == 1
        else f"accelerated run (every limit ×{scale:g}); durations are given back in real seconds"
    )
    lines = ["# Which deployment carries the WebSocket server?", ""]
    if comparison.recommendation is not None:
        headline = comparison.recommendation.headline()
        lines += [f"**On Replit: {_tags(markdown_text(headline[:1].lower() + headline[1:]))}**", ""]
    elif any(o.name in REPLIT_DEPLOYMENTS for o in comparison.options):
        lines += ["**On Replit: none of the compared options carried WebSockets in this run.**", ""]
    lines += [
        f"websockets {markdown_text(comparison.websockets)} behind each option, emulated on real "
        f"proxies; {timing}. Each option's topology.yaml names the source of every emulated behaviour.",
        "",
    ]
    disagreements = comparison.disagreements()
    if disagreements:
        lines += ["**⚠ Measured limits that disagree with the configuration:**", ""]
        lines += [
            f"- **{markdown_text(option.label)}**, {LIMIT_ROWS[row]}: {_tags(markdown_text(limit.text()))}"
            for option, row, limit in disagreements
        ]
        lines.append("")
    lines += [*table(comparison.options), ""]
    symbols = ", ".join(
        f"{STYLES[o].symbol} {STYLES[o].label}"
        for o in (Outcome.PASS, Outcome.FAIL, Outcome.INFORMATIONAL, Outcome.BLOCKED, Outcome.NOT_MEASURED)
    )
    lines += [
        f"Rows tagged {MEASURED} are this run's cells, with `wslab run`'s symbols ({symbols}); "
        "“fixed:” is the same cell with the process\\_request fix. A limit is the configured value with "
        "its status, and what the emulation measured beside it when they agree within "
        f"{SCALE_TOLERANCE:.0%}. How each figure is known: "
        + "; ".join(f"[{status}] {meaning}" for status, meaning in STATUSES.items())
        + ".",
        "",
    ]
    if comparison.recommendation is not None:
        lines += _recommendation(comparison.recommendation)
    lines += _causes(comparison)
    lines += _sources(comparison.options)
    return "\n".join(lines) + "\n"
