"""The ``wslab`` command's entry point.

A ``wslab run`` while a warm lab is up is handed to the lab's fork server, which has the
package imported already (lab/forkserver.py); anything else imports the command line and
runs here. Only the standard library is imported before that choice.
"""

import contextlib
import os
import signal
import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from .forkserver import hand_off
        from .paths import state_path

        code = hand_off(argv, state_path())
        if code is not None:
            # The run was the fork server's: nothing here to tear down, and the interpreter's
            # own finalization was 8 ms of a warm run's 0.65 s.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    from .cli import main as command_line

    code = command_line()
    # The command has ended and its status is decided. The interpreter's finalization gives
    # SIGINT its default action back, so a Ctrl-C now would kill the process instead (a shell
    # would see death by SIGINT, and no message): too late to interrupt anything, it is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code
