"""--target: the suites against a deployed probe server, through every local topology, and over TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wslab.backends import READY, StackOptions
from wslab.backends.local import LocalBackend
from wslab.backends.remote import RemoteBackend
from wslab.probe.redact import REDACTED_PATTERN
from wslab.processes import free_port
from wslab.records import Run
from wslab.runner import run
from wslab.scenario import load_scenarios
from wslab.topology import load_topologies

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "report-token-for-tests"
SECRETS = ("Bearer-s3cr3t-value", "sessionid=c00kie-value", "t0ken-in-query")


@pytest.fixture(scope="module")
def deployed() -> Iterator[int]:
    """`wslab probe-server` on loopback, answering plain HTTP like the lab's own server (426)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wslab",
            "probe-server",
            "--no-answer-plain-http",
            "--max-connections",
            "2000",
        ],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port), "WSLAB_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while subprocess.run(
        ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True
    ).returncode:
        assert time.monotonic() < deadline and process.poll() is None, "probe-server did not start"
        time.sleep(0.1)
    yield port
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(10)


def comparable(result: Run, topology: str) -> dict:
    return {c.scenario: (c.outcome, c.summary) for c in result.cells if c.topology == topology}


def test_target_behind_each_topology_matches_the_local_cells(
    deployed: int, matrix: Run, tmp_path: Path
) -> None:
    scenarios = load_scenarios()

    async def through_every_topology() -> dict[str, Run]:
        proxies = LocalBackend(tmp_path, StackOptions(), forward_to=("127.0.0.1", deployed))
        try:
            deployments = await proxies.start(list(load_topologies().values()))
            ready = [d for d in deployments.values() if d.status == READY]
            results: dict[str, Run] = {}
            for batch in range(0, len(ready), 7):
                targets = [
                    RemoteBackend(d.endpoint.ws_url(), TOKEN, StackOptions())
                    for d in ready[batch : batch + 7]
                ]
                runs = [run(target, [target.topology], scenarios) for target in targets]
                for deployment, result in zip(
                    ready[batch : batch + 7], await asyncio.gather(*runs), strict=True
                ):
                    results[deployment.topology.name] = result
            return results
        finally:
            await proxies.stop()

    results = asyncio.run(through_every_topology())
    assert len(results) == len(load_topologies())
    for topology, result in results.items():
        assert comparable(result, "target") == comparable(matrix, topology), topology
    seed = results["haproxy-default"].cell("target", "browser-tab-get")
    assert seed.server[0].error.text == "missing Connection header"
    assert seed.diagnosis.rule == "plain-http-through-keepalive-proxy"


def test_no_secret_reaches_any_output(deployed: int, tmp_path: Path) -> None:
    suite = tmp_path / "secrets.yaml"
    suite.write_text(
        "suite: secrets\nscenarios:\n  - id: with-secrets\n    title: credentials on the handshake\n"
        "    steps:\n      - connect:\n          path: /private?room=1&token=t0ken-in-query\n"
        "          headers: ['Authorization: Bearer-s3cr3t-value', 'Cookie: sessionid=c00kie-value']\n"
        "      - close: {code: 1000}\n    expect: {status: 101}\n"
    )
    outputs = {name: tmp_path / f"out.{name}" for name in ("json", "html", "markdown", "junit")}
    flags = [arg for name, path in outputs.items() for arg in (f"--{name}", str(path))]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wslab",
            "run",
            "--target",
            f"ws://127.0.0.1:{deployed}",
            "--token",
            TOKEN,
            "-s",
            str(suite),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    texts = [result.stdout, result.stderr] + [path.read_text() for path in outputs.values()]
    for secret in SECRETS:
        assert not any(secret in text for text in texts), secret
    assert REDACTED_PATTERN.search(outputs["json"].read_text())
    assert TOKEN not in "".join(texts)


@pytest.fixture(scope="module")
def tls_front(deployed: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """HAProxy terminating TLS with a self-signed certificate for localhost, in front of the server."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    (folder / "both.pem").write_text(cert.read_text() + key.read_text())
    port = free_port()
    (folder / "haproxy.cfg").write_text(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
        f"frontend tls\n  bind 127.0.0.1:{port} ssl crt {folder / 'both.pem'}\n  default_backend app\n"
        f"backend app\n  server app 127.0.0.1:{deployed}\n"
    )
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(folder / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(0.5)
    yield port, cert
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(10)


@pytest.mark.parametrize("trust", [["--insecure"], ["--ca-file", "CERT"]])
def test_wss_with_a_self_signed_certificate(tls_front: tuple[int, Path], trust: list[str]) -> None:
    port, cert = tls_front
    target = ["--target", f"wss://localhost:{port}", "--token", TOKEN, "--scenario", "websockets-echo"]
    trust = [str(cert) if arg == "CERT" else arg for arg in trust]
    ok = subprocess.run(
        [sys.executable, "-m", "wslab", "run", *target, *trust],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "✓101" in ok.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "wslab", "run", *target], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout


def test_wrong_token_is_a_clear_error(deployed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "run", "--target", f"ws://127.0.0.1:{deployed}", "--token", "wrong"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "refused the report token" in result.stderr and "Traceback" not in result.stderr


def test_compare_puts_the_real_deployment_beside_the_emulations(deployed: int, tmp_path: Path) -> None:
    page = tmp_path / "compare.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wslab",
            "compare",
            "--target",
            f"ws://127.0.0.1:{deployed}",
            "--token",
            TOKEN,
            "--markdown",
            str(page),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = page.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| | "))
    assert "**Replit dev URL**" in header and header.rstrip(" |").endswith("**target**")
    clients = next(line for line in text.splitlines() if line.startswith("| real WebSocket clients"))
    assert clients.rstrip(" |").endswith("✓ 7/7 pass")
    lifetime = next(line for line in text.splitlines() if line.startswith("| lifetime cap"))
    assert lifetime.rstrip(" |").endswith("| – not run"), "a real platform's limits are not measured here"
    assert "choose Replit Reserved VM" in text
