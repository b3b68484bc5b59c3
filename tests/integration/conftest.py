"""In-process fixtures: the real API server over a real SQLite store, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from unistack.apiserver.app import ApiServer
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.store import SqliteStore


@dataclass
class Api:
    """Raw HTTP calls against the in-process API server, decoded."""

    transport: AsgiTransport
    server: ApiServer

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        raw = (
            body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else None)
        )
        headers = {"content-type": content_type, "accept": accept}
        response = await self.transport.request(
            method, path, params=params, body=raw, headers=headers
        )
        try:
            return response.status, orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response.status, response.body


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(store)
    await server.start()
    yield Api(AsgiTransport(server), server)
    server.stop()
    store.close()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """A client of a fresh in-process API server, for controller tests."""
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(store)
    await server.start()
    yield Client(AsgiTransport(server))
    server.stop()
    store.close()


from tests.integration.cloud import cloud  # noqa: E402, F401  (the in-process gateway fixture)
