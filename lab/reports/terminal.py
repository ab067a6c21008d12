"""The terminal matrix: scenarios down, topologies across, then why cells failed.

Reads a :class:`~wslab.records.Run` and prints it; decides nothing. Every text
from the run reaches the console as a rich Text through
:func:`~wslab.reports.safe_text.terminal_text`: escaped, never read as markup.
"""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..records import STYLES, Cell, Outcome, Run, legend
from .safe_text import printable, terminal_text

TIERS = {"required": "RFC", "deployment": "deploy", "informational": "info"}

LEGEND = (
    f"{legend()}.  Tier: RFC = required by RFC 6455, deploy = deployment-critical, "
    "info = informational.  The text is what the client got: an HTTP "
    "status, 'no answer' (closed without a response), 'timeout', 'refused', or 'open' (a TCP "
    "probe was accepted); for connections held open, 'open 150s' or 'cut 55s' in faithful seconds."
)


def _cell_text(cell: Cell) -> Text:
    style = STYLES[cell.outcome]
    return terminal_text(f"{style.symbol} {cell.summary}", style=style.colour)


def matrix(result: Run) -> Table:
    """The topology x scenario table."""
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    table.add_column("scenario", no_wrap=True)
    table.add_column("tier", no_wrap=True, style="dim")
    names = [topology.name for topology in result.topologies]
    for name in names:
        table.add_column(terminal_text(name), no_wrap=True)
    for scenario in result.scenarios:
        row = [terminal_text(scenario.id), Text(TIERS.get(scenario.tier, ""))]
        for name in names:
            row.append(_cell_text(result.cell(name, scenario.id)))
        table.add_row(*row)
    return table


def _header(result: Run) -> Text:
    components = result.components
    proxies = components.tool_versions()
    counts = result.counts()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    secrets = [] if result.options.redacted else [("secrets NOT redacted (--no-redact)\n", "bold red")]
    return Text.assemble(
        ("wslab", "bold"),
        printable(
            f" · {len(result.topologies)} topologies × {len(result.scenarios)} scenarios · "
            f"{result.backend} backend · {result.duration:.1f} s"
        ),
        "\n",
        printable(
            f"websockets {components.websockets_server} (server), "
            f"{components.websockets_client} (client); {proxies}"
        ),
        "\n",
        *secrets,
        (summary, "bold"),
    )


def _unavailable(result: Run) -> list[Text]:
    lines = []
    for topology in result.topologies:
        if topology.status == "ready":
            continue
        lines.append(terminal_text(f"{topology.name}: {topology.status}: {topology.detail}", "magenta"))
        if topology.log_tail:
            tail = "  " + topology.log_tail.replace("\n", "\n  ")
            lines.append(terminal_text(tail, "dim", multiline=True))
    return lines


def _explanations(result: Run) -> list[Text]:
    """Failed cells grouped by diagnosis and fix, each group explained once."""
    groups: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for cell in result.cells:
        if cell.outcome == Outcome.FAIL and cell.diagnosis:
            groups[(cell.diagnosis.rule, cell.diagnosis.fix, cell.diagnosis.cause)].append(cell)
        elif cell.outcome == Outcome.ERROR and cell.error:
            groups[("lab-error", cell.error, "")].append(cell)
    lines = []
    for (rule, fix, cause), cells in groups.items():
        where = ", ".join(f"{c.topology}/{c.scenario}" for c in cells)
        first = cells[0]
        symbol = STYLES[Outcome.ERROR if rule == "lab-error" else Outcome.FAIL].symbol
        lines.append(
            Text.assemble((f"{symbol} ", "red"), (printable(rule), "bold"), printable(f" — {where}"))
        )
        if rule == "lab-error":
            lines.append(terminal_text(f"  {fix}"))
            continue
        error = first.server[0].error if first.server else None
        if error:
            lines.append(terminal_text(f"  server error: {error.text}", "yellow"))
        lines.append(terminal_text(f"  cause: {cause}"))
        lines.append(terminal_text("  fix: " + fix.replace("\n", "\n       "), "cyan", multiline=True))
    return lines


def render(result: Run, console: Console | None = None) -> None:
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
