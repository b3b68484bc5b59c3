"""A lame-duck server keeps serving after SIGTERM, with its health check failing, then exits.

The server runs in a child process (signals go to a process's main thread), built from
`runtime.lameduck` around a small Starlette app whose `/healthz` reads the shared `Draining`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

SERVER = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from unistack.runtime import lameduck

draining = lameduck.Draining()

async def healthz(request):
    if draining.active:
        return PlainTextResponse("draining", 503)
    return PlainTextResponse("ok")

async def hello(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/healthz", healthz), Route("/", hello)])
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
lameduck.LameDuckServer(config, float(sys.argv[2]), draining).run()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _start(port: int, drain: float) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(drain)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    pytest.fail("the server did not start")


def test_sigterm_drains_then_exits() -> None:
    port = _free_port()
    server = _start(port, drain=1.5)
    try:
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert _get(f"http://127.0.0.1:{port}/healthz") == (503, "draining")
        assert _get(f"http://127.0.0.1:{port}/") == (200, "hello")
        signalled = time.monotonic()
        server.wait(timeout=10)
        assert time.monotonic() - signalled > 0.8, "it stopped before the drain was over"
        assert server.returncode == -signal.SIGTERM
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{port}/")
    finally:
        if server.poll() is None:
            server.kill()


def test_a_second_signal_ends_the_drain() -> None:
    port = _free_port()
    server = _start(port, drain=30)
    try:
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 503
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=5)
    finally:
        if server.poll() is None:
            server.kill()
