"""The few ASGI pieces the registry needs: a request view, a response, and writing it out.

Kept apart from `registry` so the handlers read as registry logic only. Bodies are streamed
both ways: uploads go to disk chunk by chunk, blobs are sent chunk by chunk, so memory use
does not grow with image size.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body exceeds the limit the handler set."""


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


@dataclass
class Request:
    """An HTTP request: method, path, query, lower-cased headers, and a streamed body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    receive: Receive

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        return cls(scope["method"], scope["path"], query, headers, receive)

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body in the chunks the server receives it."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("client disconnected during the request body")
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self, limit: int) -> bytes:
        """Read the whole body, refusing more than `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


@dataclass
class Response:
    """A status, headers, and either a body or an async stream of chunks."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncGenerator[bytes, None] | None = None


async def send_response(send: Send, response: Response, *, head: bool = False) -> None:
    """Write a response; for HEAD send headers only, keeping the Content-Length."""
    headers = dict(response.headers)
    if response.stream is None:
        headers.setdefault("content-length", str(len(response.body)))
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": raw})
    if head or response.stream is None:
        await send({"type": "http.response.body", "body": b"" if head else response.body})
        if response.stream is not None:
            await response.stream.aclose()
        return
    async with contextlib.aclosing(response.stream) as chunks:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan startup and shutdown; the registry has nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
