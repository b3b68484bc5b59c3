"""The namespace controller: empties a namespace being deleted, then lets it go.

A Namespace with a deletionTimestamp keeps the `kubernetes` finalizer in `spec.finalizers`
until its content is gone. For each such namespace (queue key: its name) the controller lists
every namespaced resource discovery reports, and the pure `decide_namespace` turns what
remains into actions: mark the namespace Terminating with kube-apiserver's conditions
(`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`, ...), delete what is not yet
being deleted (deletecollection per resource, or per object), look again shortly — and once
nothing remains, PUT `/api/v1/namespaces/{name}/finalize` without `kubernetes`, after which
the API server removes the namespace. `NamespaceController` observes and acts; it is built on
`unistack.runtime` and runs beside the garbage collector (`unistack.kube.main`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from unistack.client.api import Client, Conflict, NotFound
from unistack.client.resources import NAMESPACES, DiscoveredResource, ResourceRef, discover
from unistack.runtime import events
from unistack.runtime.controller import Controller, enqueue_objects, run_with_informers
from unistack.runtime.informer import SharedInformers, copy_object
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
CONTENT_FINALIZER = "kubernetes"
TERMINATING = "Terminating"


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Content:
    """What one namespaced resource still holds in the namespace."""

    resource: DiscoveredResource
    items: tuple[Obj, ...]


@dataclass(frozen=True, slots=True)
class SetStatus:
    phase: str
    conditions: tuple[Obj, ...]


@dataclass(frozen=True, slots=True)
class DeleteCollection:
    ref: ResourceRef


@dataclass(frozen=True, slots=True)
class DeleteObject:
    ref: ResourceRef
    name: str


@dataclass(frozen=True, slots=True)
class Finalize:
    """Remove `kubernetes` from spec.finalizers through the `finalize` subresource."""

    finalizers: tuple[str, ...]  # what remains


@dataclass(frozen=True, slots=True)
class RequeueAfter:
    seconds: float


Action = SetStatus | DeleteCollection | DeleteObject | Finalize | RequeueAfter


def needs_cleanup(namespace: Obj) -> bool:
    """Being deleted and still holding the content finalizer."""
    deleting = bool(namespace.get("metadata", {}).get("deletionTimestamp"))
    return deleting and CONTENT_FINALIZER in spec_finalizers(namespace)


def spec_finalizers(namespace: Obj) -> list[str]:
    return list((namespace.get("spec") or {}).get("finalizers") or [])


def _group_resource(ref: ResourceRef) -> str:
    return f"{ref.plural}.{ref.group}" if ref.group else ref.plural


def _condition(kind: str, true: bool, reason: str, message: str) -> Obj:
    status = "True" if true else "False"
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _remaining_message(remaining: list[Content]) -> str:
    counts = sorted(
        f"{_group_resource(c.resource.ref)} has {len(c.items)} resource instances"
        for c in remaining
    )
    return "Some resources are remaining: " + ", ".join(counts)


def _finalizers_message(remaining: list[Content]) -> str:
    counts: Counter[str] = Counter()
    for content in remaining:
        for obj in content.items:
            counts.update(obj.get("metadata", {}).get("finalizers") or [])
    parts = [f"{name} in {n} resource instances" for name, n in sorted(counts.items())]
    return ", ".join(parts)


def deletion_conditions(remaining: list[Content]) -> list[Obj]:
    """The conditions kube-apiserver's namespace controller reports while deleting content."""
    finalizers = _finalizers_message(remaining)
    return [
        _condition("NamespaceDeletionDiscoveryFailure", False, "ResourcesDiscovered",
                   "All resources successfully discovered"),
        _condition("NamespaceDeletionGroupVersionParsingFailure", False, "ParsedGroupVersions",
                   "All legacy kube types successfully parsed"),
        _condition("NamespaceDeletionContentFailure", False, "ContentDeleted",
                   "All content successfully deleted, may be waiting on finalization"),
        _condition("NamespaceContentRemaining", True, "SomeResourcesRemain",
                   _remaining_message(remaining)) if remaining else
        _condition("NamespaceContentRemaining", False, "ContentRemoved",
                   "All content successfully removed"),
        _condition("NamespaceFinalizersRemaining", True, "SomeFinalizersRemain",
                   "Some content in the namespace has finalizers remaining: " + finalizers)
        if finalizers else
        _condition("NamespaceFinalizersRemaining", False, "ContentHasNoFinalizers",
                   "All content-preserving finalizers finished"),
    ]  # fmt: skip


