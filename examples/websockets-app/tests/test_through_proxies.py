"""The app behind each topology in pytest.ini: every test runs once per topology."""

import os
import urllib.error
import urllib.request

from websockets.sync.client import connect


def test_echo_crosses_the_proxy(wslab_url):
    with connect(wslab_url + "chat") as websocket:
        websocket.send("hello through the proxy")
        assert websocket.recv(timeout=5) == "hello through the proxy"


def test_the_app_receives_the_upgrade_headers(wslab_url, wslab_received):
    with connect(wslab_url + "chat") as websocket:
        websocket.send("ping")
        websocket.recv(timeout=5)
    (upgraded,) = [connection for connection in wslab_received() if connection.upgraded]
    assert upgraded.request.asks_upgrade, upgraded.raw_head


def test_a_health_check_gets_200_only_with_the_fix(wslab_url, wslab_received):
    try:
        status = urllib.request.urlopen(wslab_url.replace("ws://", "http://"), timeout=5).status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == (200 if os.environ.get("FIXED") else 426)
    (request,) = wslab_received()
    assert not request.request.asks_upgrade, "plain HTTP reached the app, as the proxy sent it"
