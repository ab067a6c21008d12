"""What each ``wslab`` command does, once its arguments are parsed (see wslab/cli.py).

Exit codes (wslab.errors): 0 every cell met its expectation, 1 some cell did
not, 2 usage or configuration error (a bad scenario file, an unknown
topology), 3 the lab itself failed, 130 interrupted.

A command's module is imported only when that command runs: importing all of
them (the HTML renderer, the compose and containers backends, Markdown...) cost
every invocation about 0.4 s before it did anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

COMMANDS = {
    "run": "run:run_command",
    "up": "serve:up_command",
    "down": "warm_lab:down_command",
    "watch": "serve:watch_command",
    "report": "run:report_command",
    "diff": "run:diff_command",
    "compare": "compare:compare_command",
    "explain": "explain:explain_command",
    "compose-file": "project:compose_file_command",
    "schema": "project:schema_command",
    "list": "project:list_command",
    "validate": "project:validate_command",
}
"""Each command's function, as ``module:function`` within this package."""

REPORT_FORMATS = ("json", "html", "markdown", "junit")
"""What ``wslab report --format`` renders besides the terminal (run.RENDERERS has one each)."""


def command(name: str) -> Callable[..., Any]:
    """The function of command ``name`` (a key of :data:`COMMANDS`), its module imported now."""
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __name__), function)
