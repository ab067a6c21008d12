"""The sample outputs in README.md and docs/ are what the commands print today (scripts/samples.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_sample_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "samples.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"run: python scripts/samples.py\n{result.stdout}{result.stderr}"


def test_the_readme_shows_the_answer_first() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:60])
    assert "<!-- sample: run -->" in readme and "<!-- sample: explain -->" in readme
    for needed in ("missing Connection header", "process_request", "Reserved VM", "## Set-up: two commands"):
        assert needed in first_screen, needed


def test_the_readme_fix_is_the_program_the_lab_prints_and_tests() -> None:
    from wslab.fixes import ASYNCIO_PROGRAM

    readme = (ROOT / "README.md").read_text()
    hook = readme.split("def process_request(connection, request):\n", 1)[1].split("\n\n", 1)[0]
    for line in hook.splitlines():
        assert line in ASYNCIO_PROGRAM, line


def test_samples_alike_up_to_measured_jitter_but_not_to_other_changes() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from samples import _alike

    assert _alike("idle cut 60s (measured 54s), 29 topologies", "idle cut 60s (measured 58s), 29 topologies")
    assert not _alike("29 topologies", "31 topologies"), "a count is not a measured duration"
    assert not _alike("cut 60s", "cut 40s")
    assert not _alike("open 150s", "cut 150s")
    assert _alike("1006 ↻0.0s", "1006 ↻0.1s"), "a time to be back in real seconds, under load"
    assert not _alike("1006 ↻0.0s", "1006 ↻2.0s")
