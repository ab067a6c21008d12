"""The terminal matrix: scenarios down, topologies across, then why cells failed.

Reads a :class:`~lab.results.RunResult` and prints it; decides nothing.
"""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..results import BLOCKED, ERROR, FAIL, INFORMATIONAL, PASS, UNAVAILABLE, CellResult, RunResult

STYLE = {
    PASS: ("✓", "green"),
    FAIL: ("✗", "red"),
    ERROR: ("!", "magenta"),
    BLOCKED: ("⊘", "yellow"),
    INFORMATIONAL: ("ℹ", "blue"),
    UNAVAILABLE: ("–", "dim"),
}
TIERS = {"required": "RFC", "deployment": "deploy", "informational": "info"}

LEGEND = (
    "✓ pass  ✗ fail  ! lab error  ⊘ blocked (an earlier scenario it needs failed)  ℹ informational, "
    "did not match  – unavailable.  Tier: RFC = required by RFC 6455, deploy = deployment-critical, "
    "info = informational.  The text is what the client got: an HTTP "
    "status, 'no answer' (closed without a response), 'timeout', 'refused', or 'open' (a TCP "
    "probe was accepted); for connections held open, 'open 150s' or 'cut 55s' in faithful seconds."
)


def _cell_text(cell: CellResult) -> Text:
    symbol, style = STYLE[cell.outcome]
    return Text(f"{symbol} {cell.summary}", style=style)


def matrix(result: RunResult) -> Table:
    """The topology x scenario table."""
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    table.add_column("scenario", no_wrap=True)
    table.add_column("tier", no_wrap=True, style="dim")
    names = [topology["name"] for topology in result.topologies]
    for name in names:
        table.add_column(name, no_wrap=True)
    for scenario in result.scenarios:
        row = [Text(scenario["id"]), Text(TIERS.get(scenario.get("tier", ""), ""))]
        for name in names:
            row.append(_cell_text(result.cell(name, scenario["id"])))
        table.add_row(*row)
    return table


def _header(result: RunResult) -> Text:
    components = result.components
    proxies = result.tool_versions()
    counts = result.counts()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    return Text.assemble(
        ("wslab", "bold"),
        f" · {len(result.topologies)} topologies × {len(result.scenarios)} scenarios · "
        f"{result.backend} backend · {result.duration:.1f} s\n",
        f"websockets {components['websockets_server']} (server), "
        f"{components['websockets_client']} (client); {proxies}\n",
        (summary, "bold"),
    )


def _unavailable(result: RunResult) -> list[Text]:
    lines = []
    for topology in result.topologies:
        if topology["status"] == "ready":
            continue
        lines.append(Text(f"{topology['name']}: {topology['status']}: {topology['detail']}", "magenta"))
        if topology["log_tail"]:
            lines.append(Text("  " + topology["log_tail"].replace("\n", "\n  "), "dim"))
    return lines


def _explanations(result: RunResult) -> list[Text]:
    """Failed cells grouped by diagnosis and fix, each group explained once."""
    groups: dict[tuple[str, str, str], list[CellResult]] = defaultdict(list)
    for cell in result.cells:
        if cell.outcome == FAIL and cell.diagnosis:
            groups[(cell.diagnosis["rule"], cell.diagnosis["fix"], cell.diagnosis["cause"])].append(cell)
        elif cell.outcome == ERROR and cell.error:
            groups[("lab-error", cell.error, "")].append(cell)
    lines = []
    for (rule, fix, _), cells in groups.items():
        where = ", ".join(f"{c.topology}/{c.scenario}" for c in cells)
        first = cells[0]
        lines.append(
            Text.assemble(("✗ " if rule != "lab-error" else "! ", "red"), (rule, "bold"), f" — {where}")
        )
        if rule == "lab-error":
            lines.append(Text(f"  {fix}"))
            continue
        server = first.server[0] if first.server else None
        if server and server.get("error"):
            lines.append(Text(f"  server error: {server['error']['text']}", "yellow"))
        lines.append(Text(f"  cause: {first.diagnosis['cause']}"))
        lines.append(Text("  fix: " + fix.replace("\n", "\n       "), "cyan"))
    return lines


def render(result: RunResult, console: Console | None = None) -> None:
    """Print the matrix, the legend and the explanations of failed cells."""
    console = console or Console()
    parts = [_header(result), matrix(result), Text(LEGEND, "dim")]
    unavailable = _unavailable(result)
    if unavailable:
        parts += [Text("\nTopologies not running:", "bold"), *unavailable]
    explanations = _explanations(result)
    if explanations:
        parts += [Text("\nWhy cells failed:", "bold"), *explanations]
    console.print(Group(*parts))
