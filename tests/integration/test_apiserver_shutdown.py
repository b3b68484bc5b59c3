"""SIGTERM to the API server ends its watches cleanly and the process exits at once.

A watch never finishes by itself; uvicorn's shutdown waits for the requests in flight, so
before `apiserver.server` ended the watches it sat on them until the supervisor's SIGKILL.
The server runs in a child process (signals go to a process's main thread) over a SQLite
file, with no authenticator (every request allowed), plain HTTP on a loopback port.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

SERVER = """
import sys
from unistack.apiserver.server import ServerSettings, serve

serve(ServerSettings(db_path=sys.argv[1], port=int(sys.argv[2])))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(db: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    pytest.fail("the API server did not start")


def test_sigterm_ends_the_watches_and_the_server_exits(tmp_path: Path) -> None:
    port = _free_port()
    server = _start(tmp_path / "store.db", port)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/v1/namespaces/default/configmaps?watch=true")
        watch = connection.getresponse()
        assert watch.status == 200
        maker = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = orjson.dumps({"metadata": {"name": "seen"}, "data": {"a": "1"}})
        maker.request("POST", "/api/v1/namespaces/default/configmaps", body,
                      {"Content-Type": "application/json"})  # fmt: skip
        assert maker.getresponse().status == 201
        event = orjson.loads(watch.readline())
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "seen")

        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # the stream ends with its last chunk (a reset would raise IncompleteRead here)
        assert watch.read() == b""
        server.wait(timeout=10)  # before, it waited on the watch until it was killed
        took = time.monotonic() - signalled
        print(f"\nAPI server stopped {took:.2f} s after SIGTERM with a watch open")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
