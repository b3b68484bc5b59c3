"""`ServiceProxy` against the real API server in-process, with the fake nftables driver.

The test writes a Service and an EndpointSlice itself (no EndpointSlice controller runs) and
watches the table the proxy applies follow them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.agent.proxy import ProxyOptions, ServiceProxy
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTSLICES, SERVICES
from unistack.dataplane.nftables import FakeNftables

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(30)

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"clusterIP": "10.96.50.50", "ports": [{"name": "http", "port": 80}]},
}


def endpoint_slice(*ready: bool) -> Obj:
    endpoints = [
        {"addresses": [f"10.1.0.{n + 1}"], "conditions": {"ready": r}} for n, r in enumerate(ready)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


async def test_the_table_follows_services_and_endpoint_readiness(client: Client) -> None:
    driver = FakeNftables()
    proxy = ServiceProxy(client, driver, ProxyOptions(coalesce_delay=0.01))
    async with running(proxy):
        await eventually(lambda: _holds(proxy.applies >= 1))
        assert "10.96.50.50" not in (proxy.last_ruleset or "")
        await client.create(SERVICES, SERVICE)
        created = await client.create(ENDPOINTSLICES, endpoint_slice(True, True))

        async def both_endpoints() -> bool:
            text = proxy.last_ruleset or ""
            return "dnat to 10.1.0.1:8080" in text and "dnat to 10.1.0.2:8080" in text

        await eventually(both_endpoints, timeout=5)
        assert "10.96.50.50 . tcp . 80" in (proxy.last_ruleset or "")
        applies = proxy.applies
        created["endpoints"][1]["conditions"]["ready"] = False
        await client.update(ENDPOINTSLICES, created)

        async def second_gone() -> bool:
            text = proxy.last_ruleset or ""
            return "10.1.0.2" not in text and "dnat to 10.1.0.1:8080" in text

        await eventually(second_gone, timeout=5)
        assert proxy.applies == applies + 1
        assert driver.tables[("ip", "unistack-proxy")] == proxy.last_ruleset
    assert driver.tables == {}, "the table is deleted when the proxy stops"


async def test_unchanged_text_is_not_applied_again(client: Client) -> None:
    driver = FakeNftables()
    proxy = ServiceProxy(client, driver, ProxyOptions(coalesce_delay=0.01, delete_on_stop=False))
    async with running(proxy):
        await eventually(lambda: _holds(proxy.applies == 1))
        other = {
            **SERVICE,
            "metadata": {"name": "other", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        }
        await client.create(SERVICES, other)  # headless: no rules, same text
        await eventually(lambda: _holds(len(proxy.services.cache) == 2))
        await _settle(proxy)
        assert proxy.applies == 1
    assert ("ip", "unistack-proxy") in driver.tables


async def test_a_failed_apply_is_retried(client: Client) -> None:
    driver = FakeNftables(fail_next=RuntimeError("nft said no"))
    options = ProxyOptions(coalesce_delay=0.01, retry_delay=0.05)
    proxy = ServiceProxy(client, driver, options)
    async with running(proxy):
        await eventually(lambda: _holds(proxy.applies == 1), timeout=5)


async def _holds(value: bool) -> bool:
    return value


async def _settle(proxy: ServiceProxy) -> None:
    await asyncio.sleep(proxy.options.coalesce_delay * 10)
