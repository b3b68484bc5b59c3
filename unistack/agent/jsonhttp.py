"""JSON over the agent's HTTP routes: the answers and errors every route module gives.

The instance service (`instances`) and the volume service (`blockstorage`) answer the
controllers, through the API server's node proxy, with JSON bodies and errors shaped
`{"message", "code"}`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class BadJson(ValueError):
    """The request body is not JSON (the caller answers 400)."""


def json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response(status, {"message": message, "code": status})


async def read_json(request: web.Request) -> Any:
    """The body decoded ({} when empty), or `BadJson`."""
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadJson("the body is not valid JSON") from None
