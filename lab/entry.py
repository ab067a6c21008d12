"""The ``wslab`` command's entry point.

A ``wslab run`` while a warm lab is up is handed to the lab's fork server, which has the
package imported already (lab/forkserver.py); anything else imports the command line and
runs here. Only the standard library is imported before that choice.
"""

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from .forkserver import hand_off
        from .paths import state_path

        code = hand_off(argv, state_path())
        if code is not None:
            return code
    from .cli import main as command_line

    return command_line()
