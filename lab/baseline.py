"""Two runs compared cell by cell: what changed, and which changes are regressions.

A regression is a cell that fails (or errs) now and did not before: passed,
was informational or blocked, or did not exist. A failure present in both
runs is not a regression, so CI can gate on ``--baseline`` while known
failures stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from .results import ERROR, FAIL, CellResult, RunResult

FAILING = (FAIL, ERROR)


@dataclass(frozen=True)
class Change:
    topology: str
    scenario: str
    before: str
    after: str
    before_summary: str
    after_summary: str

    @property
    def regression(self) -> bool:
        return self.after in FAILING and self.before not in FAILING


def _server_error(cell: CellResult) -> str:
    return next((c["error"]["text"] for c in cell.server if c.get("error")), "")


def _key(cell: CellResult) -> tuple[str, str]:
    return cell.topology, cell.scenario


def changes(old: RunResult, new: RunResult) -> list[Change]:
    """Cells whose outcome, summary or server error differ between the runs (new cells included)."""
    before = {_key(cell): cell for cell in old.cells}
    found = []
    for cell in new.cells:
        previous = before.get(_key(cell))
        if previous is None:
            found.append(Change(cell.topology, cell.scenario, "absent", cell.outcome, "", cell.summary))
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


def regressions(old: RunResult, new: RunResult) -> list[Change]:
    return [change for change in changes(old, new) if change.regression]
