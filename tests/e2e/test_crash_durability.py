"""`kill -9` of the API server during concurrent writes loses no acknowledged write.

A supervisor-run API server takes creates from 8 concurrent clients; it is killed with
SIGKILL mid-stream and the supervisor restarts it. Every create that was answered 201 must be
there afterwards, whole, at the revision it was acknowledged with, and revisions written after
the restart must be higher than any before it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from tests.e2e.conftest import Cluster, free_port, start_cluster


def _apiserver_pid(state_dir: Path) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"apiserver" in argv and str(state_dir).encode() in argv and b"serve" in argv:
            return int(entry.name)
    return None


def _session(cluster: Cluster) -> aiohttp.ClientSession:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))
    return aiohttp.ClientSession(
        cluster.server,
        connector=aiohttp.TCPConnector(ssl=context, limit=16),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=10),
    )


async def _write_through_crash(cluster: Cluster) -> tuple[dict[str, tuple[int, float]], int, float]:
    acknowledged: dict[str, tuple[int, float]] = {}
    counter = iter(range(1_000_000))
    stop_at = time.monotonic() + 12
    killed_pid, killed_at = 0, 0.0

    async with _session(cluster) as session:

        async def writer() -> None:
            while time.monotonic() < stop_at:
                name = f"cm-{next(counter):06d}"
                body = orjson.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {"payload": name * 20},
                    }
                )
                try:
                    async with session.post(
                        "/api/v1/namespaces/default/configmaps", data=body
                    ) as resp:
                        if resp.status == 201:
                            stored = orjson.loads(await resp.read())
                            revision = int(stored["metadata"]["resourceVersion"])
                            acknowledged[name] = (revision, time.monotonic())
                except (TimeoutError, aiohttp.ClientError, ConnectionError):
                    await asyncio.sleep(0.05)

        async def killer() -> None:
            nonlocal killed_pid, killed_at
            await asyncio.sleep(2.0)
            pid = _apiserver_pid(cluster.state_dir)
            assert pid is not None, "the API server process was not found"
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            killed_pid = pid

        await asyncio.gather(killer(), *(writer() for _ in range(8)))
    return acknowledged, killed_pid, killed_at


async def _read_back(cluster: Cluster) -> list[dict]:
    async with _session(cluster) as session:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with session.get("/api/v1/namespaces/default/configmaps") as resp:
                    if resp.status == 200:
                        return list(orjson.loads(await resp.read())["items"])
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the API server did not come back"
            await asyncio.sleep(0.2)


@pytest.mark.deep
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "state", free_port(), "crash")
    try:
        acknowledged, killed, killed_at = asyncio.run(_write_through_crash(cluster))
        assert killed and _apiserver_pid(cluster.state_dir) not in (None, killed), "no restart"
        items = asyncio.run(_read_back(cluster))
    finally:
        cluster.unistack("down")
    stored = {i["metadata"]["name"]: i for i in items}
    assert len(acknowledged) > 100, "too few writes were acknowledged to prove anything"
    missing = sorted(set(acknowledged) - set(stored))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    for name, (revision, _) in acknowledged.items():
        obj = stored[name]
        assert int(obj["metadata"]["resourceVersion"]) == revision
        assert obj["data"] == {"payload": name * 20}, "half-written object"
    revisions = [int(i["metadata"]["resourceVersion"]) for i in items]
    assert len(set(revisions)) == len(revisions), "two objects share a revision"
    before = [rev for rev, at in acknowledged.values() if at < killed_at]
    after = [rev for rev, at in acknowledged.values() if at > killed_at + 0.5]
    assert before and after, "writes must be acknowledged on both sides of the crash"
    assert min(after) > max(before), "a revision went backwards across the restart"
