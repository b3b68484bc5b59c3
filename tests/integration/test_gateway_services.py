"""One OpenStack API per process: a gateway serving only some services, its `/healthz`, and
`Internal` calls answered in-process for the services it serves and over real HTTP (a
second server on loopback) for the others."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.integration.cloud import PASSWORD
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.openstack import gateway
from unistack.openstack.platform import Internal, is_local
from unistack.tokens import TokenCodec, ensure_key_repository, load_keys

Obj = dict[str, Any]


def settings_for(tmp_path: Path, **overrides: Any) -> gateway.GatewaySettings:
    keys = tmp_path / "fernet-keys"
    ensure_key_repository(keys)
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD)
    (tmp_path / "images").mkdir(exist_ok=True)
    return gateway.GatewaySettings(
        kubeconfig="",
        key_repository=str(keys),
        admin_password_file=str(password_file),
        public_url="http://unistack.local",
        hash_rounds=4,
        image_store=str(tmp_path / "images"),
        **overrides,
    )


@contextlib.asynccontextmanager
async def on_loopback(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port, in this event loop; its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()


def recorder(seen: list[Obj]) -> Starlette:
    """A service elsewhere: records each request, answers JSON (or bytes for `/raw`)."""

    async def answer(request: Request) -> Response:
        body = await request.body()
        seen.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if request.url.path.endswith("/raw"):
            return Response(b"\x00disk", media_type="application/octet-stream")
        if request.method == "DELETE":
            return Response(status_code=204)
        return Response(
            orjson.dumps({"remote": request.url.path}), 201, media_type="application/json"
        )

    return Starlette(
        routes=[Route("/{path:path}", answer, methods=["GET", "POST", "PUT", "DELETE"])]
    )


def local_app(seen: list[str]) -> Starlette:
    async def answer(request: Request) -> Response:
        seen.append(request.url.path)
        return Response(orjson.dumps({"local": True}), media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer)])


def test_mount_paths_match_whole_segments() -> None:
    assert is_local("/compute/v2.1/servers", ["/compute"])
    assert is_local("/compute", ["/compute"])
    assert not is_local("/computers/v1", ["/compute"])
    assert not is_local("/network/v2.0/ports", ["/compute", "/identity"])


def test_settings_name_the_services_served() -> None:
    every = gateway.GatewaySettings("", "", "", "http://x")
    assert [s.name for s in every.served()] == [
        "identity",
        "image",
        "compute",
        "network",
        "volume",
    ]
    # From JSON (uvicorn's workers), the names come as a list.
    some = gateway.GatewaySettings("", "", "", "http://x", services=["network", "identity"])  # type: ignore[arg-type]
    assert some.services == ("network", "identity")
    assert [s.name for s in some.served()] == ["identity", "network"]
    assert len(some.catalog()) == len(every.catalog())  # every service stays in the catalog
    with pytest.raises(ValueError, match="unknown service nova"):
        gateway.GatewaySettings("", "", "", "http://x", services=("nova",))


def test_a_compute_process_installs_compute_and_identity_kinds() -> None:
    compute = [s for s in gateway.SERVICES if s.name == "compute"]
    groups = {kind.group for kind in gateway.kinds_to_install(compute)}
    assert groups == {"identity.unistack.io", "compute.unistack.io"}


async def test_internal_answers_served_paths_in_process_and_others_over_http(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    ensure_key_repository(keys)
    local_seen: list[str] = []
    remote_seen: list[Obj] = []
    async with on_loopback(recorder(remote_seen)) as url:
        internal = Internal(local=["/compute"], remote_url=url)
        internal.codec = TokenCodec(load_keys(keys))
        internal.app = local_app(local_seen)
        try:
            assert await internal.call("GET", "/compute/v2.1/flavors") == (200, {"local": True})
            status, body = await internal.call(
                "POST", "/network/v2.0/ports", {"port": {}}, params={"fields": "id"}
            )
            assert (status, body) == (201, {"remote": "/network/v2.0/ports"})
            assert await internal.call("PUT", "/image/v2/images/i/raw", b"bytes") == (
                200,
                b"\x00disk",
            )
            assert await internal.call("DELETE", "/volume/v3/p/volumes/v") == (204, None)
        finally:
            await internal.close()
    assert local_seen == ["/compute/v2.1/flavors"]
    assert [(r["method"], r["path"]) for r in remote_seen] == [
        ("POST", "/network/v2.0/ports"),
        ("PUT", "/image/v2/images/i/raw"),
        ("DELETE", "/volume/v3/p/volumes/v"),
    ]
    posted, put = remote_seen[0], remote_seen[1]
    assert posted["query"] == {"fields": "id"}
    assert orjson.loads(posted["body"]) == {"port": {}}
    assert posted["headers"]["content-type"] == "application/json"
    assert posted["headers"]["x-auth-token"] == internal.token()
    assert (put["body"], put["headers"]["content-type"]) == (b"bytes", "application/octet-stream")


async def test_a_service_elsewhere_that_is_down_answers_503(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ensure_key_repository(keys)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again before the call: nothing listens
    internal = Internal(local=["/compute"], remote_url=f"http://127.0.0.1:{port}")
    internal.codec = TokenCodec(load_keys(keys))
    status, body = await internal.call("GET", "/image/v2/images")
    await internal.close()
    assert status == 503
    assert body["error"]["code"] == 503


async def test_a_gateway_of_some_services_mounts_only_those_and_reports_health(
    client: Client, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, services=("identity",))
    app = gateway.create_app(settings, connect=lambda: client)
    web = AsgiTransport(app)
    starting = await web.request("GET", "/healthz")
    assert (starting.status, starting.body) == (503, b"starting")
    async with app.router.lifespan_context(app):
        ready = await web.request("GET", "/healthz")  # no token needed
        assert (ready.status, ready.body) == (200, b"ok")
        assert (await web.request("GET", "/identity/v3")).status == 200
        assert (await web.request("GET", "/compute/v2.1")).status == 404
        platform: gateway.Platform = app.state.platform
        status, catalog = await platform.internal.call("GET", "/identity/v3/auth/catalog")
        assert status == 200
        types = {entry["type"] for entry in catalog["catalog"]}
        assert {"identity", "compute", "image", "network", "block-storage"} <= types


async def test_two_api_processes_reach_each_other_through_http(
    client: Client, tmp_path: Path
) -> None:
    """Identity in one gateway behind a real socket; network in another, which finds
    identity's projects through the first, as pods of the control plane do."""
    identity = gateway.create_app(settings_for(tmp_path, services=("identity",)), lambda: client)
    async with (
        identity.router.lifespan_context(identity),
        on_loopback(identity) as url,
    ):
        network_settings = settings_for(tmp_path, services=("network",), internal_url=url)
        network = gateway.create_app(network_settings, connect=lambda: client)
        async with network.router.lifespan_context(network):
            internal = network.state.platform.internal
            status, body = await internal.call("GET", "/identity/v3/projects")
            assert status == 200
            assert "admin" in {project["name"] for project in body["projects"]}
            status, body = await internal.call("GET", "/network/v2.0/networks")
            assert status == 200
            assert "public" in {net["name"] for net in body["networks"]}


async def test_api_processes_starting_together_bootstrap_once(
    client: Client, tmp_path: Path
) -> None:
    """Several gateways install the same CRDs and bootstrap the same objects at once: the
    ones that lose the race find the objects made, and every one starts."""
    apps = [
        gateway.create_app(settings_for(tmp_path, services=names), connect=lambda: client)
        for names in [("identity",), ("network",), ("network",), ()]
    ]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(
            *(stack.enter_async_context(a.router.lifespan_context(a)) for a in apps)
        )
        for app in apps:
            assert (await AsgiTransport(app).request("GET", "/healthz")).status == 200
