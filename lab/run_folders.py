"""Temporary run folders, and removing what a killed command left of them.

A command given no ``--run-dir`` works in a ``wslab-`` folder of the temporary directory (proxy
configs and logs; Varnish's shared-memory log alone is 80 MB), and a browser cell's Chromium in a
``wslab-chromium-`` one; each is removed on every way out its command sees. A SIGKILL is not
one: its processes all go (lab/containment.py), its folders stay. So a folder holds a lock file,
locked (``flock``) for as long as the process that made it lives; the kernel releases the lock
however that process ends. Whoever makes a folder first removes the folders whose lock it can
take. A folder without the lock file (a ``--run-dir``, another program's, an older wslab's),
another user's, or reached through a link is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

PREFIX = "wslab-"
LOCK = ".wslab-lock"


class TemporaryRunFolder:
    """A new locked run folder (:attr:`path`), made after removing the ones left by killed
    commands; :meth:`remove` removes it. ``prefix`` names other folders of a run that live
    beside it (Chromium's profile); it starts with ``wslab-``."""

    def __init__(self, prefix: str = PREFIX) -> None:
        sweep()
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        partial = self.path / f"{LOCK}.partial"
        # Not inherited by the proxies (close-on-exec): the lock ends with this process alone.
        self._lock: BinaryIO | None = open(partial, "wb")  # noqa: SIM115 - held until remove()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: the folder is never swept, as before
            return
        # Only a lock file that is held already bears the name a sweep looks for.
        partial.rename(self.path / LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def sweep(directory: Path | None = None) -> list[Path]:
    """Remove the run folders in ``directory`` (the temporary directory) whose maker is gone:
    their lock can be taken. The folders removed."""
    removed = []
    for lock_path in Path(directory or tempfile.gettempdir()).glob(f"{PREFIX}*/{LOCK}"):
        folder = lock_path.parent
        try:
            # Only a real folder of this user's: never through a link, never someone else's.
            if folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            with open(lock_path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # held (its maker runs), or gone meanwhile
            continue
        removed.append(folder)
    return removed
