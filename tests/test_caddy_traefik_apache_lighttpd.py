"""Caddy, Traefik, Apache, lighttpd and Varnish, each bare and configured for WebSockets.

Asserted on the real proxies in front of the real server (the session ``matrix``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from wslab.proxies import REGISTRY
from wslab.records import Outcome, Run, header_value

WEBSOCKET_CLIENTS = ["websockets-echo", "chrome-handshake", "firefox-keepalive-upgrade", "lowercase-headers"]
CARRY = [
    "caddy-default",
    "caddy-websocket",
    "traefik-default",
    "traefik-websocket",
    "apache-websocket",
    "lighttpd-websocket",
    "varnish-websocket",
]
# Bare configs that drop the upgrade: the Connection header the server receives instead, and a
# directive the fix must name.
DROP = {
    "apache-default": ("Keep-Alive", "upgrade=websocket"),
    "lighttpd-default": ("close", 'proxy.header = ("upgrade" => "enable")'),
    "varnish-default": (None, "return (pipe)"),
}


def received(matrix: Run, topology: str, scenario: str) -> dict:
    cell = matrix.cell(topology, scenario)
    assert cell.server, f"{topology}/{scenario}: nothing reached the server"
    return cell.server[0].request


@pytest.mark.parametrize("scenario", WEBSOCKET_CLIENTS)
@pytest.mark.parametrize("topology", CARRY)
def test_websocket_clients_pass(matrix: Run, topology: str, scenario: str) -> None:
    cell = matrix.cell(topology, scenario)
    assert cell.outcome == Outcome.PASS, (cell.summary, cell.diagnosis)
    assert cell.client.received.status == 101
    request = received(matrix, topology, scenario)
    assert request.version == "HTTP/1.1"
    assert header_value(request.headers, "Upgrade").lower() == "websocket"
    assert "upgrade" in header_value(request.headers, "Connection").lower()


@pytest.mark.parametrize("scenario", WEBSOCKET_CLIENTS)
@pytest.mark.parametrize("topology", sorted(DROP))
def test_bare_configs_drop_the_upgrade_and_name_the_fix(matrix: Run, topology: str, scenario: str) -> None:
    connection, directive = DROP[topology]
    cell = matrix.cell(topology, scenario)
    assert cell.outcome == Outcome.FAIL
    assert cell.client.received.status == 426
    request = received(matrix, topology, scenario)
    assert header_value(request.headers, "Upgrade") is None
    assert header_value(request.headers, "Connection") == connection
    assert cell.server[0].error.text == (
        f"invalid Connection header: {connection}" if connection else "missing Connection header"
    )
    assert cell.diagnosis.rule == "proxy-removed-upgrade"
    assert directive in cell.diagnosis.fix


def test_path_query_and_subprotocol_survive(matrix: Run) -> None:
    for topology in CARRY:
        path = received(matrix, topology, "path-and-query").path
        assert path == "/rooms/42/live?since=1700000000&filter=a%20b&empty=", topology
        assert matrix.cell(topology, "subprotocol").client.subprotocol == "wslab.v1", topology


def test_go_proxies_turn_an_http10_upgrade_into_http11(matrix: Run) -> None:
    """Caddy and Traefik forward an HTTP/1.0 upgrade as HTTP/1.1, so the client gets 101."""
    for topology in ("caddy-default", "caddy-websocket", "traefik-default", "traefik-websocket"):
        cell = matrix.cell(topology, "http10-upgrade")
        assert cell.client.received.status == 101, topology
        assert received(matrix, topology, "http10-upgrade").version == "HTTP/1.1"
        assert cell.diagnosis.rule == "proxy-upgraded-http10"


def test_http10_upgrade_elsewhere(matrix: Run) -> None:
    # lighttpd refuses it itself; piping Varnish passes it on unchanged, so websockets answers 505.
    for topology in ("lighttpd-default", "lighttpd-websocket"):
        cell = matrix.cell(topology, "http10-upgrade")
        assert cell.client.received.status == 400 and cell.server == [], topology
    assert matrix.cell("varnish-websocket", "http10-upgrade").client.received.status == 505
    assert received(matrix, "varnish-websocket", "http10-upgrade").version == "HTTP/1.0"


def test_apache_upgrades_an_http10_request_upstream_and_never_answers_it(matrix: Run) -> None:
    """The server's 101 reaches Apache, nothing reaches the client: the cell says both, and stops
    waiting once the run's own relays say it has waited long enough (wslab.relay_patience),
    instead of waiting out the step timeout."""
    cell = matrix.cell("apache-websocket", "http10-upgrade")
    assert cell.client.timed_out and cell.client.received is None
    assert cell.server[0].response.status == 101 and cell.server[0].request.version == "HTTP/1.1"
    said = re.fullmatch(
        r"the server answered 101 Switching Protocols \d+\.\d{3} s after the request; "
        r"nothing reached the client within (\d+\.\d\d) s after that \((.*)\)",
        cell.client.steps[0].detail,
    )
    assert said, cell.client.steps[0].detail
    patience, yardstick = float(said[1]), said[2]
    slowest = re.fullmatch(r"the slowest of this run's \d+ relayed responses took (\d+\.\d{3}) s", yardstick)
    if slowest:
        assert patience == pytest.approx(max(0.2, 5 * float(slowest[1])), abs=0.01)
    else:
        assert (patience, yardstick) == (0.5, "no response relayed in this run yet to compare with")
    assert cell.duration < matrix.options.step_timeout, cell.duration


def test_head_passes_through_except_varnish(matrix: Run) -> None:
    for topology in CARRY + ["apache-default", "lighttpd-default"]:
        method = received(matrix, topology, "head-root").method
        assert method == ("GET" if topology.startswith("varnish") else "HEAD"), topology


def test_new_kinds_are_versioned(matrix: Run) -> None:
    proxies = matrix.components.proxies
    for kind in ("caddy", "traefik", "apache", "lighttpd"):
        assert proxies[kind] and proxies[kind][0].isdigit(), (kind, proxies.get(kind))


@pytest.mark.fast
def test_wheel_binaries_are_found_next_to_python() -> None:
    for kind in ("caddy", "traefik"):
        wheel_binary = Path(sys.executable).parent / REGISTRY[kind].executable
        if wheel_binary.is_file():
            assert REGISTRY[kind].locate() == str(wheel_binary)
