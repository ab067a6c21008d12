"""`wslab explain`: a log line read backwards into its causes, on the real default matrix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wslab import results
from wslab.explain import AS_EXPECTED, explain, matches
from wslab.records import Run, ServerError
from wslab.reports.explain import render_markdown

SEED = "websockets.exceptions.InvalidUpgrade: missing Connection header"


@pytest.mark.fast
def test_log_lines_match_the_recorded_error() -> None:
    error = ServerError(type="InvalidUpgrade", text="missing Connection header")
    for line in (SEED, "InvalidUpgrade: missing Connection header", "missing connection header", "  missing"):
        assert matches(error, line), line
    assert not matches(error, "invalid Connection header: keep-alive")
    assert not matches(error, "")
    assert not matches(None, SEED)


def test_the_seed_error_has_causes_told_apart_by_the_websocket_key(matrix: Run) -> None:
    answer = explain(matrix, SEED)
    causes = {cause.rule: cause for cause in answer.causes}
    assert answer.errors == ["InvalidUpgrade: missing Connection header"]
    assert answer.cells_matched == sum(len(cause.cells) for cause in answer.causes)
    plain = causes["plain-http-through-keepalive-proxy"]
    stripped = causes["proxy-removed-upgrade"]
    assert ("haproxy-default", "browser-tab-get") in plain.cells
    assert ("replit-dev", "preview-pane-get") in plain.cells
    assert ("varnish-default", "websockets-echo") in stripped.cells
    assert "plain browser GET /" in plain.senders
    # The server-side tell: a stripped upgrade still carries the WebSocket key, a browser tab never did.
    versus = {tell.other: tell for tell in stripped.tells}
    assert "sec-websocket-key" in versus["plain-http-through-keepalive-proxy"].present
    assert "sec-websocket-key" in {tell.other: tell for tell in plain.tells}["proxy-removed-upgrade"].absent
    assert "process_request" in plain.fix and "pipe" in stripped.fix
    # Every matched cell really logged the error.
    for cause in answer.causes:
        for topology, scenario in cause.cells:
            errors = [c.error.text for c in matrix.cell(topology, scenario).server if c.error]
            assert "missing Connection header" in errors


def test_errors_the_scenario_expects_are_their_own_group(matrix: Run) -> None:
    answer = explain(matrix, "unsupported HTTP version: HTTP/1.0")
    expected = next(cause for cause in answer.causes if cause.rule == AS_EXPECTED)
    assert ("direct", "http10-upgrade") in expected.cells
    assert not expected.fix


def test_an_unknown_error_says_so(matrix: Run) -> None:
    answer = explain(matrix, "no such error anywhere")
    assert answer.causes == [] and answer.cells_run == len(matrix.cells)
    assert "No cell of the" in render_markdown(answer)


def test_command_reads_saved_results(matrix: Run, tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    results.write(matrix, saved)
    page = tmp_path / "explain.md"
    command = [
        sys.executable,
        "-m",
        "wslab",
        "explain",
        SEED,
        "--results",
        str(saved),
        "--markdown",
        str(page),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "plain-http-through-keepalive-proxy" in result.stdout
    text = page.read_text()
    assert text.startswith(f"## `{SEED}`") and "proxy-removed-upgrade" in text


def test_command_runs_the_default_suites_when_given_no_results() -> None:
    command = [sys.executable, "-m", "wslab", "explain", SEED, "-t", "haproxy-default"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plain-http-through-keepalive-proxy" in result.stdout and "haproxy-default" in result.stdout
