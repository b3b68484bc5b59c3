"""Two replicas of the OpenStack APIs over one API server: a write through one is readable at
once through the other, although the other's watch is behind.

Replica B's client reaches the API server through a transport that holds every watch chunk
back for `LAG` seconds: what a busy replica's informer looks like. Requests go to the real
gateway apps (`gateway.create_app`), so `openstack.readyourwrites` and `client.freshness` are
what is tested, over the real API server and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.cloud import PASSWORD
from tests.integration.test_gateway_services import settings_for
from unistack.apiserver.app import ApiServer
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport, StreamResponse
from unistack.iaas.network import kinds as network_kinds
from unistack.openstack import gateway
from unistack.store import SqliteStore

LAG = 1.0


class LaggingTransport(AsgiTransport):
    """The API server in this process, with watch events arriving `LAG` seconds late."""

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[StreamResponse]:
        async with super().stream(method, path, **kwargs) as response:

            async def late() -> AsyncIterator[bytes]:
                async for chunk in response._chunks:
                    await asyncio.sleep(LAG)
                    yield chunk

            yield StreamResponse(response.status, response.headers, late())


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    store = SqliteStore(str(tmp_path / "store.db"))
    api = ApiServer(store)
    await api.start()
    yield api
    api.stop()
    store.close()


async def _token(web: AsgiTransport) -> str:
    user = {"name": "admin", "domain": {"id": "default"}, "password": PASSWORD}
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": scope}}  # fmt: skip
    answer = await web.request("POST", "/identity/v3/auth/tokens", body=orjson.dumps(body),
                               headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status == 201, answer.body
    return answer.headers["x-subject-token"]


@contextlib.asynccontextmanager
async def replicas(server: ApiServer, tmp_path: Path) -> AsyncIterator[tuple[Any, ...]]:
    """Replica A (up to date) and B (lagging) as transports, B's app, and request headers."""
    settings = settings_for(tmp_path, services=("identity", "network"))
    replica_a = gateway.create_app(settings, connect=lambda: Client(AsgiTransport(server)))
    replica_b = gateway.create_app(settings, connect=lambda: Client(LaggingTransport(server)))
    async with (
        replica_a.router.lifespan_context(replica_a),
        replica_b.router.lifespan_context(replica_b),
    ):
        a = AsgiTransport(replica_a)
        headers = {"x-auth-token": await _token(a), "content-type": "application/json"}
        yield a, AsgiTransport(replica_b), replica_b, headers


async def _create(web: AsgiTransport, headers: dict[str, str], name: str) -> str:
    body = orjson.dumps({"network": {"name": name}})
    made = await web.request("POST", "/network/v2.0/networks", headers=headers, body=body)
    assert made.status == 201, made.body
    return f"/network/v2.0/networks/{orjson.loads(made.body)['network']['id']}"


async def test_a_network_made_through_one_replica_is_found_through_the_other(
    server: ApiServer, tmp_path: Path
) -> None:
    async with replicas(server, tmp_path) as (a, b, _, headers):
        path = await _create(a, headers, "across")
        started = time.monotonic()
        shown = await b.request("GET", path, headers=headers)
        assert shown.status == 200, shown.body
        assert orjson.loads(shown.body)["network"]["name"] == "across"
        assert time.monotonic() - started < LAG * 3

        # A PUT through the lagging replica: the body is kept and sent again.
        body = orjson.dumps({"network": {"name": "renamed"}})
        renamed = await b.request("PUT", path, headers=headers, body=body)
        assert renamed.status == 200, renamed.body
        assert orjson.loads(renamed.body)["network"]["name"] == "renamed"

        missing = await b.request("GET", "/network/v2.0/networks/" + "0" * 32, headers=headers)
        assert missing.status == 404
        assert orjson.loads(missing.body)["NeutronError"]["type"] == "NetworkNotFound"

        gone = await _create(a, headers, "gone")
        assert (await b.request("DELETE", gone, headers=headers)).status == 204
        assert (await a.request("GET", gone, headers=headers)).status == 404


async def test_the_lagging_replica_alone_does_not_have_the_new_network(
    server: ApiServer, tmp_path: Path
) -> None:
    """The lag is real: without the catch-up, replica B would have answered 404."""
    async with replicas(server, tmp_path) as (a, _, replica_b, headers):
        path = await _create(a, headers, "cached?")
        networks = replica_b.state.platform.informers.informer(network_kinds.NETWORKS.ref)
        assert networks.cache.has_index("id"), "not the network service's informer"
        assert not networks.cache.by_index("id", path.rsplit("/", 1)[1])


async def test_a_change_made_through_one_replica_is_seen_through_the_other(
    server: ApiServer, tmp_path: Path
) -> None:
    """Not a miss but a stale object: B has the network, without the tag A just added."""
    async with replicas(server, tmp_path) as (a, b, _, headers):
        path = await _create(a, headers, "tagged")
        await asyncio.sleep(LAG * 1.5)  # B has the network by now
        assert (await b.request("GET", path, headers=headers)).status == 200
        assert (await a.request("PUT", f"{path}/tags/red", headers=headers)).status == 201
        checked = await b.request("GET", f"{path}/tags/red", headers=headers)
        assert checked.status == 204, checked.body
        absent = await b.request("GET", f"{path}/tags/blue", headers=headers)
        assert absent.status == 404
