"""The issue's must-show outcomes, asserted on real proxies in front of the real server."""

from __future__ import annotations

import pytest

from wslab.records import Outcome, Run, header_value

WEBSOCKET_CLIENTS = ["websockets-echo", "chrome-handshake", "firefox-keepalive-upgrade"]


def server_request(matrix: Run, topology: str, scenario: str) -> dict:
    cell = matrix.cell(topology, scenario)
    assert cell.server, f"{topology}/{scenario}: nothing reached the server"
    return cell.server[0]


@pytest.mark.parametrize("result", ["matrix", "seed_matrix"])
def test_seed_message_is_plain_get_through_keepalive_proxy(result: str, request) -> None:
    matrix = request.getfixturevalue(result)
    cell = matrix.cell("haproxy-default", "browser-tab-get")
    received = server_request(matrix, "haproxy-default", "browser-tab-get")
    assert header_value(cell.client.sent.headers, "Connection") == "keep-alive"
    assert header_value(received.request.headers, "Connection") is None
    # Debian's default haproxy.cfg has no "option forwardfor": nothing is added, only Connection goes.
    assert header_value(received.request.headers, "X-Forwarded-For") is None
    assert received.error.text == "missing Connection header"
    assert cell.outcome == Outcome.FAIL
    assert cell.diagnosis.rule == "plain-http-through-keepalive-proxy"
    assert "not a WebSocket client" in cell.diagnosis.cause
    assert "process_request" in cell.diagnosis.fix
    # A real WebSocket client through the same proxy is upgraded.
    echo = matrix.cell("haproxy-default", "websockets-echo")
    assert echo.outcome == Outcome.PASS and echo.client.received.status == 101


def test_direct_browser_get_names_keep_alive(matrix: Run) -> None:
    received = server_request(matrix, "direct", "browser-tab-get")
    assert received.error.text == "invalid Connection header: keep-alive"
    assert matrix.cell("direct", "browser-tab-get").diagnosis.rule == "client-sent-no-upgrade"


@pytest.mark.parametrize("scenario", WEBSOCKET_CLIENTS)
def test_nginx_default_downgrades_and_nginx_websocket_passes(matrix: Run, scenario: str) -> None:
    cell = matrix.cell("nginx-default", scenario)
    received = server_request(matrix, "nginx-default", scenario).request
    assert cell.outcome == Outcome.FAIL
    assert received.version == "HTTP/1.0"
    assert header_value(received.headers, "Connection") == "close"
    assert header_value(received.headers, "Upgrade") is None
    assert cell.diagnosis.rule == "proxy-downgraded-http10"
    assert "proxy_http_version 1.1" in cell.diagnosis.fix
    assert matrix.cell("nginx-websocket", scenario).outcome == Outcome.PASS


def test_nginx_default_with_seed_server_gives_502(seed_matrix: Run) -> None:
    cell = seed_matrix.cell("nginx-default", "websockets-echo")
    assert cell.client.received.status == 502
    assert server_request(seed_matrix, "nginx-default", "websockets-echo").response is None


@pytest.mark.parametrize("scenario", WEBSOCKET_CLIENTS)
def test_envoy_default_rejects_and_envoy_websocket_passes(matrix: Run, scenario: str) -> None:
    cell = matrix.cell("envoy-default", scenario)
    assert cell.outcome == Outcome.FAIL
    assert cell.client.received.status == 403
    assert cell.server == []
    assert cell.diagnosis.rule == "proxy-rejected-upgrade"
    assert "upgrade_configs" in cell.diagnosis.fix
    assert matrix.cell("envoy-websocket", scenario).outcome == Outcome.PASS


