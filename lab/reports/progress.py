"""Live progress while a run goes: cells done of total and what is running.

On a terminal it is a rich progress bar naming the cells in flight; anywhere
else (CI logs, pipes) one plain line per finished topology, so logs stay
readable. ``mode`` "cell" prints one plain line per finished cell instead (the
compose stack's runner: its log shows the run going from its first cell), and
"topology" the per-topology lines even on a terminal.
"""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..records import Cell
from .safe_text import printable


class RunProgress:
    """Receives the runner's on_start/on_cell calls and shows them."""

    MODES = ("auto", "cell", "topology")

    def __init__(self, total: int, per_topology: int, stream: TextIO, mode: str = "auto") -> None:
        assert mode in self.MODES, mode
        self.total = total
        self.per_topology = per_topology
        self.stream = stream
        self.per_cell = mode == "cell"
        self.running: list[str] = []
        self.done: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {}
        self.console = Console(file=stream)
        self.bar: Progress | None = None
        if self.console.is_terminal and mode == "auto":
            self.bar = Progress(
                TextColumn("cells"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}", markup=False),
                console=self.console,
                transient=True,
            )
            self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> RunProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def _describe(self) -> str:
        shown = ", ".join(self.running[:3])
        more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
        return printable(f"running {shown}{more}") if shown else ""

    def started(self, topology: str, scenario: str) -> None:
        self.running.append(f"{topology}/{scenario}")
        if self.bar is not None:
            self.bar.update(self.task, description=self._describe())

    def finished(self, cell: Cell) -> None:
        name = f"{cell.topology}/{cell.scenario}"
        if name in self.running:
            self.running.remove(name)
        self.done[cell.topology] += 1
        self.outcomes.setdefault(cell.topology, Counter())[cell.outcome] += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=self._describe())
        elif self.per_cell:
            finished = sum(self.done.values())
            line = printable(f"[{finished}/{self.total}] {name}: {cell.outcome} {cell.summary}")
            print(line, file=self.stream, flush=True)
        elif self.done[cell.topology] == self.per_topology:
            counts = ", ".join(f"{n} {o}" for o, n in sorted(self.outcomes[cell.topology].items()))
            finished = sum(self.done.values())
            line = printable(f"[{finished}/{self.total}] {cell.topology}: {counts}")
            print(line, file=self.stream, flush=True)
