"""The level-triggered sync loop against the real API server, in-process."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client
from unistack.client.resources import CONFIGMAPS, SECRETS
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

pytestmark = pytest.mark.timeout(30)


def config_map(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}


async def test_a_burst_costs_few_passes_failures_retry_and_lookups_stay_quiet(
    client: Client,
) -> None:
    watched, lookup = Informer(client, CONFIGMAPS, "default"), Informer(client, SECRETS, "default")
    seen: list[int] = []
    failures = [1]  # the first pass after the burst fails once

    async def sync() -> None:
        count = len(watched.cache)
        if count == 10 and failures:
            failures.pop()
            raise RuntimeError("the host said no")
        seen.append(count)

    loop = SyncLoop("test", sync, [watched], lookups=[lookup], coalesce=0.2, retry=0.1)
    async with running(loop):

        async def first_pass() -> bool:
            return seen == [0]

        await eventually(first_pass)
        await asyncio.gather(*(client.create(CONFIGMAPS, config_map(f"c{i}"), "default")
                               for i in range(10)))  # fmt: skip

        async def settled() -> bool:
            return bool(seen) and seen[-1] == 10

        await eventually(settled)
        assert len(seen) <= 4, seen  # ten events, coalesced
        assert not failures  # the failed pass was retried
        passes = len(seen)
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
        await client.create(SECRETS, secret, "default")
        await eventually(lambda: _cached(lookup, 1))
        await asyncio.sleep(0.4)
        assert len(seen) == passes  # a lookup's change runs no pass


async def _cached(informer: Informer, count: int) -> bool:
    return len(informer.cache) == count
