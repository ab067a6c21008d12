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
