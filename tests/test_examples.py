"""The examples/ apps' own test suites, run as a user runs them: `pytest` in the example's folder,
the wslab plugin putting the app behind the topologies its pytest.ini names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def pytest_in(folder: Path, **env: str) -> tuple[int, str]:
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
    )
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("example", "env", "passed"),
    [
        ("websockets-app", {}, 6),
        ("websockets-app", {"FIXED": "1"}, 6),
        ("fastapi-app", {}, 4),
    ],
    ids=["websockets-app", "websockets-app-fixed", "fastapi-app"],
)
def test_the_example_suite_passes_through_each_topology(
    example: str, env: dict[str, str], passed: int
) -> None:
    code, output = pytest_in(EXAMPLES / example, **env)
    assert code == 0, output
    assert re.search(rf"\b{passed} passed\b", output), output
    topologies = re.findall(r"\[([a-z0-9-]+)\] PASSED", output)
    assert len(set(topologies)) == 2, "one run of each test per topology in pytest.ini"
