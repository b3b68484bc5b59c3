"""The IaaS objects of a service as one read-your-writes view: lookups by OpenStack id and by
project from memory, writes through the API.

`Records` holds one informer per kind (all namespaces), indexed by id (`metadata.name`, which is
the OpenStack id), by project (`spec.project_id`) and by whatever else the service asks for.
Reads never leave the process; each write returns once the cache shows it, so a client that
creates then lists sees its object (DESIGN.md section 6). Each read is noted for
`client.freshness`, which serves a request that failed again once this replica's cache has
caught up with a write made through another. Writes that race are compare-and-swap on
`resourceVersion` and retried. The errors are the service's to word: `Missing`, `Duplicate`,
`Busy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from unistack.client import freshness
from unistack.client.api import AlreadyExists, Client, Conflict, NotFound
from unistack.iaas.crds import Kind
from unistack.iaas.tenancy import Namespaces
from unistack.runtime.informer import IndexFunc, Informer, SharedInformers

Obj = dict[str, Any]
UPDATE_ATTEMPTS = 8


class RecordError(Exception):
    def __init__(self, kind: Kind, object_id: str) -> None:
        super().__init__(f"{kind.kind} {object_id}")
        self.kind = kind
        self.object_id = object_id


class Missing(RecordError):
    """No such object (or it went away while being changed)."""


class Duplicate(RecordError):
    """An object with that id exists already."""


class Busy(RecordError):
    """Others kept changing the object; the write gave up."""


def spec_of(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def status_of(obj: Obj | None) -> Obj:
    return (obj or {}).get("status") or {}


def object_id(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _by_id(obj: Obj) -> list[str]:
    return [object_id(obj)]


def _by_project(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("project_id") or "")]


def new_object(kind: Kind, name: str, namespace: str | None, spec: Obj, status: Obj | None) -> Obj:
    metadata: Obj = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    obj: Obj = {"apiVersion": f"{kind.group}/v1", "kind": kind.kind, "metadata": metadata}
    obj["spec"] = spec
    if status is not None:
        obj["status"] = status
    return obj


class Records:
    """Cached reads and settled writes of a service's kinds."""

    def __init__(
        self,
        client: Client,
        kinds: Iterable[Kind],
        indexers: Mapping[Kind, dict[str, IndexFunc]] | None = None,
        informers: SharedInformers | None = None,
        namespaces: Namespaces | None = None,
    ) -> None:
        self.client = client
        self.namespaces = namespaces or Namespaces(client)
        shared = informers or SharedInformers(client)
        self.informers: dict[Kind, Informer] = {}
        for kind in kinds:
            index = {"id": _by_id, "project": _by_project, **(indexers or {}).get(kind, {})}
            self.informers[kind] = shared.informer(kind.ref, index)

    async def start(self, timeout: float = 30.0) -> None:
        for informer in self.informers.values():
            informer.start()
        for informer in self.informers.values():
            await informer.wait_synced(timeout)

    async def stop(self) -> None:
        for informer in self.informers.values():
            await informer.stop()

    # --- reads ----------------------------------------------------------------------------

    def get(self, kind: Kind, object_id: str | None) -> Obj | None:
        if not object_id:
            return None
        found = self._read(kind).cache.by_index("id", object_id)
        return found[0] if found else None

    def require(self, kind: Kind, object_id: str | None) -> Obj:
        found = self.get(kind, object_id)
        if found is None:
            raise Missing(kind, str(object_id))
        return found

    def all(self, kind: Kind) -> list[Obj]:
        return self._read(kind).cache.list()

    def of_project(self, kind: Kind, project_id: str) -> list[Obj]:
        return self._read(kind).cache.by_index("project", project_id)

    def indexed(self, kind: Kind, index: str, value: str) -> list[Obj]:
        return self._read(kind).cache.by_index(index, value)

    def informer(self, kind: Kind) -> Informer:
        return self.informers[kind]

    def _read(self, kind: Kind) -> Informer:
        informer = self.informers[kind]
        freshness.note_read(informer)
        return informer

    # --- writes ---------------------------------------------------------------------------

    async def settle(self, kind: Kind, written: Obj | None, name: str = "") -> None:
        """Wait until the cache shows `written`, or with `written` None, until `name` is gone."""
        informer = self.informers[kind]
        if written is not None:
            await informer.wait_for_version(written["metadata"]["resourceVersion"])
        else:
            await informer.wait_until(lambda: not informer.cache.by_index("id", name))

    async def create(
        self,
        kind: Kind,
        object_id: str,
        spec: Obj,
        status: Obj | None = None,
        *,
        finalizers: tuple[str, ...] = (),
    ) -> Obj:
        """Create in the namespace of `spec.project_id` (namespaced kinds); Duplicate if the
        id is taken. The status is written with the object (CRDs ignore it on create), so the
        object never shows without one."""
        namespace = None
        if kind.namespaced:
            namespace = await self.namespaces.ensure(spec.get("project_id"))
        body = new_object(kind, object_id, namespace, spec, None)
        if finalizers:
            body["metadata"]["finalizers"] = list(finalizers)
        try:
            created = await self.client.create(kind.ref, body)
        except AlreadyExists as exc:
            raise Duplicate(kind, object_id) from exc
        if status is not None:
            created = {**created, "status": status}
            created = await self.client.update_status(kind.ref, created)
        await self.settle(kind, created)
        return created

    async def update(
        self,
        kind: Kind,
        object_id: str,
        change: Callable[[Obj], None],
        *,
        status: bool = False,
    ) -> Obj:
        """Apply `change` to a deep copy of the object (its spec, or with `status` its
        status subresource) and write it; conflicts are retried on the fresh object."""
        for attempt in range(UPDATE_ATTEMPTS):
            current = self.require(kind, object_id)
            updated = copy.deepcopy(current)
            updated.setdefault("spec", {})
            updated.setdefault("status", {})
            change(updated)
            try:
                if status:
                    written = await self.client.update_status(kind.ref, updated)
                else:
                    written = await self.client.update(kind.ref, updated)
            except Conflict:
                await asyncio.sleep(0.01 * (attempt + 1))
                seen = current["metadata"]["resourceVersion"]
                with contextlib.suppress(TimeoutError):
                    await self.informers[kind].wait_until(
                        functools.partial(self._changed, kind, object_id, seen), timeout=0.5
                    )
                continue
            except NotFound as exc:
                raise Missing(kind, object_id) from exc
            await self.settle(kind, written)
            return written
        raise Busy(kind, object_id)

    def _changed(self, kind: Kind, object_id: str, seen_version: str) -> bool:
        now = self.get(kind, object_id)
        return now is None or now["metadata"]["resourceVersion"] != seen_version

    async def delete(self, kind: Kind, object_id: str, *, wait: bool = True) -> None:
        """Delete the object; with finalizers it stays (marked) until its controller lets go.
        With `wait`, return once the cache no longer has it (or has it marked)."""
        current = self.get(kind, object_id)
        if current is None:
            raise Missing(kind, object_id)
        namespace = current["metadata"].get("namespace")
        try:
            answer = await self.client.delete(kind.ref, object_id, namespace)
        except NotFound as exc:
            raise Missing(kind, object_id) from exc
        if not wait:
            return
        if answer.get("kind") == kind.kind and answer.get("metadata", {}).get("finalizers"):
            await self.settle(kind, answer)
        else:
            await self.settle(kind, None, object_id)

    async def remove_finalizer(self, kind: Kind, object_id: str, finalizer: str) -> None:
        """A controller letting go of a deleted object (it disappears when none is left)."""

        def drop(obj: Obj) -> None:
            held = obj["metadata"].get("finalizers") or []
            obj["metadata"]["finalizers"] = [f for f in held if f != finalizer]

        with contextlib.suppress(Missing):
            await self.update(kind, object_id, drop)
