"""The interface every store backend offers the API server.

SQLite (`unistack.store.sqlite`) is the embedded default; an etcd or PostgreSQL backend for
several API server replicas implements the same Protocol. Keys are paths such as
`/core/pods/default/web-0`; values are JSON objects whose `metadata.resourceVersion` the store
sets to the revision of the write.
"""

from __future__ import annotations

from typing import Any, Protocol

from unistack.store.hub import Watcher
from unistack.store.types import ListResult, Stored


class ObjectStore(Protocol):
    @property
    def revision(self) -> int:
        """The newest committed revision."""

    @property
    def compacted_revision(self) -> int:
        """Revisions at or below this are gone from the history."""

    @property
    def watcher_count(self) -> int:
        """Watches open on this store right now."""

    async def get(self, key: str) -> Stored: ...

    async def list(
        self, prefix: str, *, limit: int | None = None, start_after: str | None = None
    ) -> ListResult: ...

    async def create(self, key: str, obj: dict[str, Any]) -> Stored: ...

    async def update(
        self, key: str, obj: dict[str, Any], *, expected_revision: int | None = None
    ) -> Stored: ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Stored: ...

    def watch(self, prefix: str, from_revision: int) -> Watcher:
        """Events under `prefix` with revision > `from_revision`; raises Compacted."""

    async def compact(self, revision: int) -> None: ...

    def close(self) -> None: ...
