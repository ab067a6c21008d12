"""Results files at the edge: the schema is generated from the records, and a results file is
untrusted input (``wslab report`` never opens a path it names; bad files are one-line errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from test_renderers import seed_run

from wslab import results
from wslab.errors import ResultsError

pytestmark = pytest.mark.fast

PASSWD = Path("/etc/passwd").read_text().splitlines()


def wslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wslab", *args], capture_output=True, text=True, timeout=60)


def test_the_committed_schema_is_generated_from_the_records() -> None:
    assert wslab("schema", "--check").returncode == 0, "run: wslab schema --write"


def test_a_run_matches_its_schema() -> None:
    jsonschema.validate(json.loads(results.dump(seed_run())), results.schema())


def test_a_report_never_reads_a_path_named_in_the_results(tmp_path: Path) -> None:
    document = json.loads(results.dump(seed_run()))
    document["topologies"][0]["config"] = "/etc/passwd"
    document["cells"][1]["proxy_log"] = ["/etc/passwd"]
    crafted = tmp_path / "crafted.json"
    crafted.write_text(json.dumps(document))
    for fmt in ("html", "markdown", "junit", "json", "terminal"):
        shown = wslab("report", str(crafted), "-f", fmt)
        assert shown.returncode == 0, shown.stderr
        leaked = [line for line in PASSWD if line and line in shown.stdout]
        assert not leaked, (fmt, leaked[:2])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["topologies"][0].update(log="/etc/passwd"),
            "topologies.0.log: Extra inputs are not permitted",
        ),
        (lambda d: d.update(format="wslab.results/1"), "not a wslab.results/2 document"),
        (lambda d: d["cells"][0].update(outcome="passed"), "cells.0.outcome: Input should be"),
        (lambda d: d["cells"][1]["server"][0].update(request=[1, 2]), "cells.1.server.0.request"),
    ],
)
def test_a_bad_results_file_is_one_line_and_exit_2(tmp_path: Path, mutate, message: str) -> None:
    document = json.loads(results.dump(seed_run()))
    mutate(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ResultsError, match=message.replace(".", r"\.")):
        results.load(path)
    shown = wslab("report", str(path))
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.count("\n") == 1 and shown.stderr.startswith(f"wslab: error: {path}: "), shown.stderr


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[" * 100_000 + b"]" * 100_000, b'{"format": "wslab.results/2"}', b"\xff\xfe", b"[]"],
)
def test_garbage_is_refused_without_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.json"
    path.write_bytes(content)
    with pytest.raises(ResultsError):
        results.load(path)


def test_size_and_kind_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ResultsError, match="not a regular file"):
        results.load("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text(results.dump(seed_run()))
    monkeypatch.setattr(results, "MAX_RESULTS_BYTES", 100)
    with pytest.raises(ResultsError, match="larger than 100 bytes"):
        results.load(big)
