"""A Markdown summary to paste into an issue or a pull request.

Every text from the run goes through :mod:`wslab.reports.safe_text`: a header
value holding ``<script>``, ``![x](http://evil)`` or a ``|`` shows as that text
and injects no HTML, image, link, code span or table column.
"""

from __future__ import annotations

from collections import defaultdict

from ..records import STYLES, Cell, Outcome, Run, legend
from .safe_text import markdown_block, markdown_code, markdown_text


def render_markdown(result: Run) -> str:
    """Matrix table, legend, and the failed cells grouped by cause."""
    components = result.components
    counts = ", ".join(f"{n} {outcome}" for outcome, n in result.counts().items() if n)
    names = [t.name for t in result.topologies]
    about = (
        f"{len(result.topologies)} topologies × {len(result.scenarios)} scenarios, {result.backend} backend, "
        f"{result.started_at}, {result.duration:.1f} s. websockets {components.websockets_server} "
        f"(server); {components.tool_versions()}."
    )
    lines = [
        "## wslab results",
        "",
        f"{markdown_text(about)} **{counts}**.",
        "",
        "| scenario | tier | " + " | ".join(markdown_text(name) for name in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for scenario in result.scenarios:
        row = [markdown_text(scenario.id), markdown_text(scenario.tier)]
        for name in names:
            cell = result.cell(name, scenario.id)
            row.append(f"{STYLES[cell.outcome].symbol} {markdown_text(cell.summary)}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", legend() + "."]
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in result.cells:
        if cell.outcome == Outcome.FAIL and cell.diagnosis:
            groups[(cell.diagnosis.rule, cell.diagnosis.cause)].append(cell)
    if groups:
        lines += ["", "### Why cells failed", ""]
    for (rule, cause), cells in groups.items():
        where = ", ".join(markdown_code(f"{c.topology}/{c.scenario}") for c in cells)
        fix = cells[0].diagnosis.fix if cells[0].diagnosis else ""
        lines += [
            f"- **{markdown_text(rule)}** ({where}): {markdown_text(cause)}",
            "",
            *markdown_block(fix, indent="  "),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
