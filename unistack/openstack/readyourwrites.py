"""Serve a request again when it failed only because this replica's cache was behind.

ASGI middleware around each OpenStack service the gateway mounts. The request runs with
`client.freshness.tracking()`; if it ends in a client error (400, 401, 403, 404, 409), wrote
nothing, and its body (up to 1 MiB) was kept, the middleware has `freshness.catch_up` bring
the caches it read up to the store; if any of them had changed since the request read it,
the request is served once more, and only that answer reaches the client.
Every other answer streams through untouched; a held error answer is sent as it was.

This is what lets a client create a network through one replica of network-api and delete
it through the other at once, or disable a domain through one and delete it through the
other, as it can with Neutron and Keystone (whose reads go to the database).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unistack.client import freshness

RETRIED_STATUSES = frozenset({400, 401, 403, 404, 409})
MAX_REPLAYED_BODY = 1 << 20


class ReadYourWrites:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kept: list[Message] = []
        state: MutableMapping[str, Any] = {"size": 0, "replayable": True}

        async def keeping_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and state["replayable"]:
                state["size"] += len(message.get("body", b""))
                if state["size"] > MAX_REPLAYED_BODY:
                    state["replayable"] = False
                    kept.clear()
                else:
                    kept.append(message)
            return message

        held: list[Message] = []
        passing = False

        async def holding_send(message: Message) -> None:
            nonlocal passing
            if message["type"] == "http.response.start":
                passing = message["status"] not in RETRIED_STATUSES
            if passing:
                await send(message)
            else:
                held.append(message)

        with freshness.tracking() as tracked:
            await self.app(dict(scope), keeping_receive, holding_send)
        if not held:
            return
        if (
            state["replayable"]
            and tracked.reads
            and not tracked.wrote
            and await freshness.catch_up(tracked)
        ):
            replay = iter(kept)

            async def replaying_receive() -> Message:
                return next(replay, None) or await receive()

            with freshness.tracking():
                await self.app(dict(scope), replaying_receive, send)
            return
        for message in held:
            await send(message)
