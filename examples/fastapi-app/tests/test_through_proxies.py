"""The FastAPI app behind each topology in pytest.ini: every test runs once per topology."""

import urllib.request

from websockets.sync.client import connect


def test_echo_crosses_the_proxy(wslab_url):
    with connect(wslab_url + "ws") as websocket:
        websocket.send("hello through the proxy")
        assert websocket.recv(timeout=5) == "hello through the proxy"


def test_the_page_is_served(wslab_url):
    with urllib.request.urlopen(wslab_url.replace("ws://", "http://"), timeout=5) as response:
        assert response.status == 200
