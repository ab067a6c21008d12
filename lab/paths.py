"""Where the lab's data lives: the scenario files and the topology folders.

In a checkout they are the repository's scenarios/ and compose/ folders; an
installed wheel carries the same files inside the package (``wslab/scenarios``
and ``wslab/topologies``). WSLAB_HOME points at another tree holding both.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_folder(checkout_name: str, packaged_name: str) -> Path:
    home = os.environ.get("WSLAB_HOME")
    if home:
        return Path(home) / checkout_name
    packaged = PACKAGE_DIR / packaged_name
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / checkout_name


SCENARIO_DIR = _data_folder("scenarios", "scenarios")
COMPOSE_DIR = _data_folder("compose", "topologies")
PROJECT_ROOT = COMPOSE_DIR.parent
"""The checkout (or WSLAB_HOME): where docker-compose.yml lives, for the compose backend."""

CACHE = Path(os.environ.get("WSLAB_CACHE", Path.home() / ".cache" / "wslab"))
"""The lab's cache: websockets releases, proxy versions, a warm lab's state file."""


def state_path() -> Path:
    """Where a running ``wslab up`` describes itself (lab/warm.py)."""
    return Path(os.environ.get("WSLAB_STATE") or CACHE / "lab.json")
