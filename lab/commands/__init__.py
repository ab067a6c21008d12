"""What each ``wslab`` command does, once its arguments are parsed (see wslab/cli.py).

Exit codes (wslab.errors): 0 every cell met its expectation, 1 some cell did
not, 2 usage or configuration error (a bad scenario file, an unknown
topology), 3 the lab itself failed, 130 interrupted.
"""

from __future__ import annotations

from .compare import compare_command
from .explain import explain_command
from .project import compose_file_command, list_command, schema_command, validate_command
from .run import RENDERERS, diff_command, report_command, run_command
from .serve import up_command, watch_command
from .warm_lab import detach_command, down_command

__all__ = ["COMMANDS", "RENDERERS", "detach_command"]

COMMANDS = {
    "run": run_command,
    "up": up_command,
    "down": down_command,
    "watch": watch_command,
    "report": report_command,
    "diff": diff_command,
    "compare": compare_command,
    "explain": explain_command,
    "compose-file": compose_file_command,
    "schema": schema_command,
    "list": list_command,
    "validate": validate_command,
}