def merge_conditions(old: list[Obj], new: list[Obj], now: str) -> list[Obj]:
    """`new`, keeping each condition's lastTransitionTime while its status stays the same."""
    previous = {c.get("type"): c for c in old}
    merged = []
    for condition in new:
        before = previous.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"]
        transition = before.get("lastTransitionTime") if same and before else now
        merged.append({**condition, "lastTransitionTime": transition})
    return merged


def _delete_actions(content: Content) -> list[Action]:
    live = [obj for obj in content.items if not obj.get("metadata", {}).get("deletionTimestamp")]
    if not live:
        return []
    if content.resource.allows("deletecollection"):
        return [DeleteCollection(content.resource.ref)]
    return [DeleteObject(content.resource.ref, obj["metadata"]["name"]) for obj in live]


def decide_namespace(
    namespace: Obj, content: list[Content], now: str, poll_interval: float = 1.0
) -> list[Action]:
    """What to do for a namespace being deleted, given what it still holds."""
    if not needs_cleanup(namespace):
        return []
    remaining = [c for c in content if c.items]
    status = namespace.get("status") or {}
    old_conditions = list(status.get("conditions") or [])
    conditions = merge_conditions(old_conditions, deletion_conditions(remaining), now)
    actions: list[Action] = []
    if status.get("phase") != TERMINATING or conditions != old_conditions:
        actions.append(SetStatus(TERMINATING, tuple(conditions)))
    if not remaining:
        kept = tuple(f for f in spec_finalizers(namespace) if f != CONTENT_FINALIZER)
        return [*actions, Finalize(kept)]
    for entry in remaining:
        actions.extend(_delete_actions(entry))
    return [*actions, RequeueAfter(poll_interval)]


# --- the controller ---------------------------------------------------------------------------


def namespaced_deletable(resource: DiscoveredResource) -> bool:
    return resource.ref.namespaced and resource.allows("list", "delete")


class NamespaceController:
    """Watches Namespaces; for each one being deleted, observes its content and acts."""

    def __init__(
        self,
        client: Client,
        *,
        informers: SharedInformers | None = None,
        workers: int = 2,
        poll_interval: float = 1.0,
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.poll_interval = poll_interval
        self.informer = shared.informer(NAMESPACES)
        self.queue = WorkQueue("namespace")
        self.controller = Controller("namespace", self.queue, self.reconcile, workers)
        enqueue_objects(self.informer, self.queue)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.informer)

    async def reconcile(self, name: str) -> float | None:
        namespace = self.informer.cache.get(name)
        if namespace is None or not needs_cleanup(namespace):
            return None
        content = await self.observe(name)
        actions = decide_namespace(namespace, content, events.timestamp(), self.poll_interval)
        requeue: float | None = None
        for action in actions:
            if isinstance(action, RequeueAfter):
                requeue = action.seconds
            else:
                await self.act(namespace, action)
        return requeue

    async def observe(self, name: str) -> list[Content]:
        """What every namespaced resource still holds in the namespace."""
        found = []
        for resource in filter(namespaced_deletable, await discover(self.client)):
            try:
                listing = await self.client.list_all(resource.ref, name)
            except NotFound:  # the resource went away (its CRD was deleted)
                continue
            found.append(Content(resource, tuple(listing.get("items") or [])))
        return found

    async def act(self, namespace: Obj, action: Action) -> None:
        name = namespace["metadata"]["name"]
        if isinstance(action, SetStatus):
            await self._set_status(namespace, action)
        elif isinstance(action, DeleteCollection):
            with contextlib.suppress(NotFound):
                await self.client.delete_collection(
                    action.ref, name, propagation_policy="Background"
                )
        elif isinstance(action, DeleteObject):
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(
                    action.ref, action.name, name, propagation_policy="Background"
                )
        elif isinstance(action, Finalize):
            await self._finalize(name)

    async def _set_status(self, namespace: Obj, action: SetStatus) -> None:
        updated = copy_object(namespace)
        status = updated.setdefault("status", {})
        status["phase"] = action.phase
        status["conditions"] = [dict(c) for c in action.conditions]
        with contextlib.suppress(NotFound, Conflict):  # cosmetic: the next round tries again
            await self.client.update_status(NAMESPACES, updated)

    async def _finalize(self, name: str) -> None:
        """PUT the fresh Namespace to `finalize` without the content finalizer."""
        try:
            fresh = await self.client.get(NAMESPACES, name)
        except NotFound:
            return
        if not needs_cleanup(fresh):
            return
        fresh.setdefault("spec", {})["finalizers"] = [
            f for f in spec_finalizers(fresh) if f != CONTENT_FINALIZER
        ]
        with contextlib.suppress(NotFound):
            await self.client.replace_subresource(NAMESPACES, fresh, "finalize")
