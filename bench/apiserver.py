"""API server benchmarks from issue 2: creates, large lists, GET under load, watch fan-out, RSS.

Each returns rows of (name, figure, unit, target, met) for the report in `__main__`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from dataclasses import dataclass

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import Server, now, percentile, rss_mib


@dataclass(frozen=True)
class Row:
    name: str
    figure: float
    unit: str
    target: str
    met: bool


def _pod(name: str, sent: float | None = None) -> bytes:
    annotations = {"bench/sent": repr(sent)} if sent is not None else {}
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app": "bench", "shard": name[-1]},
                "annotations": annotations,
            },
            "spec": {
                # no scheduler claims this name: the default one would otherwise write a
                # FailedScheduling status and Event for each node-less pod mid-measurement
                "schedulerName": "unistack-bench-unscheduled",
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox:1.36",
                        "command": ["sleep", "3600"],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    }
                ],
            },
        }
    )


async def _ensure_namespace(session: aiohttp.ClientSession, name: str) -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    async with session.post("/api/v1/namespaces", data=body) as resp:
        assert resp.status in (201, 409), await resp.text()


async def creates(
    server: Server, total: int = 10_000, clients: int = 16, ns: str = "bench"
) -> list[Row]:
    latencies: list[float] = []
    async with server.session(limit=clients) as session:
        await _ensure_namespace(session, ns)
        names = iter(range(total))

        async def client() -> None:
            for i in names:
                start = now()
                async with session.post(
                    f"/api/v1/namespaces/{ns}/pods", data=_pod(f"pod-{i:05d}")
                ) as resp:
                    await resp.read()
                    assert resp.status == 201, resp.status
                latencies.append(now() - start)

        began = now()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = now() - began
    rate = total / elapsed
    p99 = percentile(latencies, 99) * 1000
    return [
        Row(
            f"create pods over HTTPS, {clients} clients", rate, "objects/s", "≥ 1500", rate >= 1500
        ),
        Row("create latency p99", p99, "ms", "≤ 50", p99 <= 50),
    ]


def _list_repeatedly(server: Server, path: str, seconds: float) -> list[float]:
    """LIST in a loop in this (child) process, so decoding 25 MB replies here does not stall
    the GETs being timed in the parent's event loop."""

    async def run() -> list[float]:
        times: list[float] = []
        async with server.session(limit=1) as session:
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                start = now()
                async with session.get(path) as resp:
                    body = await resp.read()
                    assert resp.status == 200
                times.append(now() - start)
        assert len(orjson.loads(body)["items"]) >= 10_000
        return times

    return asyncio.run(run())


async def _get_histogram(server: Server) -> dict[float, float]:
    """Cumulative bucket counts of the server's own GET-one-pod latency histogram."""
    async with server.session(limit=1) as session, session.get("/metrics") as resp:
        text = await resp.text()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_bucket")
                and labels.get("verb") == "GET"
                and labels.get("resource") == "pods"
                and labels.get("scope") == "resource"
            ):
                buckets[float(labels["le"])] = sample.value
    return buckets


def _histogram_p99(before: dict[float, float], after: dict[float, float]) -> float:
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0.0
    for le, cumulative in counts:
        if total and cumulative >= 0.99 * total:
            return le
    return float("nan")


async def list_and_get(server: Server, ns: str = "bench", seconds: float = 10.0) -> list[Row]:
    get_times: list[float] = []
    histogram_before = await _get_histogram(server)
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        listing = loop.run_in_executor(
            pool, _list_repeatedly, server, f"/api/v1/namespaces/{ns}/pods", seconds
        )
        await asyncio.sleep(1.0)  # the child is up and listing
        async with server.session(limit=8) as session:
            stop = time.monotonic() + seconds - 1.5

            async def getter(offset: int) -> None:
                i = offset
                while time.monotonic() < stop:
                    start = now()
                    async with session.get(
                        f"/api/v1/namespaces/{ns}/pods/pod-{i % 10_000:05d}"
                    ) as resp:
                        await resp.read()
                        assert resp.status == 200
                    get_times.append(now() - start)
                    i += 7
                    await asyncio.sleep(0.002)

            await asyncio.gather(*(getter(k) for k in range(4)))
        list_times = await listing
    server_p99 = _histogram_p99(histogram_before, await _get_histogram(server)) * 1000
    list_p50 = percentile(list_times, 50) * 1000
    get_p99 = percentile(get_times, 99) * 1000
    return [
        Row("LIST 10,000 pods (p50)", list_p50, "ms", "≤ 300", list_p50 <= 300),
        Row("GET one pod p99 during LISTs, client-observed", get_p99, "ms", "≤ 10", get_p99 <= 10),
        Row(
            "GET one pod p99 during LISTs, server-side (≤ bucket)",
            server_p99,
            "ms",
            "≤ 10",
            server_p99 <= 10,
        ),
    ]


async def watch_fanout(
    server: Server, watchers: int = 50, events: int = 10_000, ns: str = "watchbench"
) -> list[Row]:
    delays: list[float] = []
    in_order = True
    async with server.session(limit=watchers + 16) as session:
        await _ensure_namespace(session, ns)
        async with session.get(f"/api/v1/namespaces/{ns}/configmaps") as resp:
            start_rv = (await resp.json())["metadata"]["resourceVersion"]
        ready = asyncio.Event()
        opened = 0

        async def watcher() -> int:
            nonlocal in_order, opened
            count, last = 0, int(start_rv)
            url = f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={start_rv}"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=300)) as resp:
                opened += 1
                if opened == watchers:
                    ready.set()
                async for line in resp.content:
                    event = orjson.loads(line)
                    meta = event["object"]["metadata"]
                    rv = int(meta["resourceVersion"])
                    in_order = in_order and rv > last
                    last = rv
                    delays.append(time.time() - float(meta["annotations"]["bench/sent"]))
                    count += 1
                    if count == events:
                        return count
            return count

        tasks = [asyncio.ensure_future(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(ready.wait(), 30)
        names = iter(range(events))

        async def writer() -> None:
            for i in names:
                body = orjson.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": f"cm-{i:05d}",
                            "annotations": {"bench/sent": repr(time.time())},
                        },
                    }
                )
                async with session.post(f"/api/v1/namespaces/{ns}/configmaps", data=body) as resp:
                    await resp.read()

        await asyncio.gather(*(writer() for _ in range(8)))
        counts = await asyncio.wait_for(asyncio.gather(*tasks), 300)
    complete = all(c == events for c in counts) and in_order
    p99 = percentile(delays, 99) * 1000
    return [
        Row(
            f"{watchers} watchers x {events} events, all in order",
            float(sum(counts)),
            "events",
            "all",
            complete,
        ),
        Row("watch delivery p99 (send → receive)", p99, "ms", "≤ 100", p99 <= 100),
    ]


def memory(server: Server) -> list[Row]:
    pid = server.apiserver_pid()
    rss = rss_mib(pid) if pid else float("nan")
    return [Row("API server RSS with 10,000 pods stored", rss, "MiB", "≤ 300", rss <= 300)]
