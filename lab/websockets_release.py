"""Make a given websockets release importable by the probe server.

The lab's own client always uses the installed websockets. The probe server
can run another release, for instance the 15.0.1 of the original report:
that release is installed once with pip into a cache folder and put first on
the probe server's PYTHONPATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import websockets

from .errors import ProvisionError
from .paths import CACHE


def websockets_path(version: str | None) -> Path | None:
    """A folder holding websockets ``version``, or None for the installed release."""
    if version in (None, "", websockets.__version__):
        return None
    target = CACHE / f"websockets-{version}"
    if (target / "websockets" / "__init__.py").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(partial),
            f"websockets=={version}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ProvisionError(f"cannot install websockets=={version}:\n{tail}")
    partial.rename(target)
    return target
