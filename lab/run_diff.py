"""Two runs compared cell by cell: what changed, and which changes are regressions.

A regression is a cell that fails (or errs) now and did not before: passed,
was informational or blocked, or did not exist. A failure present in both
runs is not a regression, so CI can gate on ``--baseline`` while known
failures stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import Cell, Outcome, Run


@dataclass(frozen=True)
class Change:
    topology: str
    scenario: str
    before: Outcome | None
    """None: the cell did not exist before."""
    after: Outcome
    before_summary: str
    after_summary: str

    @property
    def regression(self) -> bool:
        return self.after.failing and (self.before is None or not self.before.failing)


def _server_error(cell: Cell) -> str:
    error = cell.server_error
    return error.text if error else ""


def _key(cell: Cell) -> tuple[str, str]:
    return cell.topology, cell.scenario


def changes(old: Run, new: Run) -> list[Change]:
    """Cells whose outcome, summary or server error differ between the runs (new cells included)."""
    before = {_key(cell): cell for cell in old.cells}
    found = []
    for cell in new.cells:
        previous = before.get(_key(cell))
        if previous is None:
            found.append(Change(cell.topology, cell.scenario, None, cell.outcome, "", cell.summary))
        elif (previous.outcome, previous.summary, _server_error(previous)) != (
            cell.outcome,
            cell.summary,
            _server_error(cell),
        ):
            found.append(
                Change(
                    cell.topology,
                    cell.scenario,
                    previous.outcome,
                    cell.outcome,
                    previous.summary,
                    cell.summary,
                )
            )
    return found


def regressions(old: Run, new: Run) -> list[Change]:
    return [change for change in changes(old, new) if change.regression]
