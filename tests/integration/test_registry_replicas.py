"""Registry replicas sharing one port over one store, as the control plane's registry pods
and the supervisor's registry do (`cli.selfhost`): real uvicorn servers on a loopback port
bound with SO_REUSEPORT, driven by a client that opens a new connection per request, so
the steps of one push land on either replica."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.client
import os
import socket
import threading
from pathlib import Path

import pytest

from tests.integration.harness import eventually
from unistack.cli import selfhost
from unistack.images import registry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request on a connection of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"content-type": "application/octet-stream"} if body else {}
        connection.request(method, target, body=body, headers=headers)
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def push_and_pull(port: int, data: bytes) -> None:
    """A chunked blob upload (start, two chunks, finish), then the blob read back."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = call(port, "POST", "/v2/load/test/blobs/uploads/")
    assert status == 202, status
    location = headers["location"]
    half = len(data) // 2
    for chunk in (data[:half], data[half:]):
        status, headers, _ = call(port, "PATCH", location, chunk)
        assert status == 202, status
        location = headers["location"]
    status, _, _ = call(port, "PUT", f"{location}?digest={digest}")
    assert status == 201, status
    status, _, body = call(port, "GET", f"/v2/load/test/blobs/{digest}")
    assert (status, body) == (200, data)


class Pushes:
    """Pushes and pulls in a thread until stopped, counting what worked and what failed."""

    def __init__(self, port: int) -> None:
        self.port, self.ok, self.failures = port, 0, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                push_and_pull(self.port, os.urandom(4096))
            except (AssertionError, OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
            else:
                self.ok += 1

    async def stop(self) -> None:
        """Stop and wait, off the event loop (the replicas answering it run there)."""
        self.stopping.set()
        await asyncio.to_thread(self.thread.join, 30)


@pytest.fixture
def migrate_requests() -> object:
    """`net.ipv4.tcp_migrate_req`, so a closing listener's queued connections go to the
    other replica (as the pods and the supervisor set it); restored after."""
    sysctl = selfhost.TCP_MIGRATE_REQ
    if not sysctl.exists() or not os.access(sysctl, os.W_OK):
        pytest.skip("needs root and Linux 5.14+ (net.ipv4.tcp_migrate_req)")
    before = sysctl.read_text().strip()
    assert selfhost.allow_request_migration()
    yield
    sysctl.write_text(before)


async def test_two_replicas_share_a_push_and_one_stops_failing_nothing(
    tmp_path: Path, migrate_requests: object
) -> None:
    port, store = free_port(), tmp_path / "images"
    beats = {name: tmp_path / name / "heartbeat" for name in ("old", "new")}
    replicas = {
        name: asyncio.create_task(
            selfhost.registry_pod(store, "127.0.0.1", port, heartbeat=beat, drain_seconds=1.0)
        )
        for name, beat in beats.items()
    }
    pushes = Pushes(port)
    try:
        await eventually(lambda: _holds(all(beat.exists() for beat in beats.values())))
        pushes.thread.start()
        await eventually(lambda: _holds(pushes.ok >= 20))
        replicas["old"].cancel()
        await asyncio.sleep(0.3)
        # not Ready from the moment it is told to stop, while it serves on its drain
        assert not beats["old"].exists() and not replicas["old"].done()
        await asyncio.wait([replicas["old"]])
        done = pushes.ok
        await eventually(lambda: _holds(pushes.ok >= done + 20))
    finally:
        await pushes.stop()
        for task in replicas.values():
            task.cancel()
        await asyncio.gather(*replicas.values(), return_exceptions=True)
    assert pushes.failures == [], pushes.failures[:5]
    assert not any(beat.exists() for beat in beats.values())
    print(f"\n{pushes.ok} pushes and pulls over two replicas, then one, none failed")


async def test_a_registry_that_cannot_bind_fails_and_says_nothing(tmp_path: Path) -> None:
    """A port held by a listener that does not share it: the replica fails at once, and its
    heartbeat was never written."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        beat = tmp_path / "heartbeat"
        with pytest.raises(OSError) as failed:
            await asyncio.wait_for(
                selfhost.registry_pod(tmp_path / "images", "127.0.0.1", port, heartbeat=beat),
                timeout=10,
            )
    assert failed.value.errno == errno.EADDRINUSE  # at once, not a timeout
    assert not beat.exists()


async def test_the_shared_listener_accepts_beside_another(tmp_path: Path) -> None:
    """Two `shared_listener`s on one address: both bind, and the registry on either answers
    the base check."""
    port = free_port()
    first = registry.shared_listener("127.0.0.1", port)
    try:
        serving = asyncio.Event()
        task = asyncio.create_task(
            registry.run(tmp_path / "images", "127.0.0.1", port, serving=serving)
        )
        await asyncio.wait_for(serving.wait(), timeout=10)
        first.close()  # nobody accepts on it: the kernel may have queued a connection there
        status, headers, _ = await asyncio.to_thread(call, port, "GET", "/v2/")
        assert status == 200 and headers["docker-distribution-api-version"] == "registry/2.0"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not serving.is_set()
    finally:
        first.close()


async def _holds(value: bool) -> bool:
    return value
