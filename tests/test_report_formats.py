"""Report formats, exit codes, baselines, diffs, tiers and blocked cells, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xmlschema
from markdown_it import MarkdownIt
from rich.console import Console

from wslab import results
from wslab.records import Outcome, Run
from wslab.reports import terminal
from wslab.reports.junit import render_junit
from wslab.reports.markdown import render_markdown

ROOT = Path(__file__).resolve().parent.parent


def wslab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved run of two topologies, one failing the upgrade (envoy-default)."""
    path = tmp_path_factory.mktemp("saved") / "results.json"
    result = wslab("run", "-t", "haproxy-default", "-t", "envoy-default", "--json", str(path))
    assert result.returncode == 1, result.stderr
    return path


def test_junit_is_valid_and_has_one_testcase_per_cell(matrix: Run, tmp_path: Path) -> None:
    xml = render_junit(matrix)
    schema = xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd")
    schema.validate(xml)
    document = schema.to_dict(xml)
    cases = [case for suite in document["testsuite"] for case in suite["testcase"]]
    assert len(cases) == len(matrix.cells)
    failures = [case for case in cases if "failure" in case]
    assert len(failures) == sum(cell.outcome == Outcome.FAIL for cell in matrix.cells)
    seed = next(
        c
        for c in failures
        if c["@classname"] == "wslab.haproxy-default" and c["@name"] == "platform-traffic.browser-tab-get"
    )
    assert "not a WebSocket client" in seed["failure"][0]["@message"]


def test_markdown_renders_as_a_table(matrix: Run) -> None:
    html = MarkdownIt("commonmark").enable("table").render(render_markdown(matrix))
    assert html.count("<table>") == 1
    groups = {topology.role for topology in matrix.topologies}
    assert html.count("<tr>") == 1 + len(groups) + len(matrix.topologies), (
        "a header, a row per group and topology"
    )
    assert "<td>haproxy-default</td>" in html and "missing Connection header" in html


def test_tiers_blocked_and_informational(saved: Path) -> None:
    result = results.load(saved)
    assert result.cell("envoy-default", "websockets-echo").outcome == Outcome.FAIL
    blocked = result.cell("envoy-default", "subprotocol")
    assert blocked.outcome == Outcome.BLOCKED and "websockets-echo" in blocked.error
    assert result.cell("haproxy-default", "subprotocol").outcome == Outcome.PASS
    assert result.cell("haproxy-default", "head-root").outcome == Outcome.INFORMATIONAL
    tiers = {s.id: s.tier for s in result.scenarios}
    assert tiers["http10-upgrade"] == "required" and tiers["tcp-probe"] == "informational"


def test_exit_codes(tmp_path: Path) -> None:
    assert wslab("run", "-t", "direct", "--scenario", "websockets-echo").returncode == 0
    assert wslab("run", "-t", "envoy-default", "--scenario", "websockets-echo").returncode == 1
    assert wslab("run", "-t", "no-such-topology").returncode == 2
    broken = wslab(
        "run", "-t", "nginx-websocket", "--scenario", "websockets-echo", env={"WSLAB_NGINX_BIN": "/bin/false"}
    )
    assert broken.returncode == 3, broken.stdout
    assert "nginx exited with status 1" in broken.stdout


def test_baseline_fails_only_on_regressions(saved: Path, tmp_path: Path) -> None:
    args = ["run", "-t", "haproxy-default", "-t", "envoy-default", "--baseline"]
    unchanged = wslab(*args, str(saved))
    assert unchanged.returncode == 0, unchanged.stdout[-2000:]
    assert "0 regressions" in unchanged.stdout
    doctored = json.loads(saved.read_text())
    for cell in doctored["cells"]:
        if (cell["topology"], cell["scenario"]) == ("envoy-default", "websockets-echo"):
            cell["outcome"] = "pass"
    regressed_path = tmp_path / "baseline.json"
    regressed_path.write_text(json.dumps(doctored))
    regressed = wslab(*args, str(regressed_path))
    assert regressed.returncode == 1
    assert "regression: envoy-default/websockets-echo: pass -> fail" in regressed.stdout

    diff = wslab("diff", str(regressed_path), str(saved))
    assert diff.returncode == 1
    assert "1 cells changed, 1 regressions" in diff.stdout
    assert wslab("diff", str(saved), str(saved)).returncode == 0


def test_report_rerenders_a_saved_run(saved: Path, tmp_path: Path) -> None:
    result = results.load(saved)
    junit = wslab("report", str(saved), "--format", "junit")
    assert junit.returncode == 0 and junit.stdout == render_junit(result)
    html_path = tmp_path / "report.html"
    assert wslab("report", str(saved), "-f", "html", "-o", str(html_path)).returncode == 0
    assert "haproxy-default" in html_path.read_text()
    terminal = wslab("report", str(saved))
    assert "✗403" in terminal.stdout and "⊘" in terminal.stdout
    assert wslab("report", str(tmp_path / "missing.json")).returncode == 2


def test_progress_is_plain_off_a_terminal() -> None:
    result = wslab("run", "-t", "direct", "-t", "haproxy-default")
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[-1].startswith("[26/26] ")


def test_progress_per_cell_shows_the_run_from_its_first_cell() -> None:
    """The compose stack's runner prints a line per cell, so its log moves from the first one."""
    result = wslab("run", "-t", "direct", "-t", "haproxy-default", "--progress", "cell")
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == [f"[{n}/26" for n in range(1, 27)]
    assert any(line.endswith("/websockets-echo: pass 101") for line in lines), lines


def test_report_merges_runs_side_by_side(saved: Path) -> None:
    merged = wslab("report", str(saved), str(saved), "-f", "json")
    assert merged.returncode == 0
    data = json.loads(merged.stdout)
    names = [t["name"] for t in data["topologies"]]
    assert names == ["haproxy-default", "envoy-default", "haproxy-default@2", "envoy-default@2"]
    assert len(data["cells"]) == 4 * len(data["scenarios"])


@pytest.mark.parametrize("width", [80, 100])
def test_the_whole_matrix_reads_at_terminal_widths(matrix: Run, width: int) -> None:
    """Every topology named in full, no line wider than the terminal, the process_request fix
    once; at 80 columns the scenarios wrap into a second block rather than squeezing."""
    console = Console(record=True, width=width)
    terminal.render(matrix, console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    for topology in matrix.topologies:
        assert any(line.strip().startswith(topology.name + " ") for line in lines), topology.name
    assert sum("def process_request" in line for line in lines) == 1
    blocks = sum(
        line.split() == ["echo", "chr", "ff", "lc", "sub", "path", "cmd"]
        or line.split()[:2] == ["echo", "chr"]
        for line in lines
    )
    assert blocks == 1
