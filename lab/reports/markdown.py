"""A Markdown summary to paste into an issue or a pull request."""

from __future__ import annotations

from collections import defaultdict

from ..records import STYLES, Cell, Outcome, Run, legend


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Run) -> str:
    """Matrix table, legend, and the failed cells grouped by cause."""
    components = result.components
    counts = ", ".join(f"{n} {outcome}" for outcome, n in result.counts().items() if n)
    names = [t.name for t in result.topologies]
    lines = [
        "## wslab results",
        "",
        f"{len(result.topologies)} topologies × {len(result.scenarios)} scenarios, {result.backend} backend, "
        f"{result.started_at}, {result.duration:.1f} s. websockets {components.websockets_server} "
        f"(server); {components.tool_versions()}. **{counts}**.",
        "",
        "| scenario | tier | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for scenario in result.scenarios:
        row = [scenario.id, scenario.tier]
        for name in names:
            cell = result.cell(name, scenario.id)
            row.append(f"{STYLES[cell.outcome].symbol} {_escape(cell.summary)}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", legend() + "."]
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in result.cells:
        if cell.outcome == Outcome.FAIL and cell.diagnosis:
            groups[(cell.diagnosis.rule, cell.diagnosis.cause)].append(cell)
    if groups:
        lines += ["", "### Why cells failed", ""]
    for (rule, cause), cells in groups.items():
        where = ", ".join(f"`{c.topology}/{c.scenario}`" for c in cells)
        fix = cells[0].diagnosis.fix if cells[0].diagnosis else ""
        lines += [
            f"- **{rule}** ({where}): {cause}",
            "",
            "  ```",
            *[f"  {line}" for line in fix.splitlines()],
            "  ```",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
