"""`pods/log`, `pods/exec` and `nodes/proxy`: relayed to a node's agent, as kube-apiserver
relays them to the kubelet.

The pod's `spec.nodeName` names the Node; its InternalIP and
`status.daemonEndpoints.kubeletEndpoint.Port` say where the agent listens. Logs stream back as
`text/plain` (with `follow`, for as long as the container runs). Exec is a WebSocket on both
sides: the client's upgrade (`v5.channel.k8s.io` and older channel protocols) is accepted with
the subprotocol the agent chose, and frames are relayed both ways until either side closes.
Errors before the stream starts are ordinary `Status` responses (400 for a pod that is not
running or not scheduled, 404 for no such pod or container).

`nodes/{name}/proxy/{path}` relays any request to `{path}` on the node's agent, the agent's
answer coming back as it is: the compute controller drives instances on a host this way
(`unistack.agent.instanceroutes`), as nova-conductor calls nova-compute. A request that cannot
reach the agent is a 503 `Status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from unistack import nodeagent
from unistack import store as storage
from unistack.apiserver import errors
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import Response, StreamingResponse
from unistack.apiserver.routing import ResourcePath

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PROXY_TIMEOUT = 600.0  # an instance's image can take minutes to fetch and unpack
LOG_PARAMS = ("follow", "previous", "tailLines", "limitBytes", "sinceSeconds", "timestamps")
EXEC_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")
CHANNEL_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)


class NodeProxy:
    def __init__(
        self, store: storage.ObjectStore, pods: ResourceType, nodes: ResourceType, token: str
    ):
        self.store = store
        self.pods = pods
        self.nodes = nodes
        self.token = token

    async def _load(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        try:
            stored = await self.store.get(rt.key(namespace, name))
        except storage.NotFound:
            raise errors.not_found(rt.plural, rt.group, name) from None
        value: Obj = orjson.loads(stored.value)
        return value

    async def agent_url(self, node_name: str) -> str:
        """Where the node's agent listens: its InternalIP and kubelet endpoint port."""
        url = nodeagent.agent_url(await self._load(self.nodes, None, node_name))
        if url is None:
            raise errors.bad_request(f"node {node_name} has no agent endpoint")
        return url

    async def proxy(self, req: Request, rp: ResourcePath) -> Response:
        """Relay one request to the node's agent; its status, body and type come back."""
        assert rp.name is not None
        base = await self.agent_url(rp.name)
        params = [(k, v) for k, values in req.query.items() for v in values]
        headers = self._auth()
        if req.body:
            headers["Content-Type"] = req.headers.get("content-type", "application/json")
        timeout = aiohttp.ClientTimeout(total=PROXY_TIMEOUT, connect=5)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    req.method,
                    f"{base}/{rp.proxy_path}",
                    params=params,
                    data=req.body or None,
                    headers=headers,
                ) as answer,
            ):
                body = await answer.read()
                kind = answer.headers.get("Content-Type", "application/octet-stream")
                return Response(answer.status, body, content_type=kind)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise errors.ApiError(
                503, "ServiceUnavailable", f"cannot reach the agent of node {rp.name}: {error}"
            ) from None

    async def target(self, rp: ResourcePath, container: str | None) -> tuple[str, str]:
        """The agent's base URL and the container name (the only one when not given)."""
        assert rp.name is not None
        pod = await self._load(self.pods, rp.namespace, rp.name)
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        every = names + [c["name"] for c in spec.get("initContainers") or []]
        if not container:
            if len(names) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {rp.name}, choose one of: {names}"
                )
            container = names[0]
        if container not in every:
            raise errors.bad_request(f"container {container} is not valid for pod {rp.name}")
        node_name = spec.get("nodeName")
        if not node_name:
            raise errors.bad_request(f'pod "{rp.name}" is not scheduled to a node yet')
        return await self.agent_url(node_name), container

    async def log(self, req: Request, rp: ResourcePath) -> StreamingResponse:
        base, container = await self.target(rp, req.param("container"))
        params = {k: req.param(k) or "" for k in LOG_PARAMS if req.param(k) is not None}
        url = f"{base}/containerLogs/{rp.namespace}/{rp.name}/{container}"
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5))
        try:
            response = await session.get(url, params=params, headers=self._auth())
        except (aiohttp.ClientError, OSError) as error:
            await session.close()
            raise errors.ApiError(
                502, "BadGateway", f"cannot reach the node agent: {error}"
            ) from None
        if response.status != 200:
            body = await response.read()
            response.release()
            await session.close()
            raise _agent_error(response.status, body)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            finally:
                response.release()
                await session.close()

        return StreamingResponse(200, chunks(), content_type="text/plain")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def exec(
        self, scope: Obj, receive: Any, send: Any, rp: ResourcePath, query: dict[str, list[str]]
    ) -> None:
        """Relay a WebSocket exec session between the client and the agent."""
        offered = [p.strip() for p in _header(scope, "sec-websocket-protocol").split(",")]
        container = (query.get("container") or [""])[0]
        try:
            base, container = await self.target(rp, container)
        except errors.ApiError as error:
            await reject(send, error)
            return
        params = [(k, v) for k in EXEC_PARAMS for v in query.get(k, [])]
        url = f"{base}/exec/{rp.namespace}/{rp.name}/{container}?{urlencode(params)}"
        protocols = [p for p in offered if p in CHANNEL_PROTOCOLS] or list(CHANNEL_PROTOCOLS[:2])
        session = aiohttp.ClientSession()
        try:
            try:
                upstream = await session.ws_connect(url, protocols=protocols, headers=self._auth())
            except aiohttp.WSServerHandshakeError as error:
                await reject(send, errors.ApiError(error.status, "BadRequest", error.message))
                return
            except (aiohttp.ClientError, OSError) as error:
                await reject(
                    send,
                    errors.ApiError(502, "BadGateway", f"cannot reach the node agent: {error}"),
                )
                return
            message = await receive()
            if message["type"] != "websocket.connect":
                await upstream.close()
                return
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await _relay(upstream, receive, send)
        finally:
            await session.close()


def _header(scope: Obj, name: str) -> str:
    for key, value in scope.get("headers") or []:
        if key.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return ""


async def reject(send: Any, error: errors.ApiError) -> None:
    """Refuse the upgrade with a Status body (the ASGI WebSocket denial response)."""
    body = errors.encode_status(error)
    try:
        await send(
            {
                "type": "websocket.http.response.start",
                "status": error.code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    except Exception:  # the server has no denial-response extension: a plain close
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1008})


async def _relay(upstream: aiohttp.ClientWebSocketResponse, receive: Any, send: Any) -> None:
    async def downstream() -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})

    async def upstream_pump() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            if message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send_str(message["text"])

    tasks = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream_pump())]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    if tasks[0] in done:
        # The agent finished: give the client's last frames a moment, then stop reading.
        tasks[1].cancel()
    else:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(tasks[0], 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await upstream.close()


def _agent_error(status: int, body: bytes) -> errors.ApiError:
    try:
        decoded = orjson.loads(body)
        message = decoded.get("message") or body.decode(errors="replace")
    except orjson.JSONDecodeError:
        message = body.decode(errors="replace")
    reason = {400: "BadRequest", 404: "NotFound"}.get(status, "InternalError")
    return errors.ApiError(status, reason, message)
