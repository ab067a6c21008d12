"""Where the lab's data lives: the scenarios/ and compose/ folders beside the package.

An installed copy (a container image, a wheel) finds them through WSLAB_HOME.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("WSLAB_HOME") or Path(__file__).resolve().parent.parent)
SCENARIO_DIR = PROJECT_ROOT / "scenarios"
COMPOSE_DIR = PROJECT_ROOT / "compose"
