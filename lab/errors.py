"""Every error wslab reports to a person, and the exit code each one means.

Two families: :class:`UsageError` (exit 2) when what the user gave cannot be
used (an unknown topology, a bad scenario file, a results file that is not
one), and :class:`LabFailure` (exit 3) when the lab itself could not run (the
probe server did not start, a websockets release could not be installed,
Compose failed). Each message says what was wrong and, where it can, what to
do about it; the command line prints it on one line and exits with the code,
in one place (``wslab.cli``). Anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LAB, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class WslabError(Exception):
    """An error with a message for a person and the exit code that goes with it."""

    exit_code: ClassVar[int] = EXIT_LAB
    label: ClassVar[str] = "error"


class UsageError(WslabError):
    """Arguments or input files that cannot be used (exit 2)."""

    exit_code = EXIT_USAGE


class InputError(UsageError):
    """A file the user gave that cannot be used, with where (file, and line if known) and why."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


class ScenarioError(InputError):
    """A scenario file that cannot be used."""


class TopologyError(InputError):
    """A topology folder that cannot be used."""


class ResultsError(InputError):
    """A file given as results (``wslab report``, ``--baseline``...) that is not a usable one."""


class LabFailure(WslabError):
    """The lab itself could not run, as opposed to a topology failing a scenario (exit 3)."""

    label = "lab failure"


class ProvisionError(LabFailure):
    """A websockets release asked for with ``--websockets`` could not be installed."""
