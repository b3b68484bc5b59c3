"""Encoded server views, kept per server until the server or the way it is shown changes:
what makes `GET /servers/detail` over thousands of servers cheap.

A server's detail view (`server_views.detail_view`) depends only on the stored server (its
`resourceVersion`), the microversion, whether the caller is an admin, the base URL of the
links and, for admins from 2.16, its host's status. `EncodedViews` keeps each server's view
encoded as JSON under exactly that key, so a list encodes only the servers that changed
since the last list; `list_body` splices the encoded views into the list's body. Cached
bytes are never mutated, and the cache is dropped whole when it outgrows its limit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import orjson

Obj = dict[str, Any]
LIMIT = 50_000


class EncodedViews:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[Hashable, bytes]] = {}

    def encoded(self, server: Obj, shown_as: Hashable, build: Callable[[], Obj]) -> bytes:
        """The server's view encoded, built by `build` only when `shown_as` (the request's
        side of the key) or the server's resourceVersion changed."""
        name = server["metadata"]["name"]
        key = (server["metadata"].get("resourceVersion"), shown_as)
        kept = self._entries.get(name)
        if kept is not None and kept[0] == key:
            return kept[1]
        data = orjson.dumps(build())
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[name] = (key, data)
        return data

    def __len__(self) -> int:
        return len(self._entries)


def list_body(key: str, items: list[bytes], links: list[Obj] | None) -> bytes:
    """`{"<key>": [items...], "<key>_links": links}` from items already encoded."""
    body = b'{"' + key.encode() + b'":[' + b",".join(items) + b"]"
    if links is not None:
        body += b',"' + key.encode() + b'_links":' + orjson.dumps(links)
    return body + b"}"
