"""When the API server does not answer, an OpenStack service says 503 in its own format.

A route of a real service app (`web.service_app`) calls a real client whose API server is a
closed loopback port, so the client's own `TransportError` reaches the app's handlers.
"""

from __future__ import annotations

import socket

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.client.api import Client
from unistack.client.transport import AsgiTransport, HttpTransport
from unistack.iaas.network import kinds
from unistack.openstack import web


async def test_a_store_that_does_not_answer_is_a_503_with_retry_after() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again before the call: nothing listens
    client = Client(HttpTransport(f"http://127.0.0.1:{port}"))

    async def create(request: Request) -> Response:
        await client.create(kinds.NETWORKS.ref, {"metadata": {"name": "n"}})
        return Response(status_code=201)

    app = web.service_app([Route("/v2.0/networks", create, methods=["POST"])], web.neutron_error)
    try:
        answer = await AsgiTransport(app).request("POST", "/v2.0/networks")
    finally:
        await client.close()
    assert answer.status == 503
    assert answer.headers["retry-after"] == "1"
    body = orjson.loads(answer.body)
    assert "unavailable" in body["NeutronError"]["message"]
