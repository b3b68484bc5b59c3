"""`nodes/{name}/proxy/{path}`: any request relayed to the node's agent, its answer back as is."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.integration.conftest import Api
from unistack.apiserver.app import ApiServer
from unistack.client.transport import AsgiTransport
from unistack.store.sqlite import SqliteStore

TOKEN = "node-proxy-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        },
    }


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[Api, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "body": await request.read(),
            }
        )
        return web.json_response({"power_state": 1}, status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(store, node_proxy_token=TOKEN)
    await server.start()
    api = Api(AsgiTransport(server), server)
    status, _ = await api.call("POST", "/api/v1/nodes", node("up", port))
    assert status == 201
    status, _ = await api.call("POST", "/api/v1/nodes", node("gone", free_port()))
    assert status == 201
    try:
        yield api, seen
    finally:
        server.stop()
        store.close()
        await runner.cleanup()


async def test_a_request_reaches_the_agent_with_the_node_proxy_token(
    proxied: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, seen = proxied
    body = {"driver": "container"}
    status, answer = await api.call(
        "PUT", "/api/v1/nodes/up/proxy/instances/s1/console", body, params={"lines": "5"}
    )
    assert status == 202 and answer == {"power_state": 1}
    assert seen == [
        {
            "method": "PUT",
            "path": "/instances/s1/console",
            "query": {"lines": "5"},
            "auth": f"Bearer {TOKEN}",
            "body": orjson.dumps(body),
        }
    ]


async def test_an_unreachable_agent_or_unknown_node_is_a_status(
    proxied: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, _ = proxied
    status, error = await api.call("GET", "/api/v1/nodes/gone/proxy/instances")
    assert status == 503 and error["kind"] == "Status" and "cannot reach" in error["message"]
    status, error = await api.call("GET", "/api/v1/nodes/nobody/proxy/instances")
    assert status == 404 and error["reason"] == "NotFound"