def test_same_server_error_two_causes_told_apart(matrix: Run) -> None:
    client = matrix.cell("varnish-default", "websockets-echo")
    browser = matrix.cell("varnish-default", "browser-tab-get")
    for cell in (client, browser):
        assert cell.server[0].error.text == "missing Connection header"
    assert header_value(client.client.sent.headers, "Upgrade") == "websocket"
    assert client.diagnosis.rule == "proxy-removed-upgrade"
    assert "the proxy removed the upgrade the client sent" in client.diagnosis.cause.lower()
    assert browser.diagnosis.rule == "plain-http-through-keepalive-proxy"
    assert "the client sent no upgrade" in browser.diagnosis.cause.lower()


def test_every_failed_cell_has_cause_and_fix(matrix: Run, seed_matrix: Run) -> None:
    for result in (matrix, seed_matrix):
        for cell in result.cells:
            assert cell.outcome in (Outcome.PASS, Outcome.FAIL, Outcome.BLOCKED, Outcome.INFORMATIONAL), (
                cell.topology,
                cell.scenario,
                cell.error,
            )
            if cell.outcome in (Outcome.FAIL, Outcome.INFORMATIONAL):
                assert cell.diagnosis and cell.diagnosis.cause and cell.diagnosis.fix
            if cell.outcome == Outcome.BLOCKED:
                assert result.cell(cell.topology, "websockets-echo").outcome == Outcome.FAIL


def test_path_query_and_subprotocol_survive_good_proxies(matrix: Run) -> None:
    for topology in ("direct", "nginx-websocket", "haproxy-default", "envoy-websocket"):
        path = server_request(matrix, topology, "path-and-query").request.path
        assert path == "/rooms/42/live?since=1700000000&filter=a%20b&empty="
        assert matrix.cell(topology, "subprotocol").client.subprotocol == "wslab.v1"


def test_raw_headers_keep_order_and_case(matrix: Run) -> None:
    cell = matrix.cell("direct", "lowercase-headers")
    request = server_request(matrix, "direct", "lowercase-headers").request
    received = [name for name, _ in request.headers]
    sent = [name for name, _ in cell.client.sent.headers]
    assert received == sent == ["host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"]
    assert cell.outcome == Outcome.PASS


def test_health_check_option_removes_the_error(healthcheck_matrix: Run) -> None:
    cell = healthcheck_matrix.cell("haproxy-default", "browser-tab-get")
    assert cell.outcome == Outcome.PASS
    assert cell.client.received.status == 200
    assert cell.server[0].error is None
    assert healthcheck_matrix.cell("haproxy-default", "websockets-echo").outcome == Outcome.PASS


def test_versions_differ_on_head_and_http10(matrix: Run, seed_matrix: Run) -> None:
    assert seed_matrix.components.websockets_server == "15.0.1"
    assert matrix.cell("direct", "head-root").client.received.status == 405
    seed_head = seed_matrix.cell("direct", "head-root")
    assert seed_head.client.received is None
    assert seed_head.server[0].error.text == "did not receive a valid HTTP request"
    assert "got HEAD" in seed_head.server[0].error.cause
    assert seed_head.diagnosis.rule == "server-closed-without-response"
    assert matrix.cell("direct", "http10-upgrade").client.received.status == 505


def test_tcp_probe_is_seen_only_where_it_reaches_the_server(seed_matrix: Run) -> None:
    direct = seed_matrix.cell("direct", "tcp-probe")
    assert direct.outcome == Outcome.PASS
    assert [c.bytes_received for c in direct.server] == [0]
    assert direct.server[0].error.text == "did not receive a valid HTTP request"
    assert "EOFError" in direct.server[0].error.cause
    # A proxy accepts the probe itself and never opens an upstream connection.
    assert seed_matrix.cell("haproxy-default", "tcp-probe").server == []


def test_components_are_versioned(matrix: Run) -> None:
    proxies = matrix.components.proxies
    assert set(proxies) == {"nginx", "haproxy", "envoy", "varnish", "caddy", "traefik", "apache", "lighttpd"}
    assert all(version and version != "unknown" for version in proxies.values())
