"""The pod writes of a controller that owns pods, as kube's PodControl and expectations do.

`PodControl` creates, deletes, adopts and releases pods for one owner key and remembers what
it did (`Expectations`) until the pod informer has seen it, so a controller does not create or
delete twice while its cache lags; after `EXPECTATIONS_TIMEOUT` it stops waiting. The
ReplicaSet, DaemonSet and Job controllers share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from unistack.client.api import Client, Conflict, NotFound
from unistack.client.resources import PODS, ResourceRef
from unistack.runtime.controller import controller_of

Obj = dict[str, Any]

EXPECTATIONS_TIMEOUT = 30.0


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def owner_reference(owner: Obj) -> Obj:
    """A controller ownerReference to `owner` that blocks its foreground deletion."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", "apps/v1"),
        "kind": owner.get("kind", "ReplicaSet"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """kube's slowStartBatch sizes: 1, 2, 4, ... until `count` is reached."""
    batches, size = [], initial
    while count > 0:
        batches.append(min(size, count))
        count -= batches[-1]
        size *= 2
    return batches


@dataclass(slots=True)
class Expectations:
    """Pods one sync created or deleted that the informer has not reported yet."""

    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    deadline: float = 0.0

    def satisfied(self, cached: Mapping[str, Obj]) -> bool:
        """All creations seen and all deletions seen (or the wait timed out)."""
        if time.monotonic() > self.deadline:
            return True
        self.created = {name for name in self.created if name not in cached}
        self.deleted = {
            name for name in self.deleted if name in cached and not is_terminating(cached[name])
        }
        return not self.created and not self.deleted


class PodControl:
    """Pod writes on behalf of owners, keyed like the owners' work queue."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.expectations: dict[str, Expectations] = {}

    def may_manage(self, key: str, pods: Mapping[str, Obj]) -> bool:
        """True once the cache shows everything this key's last writes did."""
        expected = self.expectations.get(key)
        return expected is None or expected.satisfied(pods)

    def forget(self, key: str) -> None:
        self.expectations.pop(key, None)

    def _expect(self, key: str) -> Expectations:
        expected = self.expectations.setdefault(key, Expectations())
        expected.deadline = time.monotonic() + EXPECTATIONS_TIMEOUT
        return expected

    async def create(self, key: str, bodies: Iterable[Obj]) -> None:
        """Create these pods at once; raise the first failure after recording the rest."""
        expected = self._expect(key)
        results = await asyncio.gather(
            *(self.client.create(PODS, body) for body in bodies), return_exceptions=True
        )
        for result in results:
            if isinstance(result, dict):
                expected.created.add(result["metadata"]["name"])
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    async def create_in_batches(self, key: str, body: Obj, count: int) -> None:
        """Create `count` copies in slow-start batches; stop at the first batch that fails."""
        for size in slow_start_batches(count):
            await self.create(key, [body] * size)

    async def delete(self, key: str, namespace: str, names: Iterable[str]) -> None:
        names = tuple(names)
        self._expect(key).deleted.update(names)
        for name in names:
            with contextlib.suppress(NotFound):
                await self.client.delete(PODS, name, namespace)

    async def change_owner(self, owner: Obj, pod_name: str, *, adopt: bool) -> None:
        """Adopt or release by a compare-and-swap update of the pod's ownerReferences."""
        namespace, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        with contextlib.suppress(NotFound, Conflict):
            pod = await self.client.get(PODS, pod_name, namespace)
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r["uid"] != uid]
            if adopt:
                if controller_of(pod) is not None or is_terminating(pod):
                    return
                refs.append(owner_reference(owner))
            pod["metadata"]["ownerReferences"] = refs
            await self.client.update(PODS, pod)  # resourceVersion: compare-and-swap

    async def patch_status(self, ref: ResourceRef, owner: Obj, status: Obj) -> None:
        """Merge `status` into the owner's status subresource; a vanished owner is fine."""
        meta = owner["metadata"]
        with contextlib.suppress(NotFound):
            await self.client.patch(
                ref,
                meta["name"],
                {"status": status},
                namespace=meta.get("namespace"),
                subresource="status",
            )
