"""A Markdown summary to paste into an issue or a pull request: the verdict first, then the
matrix (topologies as rows, grouped; scenarios as short columns with a key), then the causes
folded, each fix once.

Every text from the run goes through :mod:`wslab.reports.safe_text`: a header
value holding ``<script>``, ``![x](http://evil)`` or a ``|`` shows as that text
and injects no HTML, image, link, code span or table column.
"""

from __future__ import annotations

from ..records import STYLES, Run, legend
from ..verdict import GROUPS, judge_run
from .safe_text import markdown_block, markdown_code, markdown_text
from .terminal import compact, short


def render_markdown(result: Run) -> str:
    """Verdict, matrix table, key and legend, and the causes folded."""
    components = result.components
    verdict = judge_run(result)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in result.counts().items() if n)
    about = (
        f"{result.size()}, {result.backend} backend, "
        f"{result.started_at}, {result.took()}. {result.server_description()}; "
        f"{components.tool_versions()}."
    )
    lines = ["## wslab results", "", f"{markdown_text(about)} **{counts}**.", ""]
    for sentence in verdict.sentences():
        nested = sentence.startswith("  ")
        lines.append(f"{'  ' if nested else ''}- {markdown_text(sentence.strip())}")
    cells = {(cell.topology, cell.scenario): cell for cell in result.cells}
    codes = [markdown_text(short(scenario)) for scenario in result.scenarios]
    lines += ["", "| topology | " + " | ".join(codes) + " |", "|---|" + "---|" * len(codes)]
    group = None
    for topology in verdict.topologies:
        if topology.role != group:
            group = topology.role
            lines.append(f"| **{markdown_text(GROUPS.get(group, group))}** |" + " |" * len(codes))
        row = [markdown_text(topology.name)]
        for scenario in result.scenarios:
            cell = cells.get((topology.name, scenario.id))
            row.append(f"{STYLES[cell.outcome].symbol}{markdown_text(compact(cell.summary))}" if cell else "")
        lines.append("| " + " | ".join(row) + " |")
    key = "; ".join(f"{markdown_code(short(s))} {markdown_text(s.title or s.id)}" for s in result.scenarios)
    lines += ["", f"{key}.", "", legend() + "."]
    if verdict.causes:
        lines += ["", "### Why cells failed", ""]
    fixes: dict[str, str] = {}
    for cause in verdict.causes:
        where = "; ".join(
            f"{markdown_code(topology)}: {' '.join(markdown_text(short_of(result, s)) for s in scenarios)}"
            for topology, scenarios in cause.cells.items()
        )
        errors = ", ".join(markdown_code(error) for error in cause.server_errors)
        cells = f"{cause.count} cell{'' if cause.count == 1 else 's'}"
        lines += [
            f"- **{markdown_text(cause.rule)}**, {cells} ({where})"
            + (f"; the server logged {errors}" if errors else "")
            + f". {markdown_text(cause.cause)}",
            "",
        ]
        if cause.fix in fixes:
            lines += [f"  Fix: as for **{markdown_text(fixes[cause.fix])}** above.", ""]
        else:
            fixes[cause.fix] = cause.rule
            lines += [*markdown_block(cause.fix, indent="  "), ""]
    return "\n".join(lines).rstrip() + "\n"


def short_of(result: Run, scenario_id: str) -> str:
    """A scenario's column code, by id."""
    return next((short(s) for s in result.scenarios if s.id == scenario_id), scenario_id)
