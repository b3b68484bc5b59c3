"""The garbage collector: deletes dependents whose owners are gone, and runs the deletion
finalizers `foregroundDeletion` and `orphan`.

It watches every resource that lists, watches and deletes (found by discovery and refreshed
periodically, so custom resources join when their CRD appears) and keeps a graph of owners and
dependents by ownerReference uid. Queue keys are object uids. For each key, the pure `decide`
turns the object, the states of its owners and its dependents into actions, as
kube-controller-manager's garbage collector does:

- a dependent none of whose owners is left (every owner absent, or being deleted in the
  foreground) is deleted, in the background (foreground if an owner waits for it and it has
  dependents of its own); one with a live owner only loses its references to the others;
- an owner being deleted with `orphan` has its references removed from every dependent, then
  the finalizer removed;
- an owner being deleted with `foregroundDeletion` has its dependents looked at again (which
  deletes them; blocking ones first) and loses the finalizer once no dependent with
  `blockOwnerDeletion` remains.

`GarbageCollector` observes (informer caches; a live GET before calling an owner absent) and
acts (DELETE with a uid precondition, read-modify-write updates). Built on `unistack.runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from unistack.client.api import ApiError, Client, Conflict, NotFound
from unistack.client.resources import DiscoveredResource, ResourceRef, discover
from unistack.client.resources import split_api_version as _split
from unistack.runtime.controller import Controller
from unistack.runtime.informer import Informer, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
Change = Callable[[Obj], bool]  # changes a freshly read object; False when nothing to change
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
REDISCOVERY_INTERVAL = 1.0  # seconds between discoveries forced by an unknown owner kind

log = logging.getLogger(__name__)


# --- decisions (pure) -------------------------------------------------------------------------


class OwnerState(enum.Enum):
    SOLID = "solid"  # exists and is not waiting for its dependents
    ABSENT = "absent"  # not found, or another object (uid) under that name
    WAITING = "waiting"  # being deleted in the foreground: waits for its dependents


@dataclass(frozen=True, slots=True)
class ObjectId:
    ref: ResourceRef
    namespace: str | None
    name: str
    uid: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.ref} {where}{self.name} ({self.uid})"


@dataclass(frozen=True, slots=True)
class Delete:
    target: ObjectId
    propagation: str  # Background, Foreground or Orphan


@dataclass(frozen=True, slots=True)
class RemoveOwnerRefs:
    target: ObjectId
    owner_uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    target: ObjectId
    finalizer: str


@dataclass(frozen=True, slots=True)
class Check:
    """Look at this dependent again (it decides for itself whether it goes)."""

    uid: str


Action = Delete | RemoveOwnerRefs | RemoveFinalizer | Check


def describe(action: Action) -> str:
    """One line for the log."""
    if isinstance(action, Delete):
        return f"delete {action.target} ({action.propagation})"
    if isinstance(action, RemoveOwnerRefs):
        return f"remove owners {', '.join(action.owner_uids)} from {action.target}"
    if isinstance(action, RemoveFinalizer):
        return f"remove finalizer {action.finalizer} from {action.target}"
    return f"check {action.uid}"


def object_id(ref: ResourceRef, obj: Obj) -> ObjectId:
    meta = obj["metadata"]
    return ObjectId(ref, meta.get("namespace"), meta["name"], meta["uid"])


def being_deleted(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def finalizers(obj: Obj) -> list[str]:
    return list(obj.get("metadata", {}).get("finalizers") or [])


def owner_references(obj: Obj) -> list[Obj]:
    return list(obj.get("metadata", {}).get("ownerReferences") or [])


def has_deletion_work(obj: Obj) -> bool:
    """Being deleted with a finalizer the collector runs."""
    return being_deleted(obj) and bool({ORPHAN, FOREGROUND} & set(finalizers(obj)))


def owner_state(owner: Obj) -> OwnerState:
    """The state of an owner that exists."""
    if being_deleted(owner) and FOREGROUND in finalizers(owner):
        return OwnerState.WAITING
    return OwnerState.SOLID


def blocks(dependent: Obj, owner_uid: str) -> bool:
    """The dependent's reference to the owner has `blockOwnerDeletion: true`."""
    return any(
        ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion")
        for ref in owner_references(dependent)
    )


def propagation_for(obj: Obj) -> str:
    """How to delete an object that no owner keeps: as its own finalizers ask, else background."""
    if ORPHAN in finalizers(obj):
        return "Orphan"
    if FOREGROUND in finalizers(obj):
        return "Foreground"
    return "Background"


def decide_dependent(
    item: ObjectId, obj: Obj, owners: dict[str, OwnerState], has_dependents: bool
) -> list[Action]:
    """What to do with an object (not being deleted) given the state of each of its owners."""
    solid = [uid for uid, state in owners.items() if state is OwnerState.SOLID]
    gone = [uid for uid, state in owners.items() if state is not OwnerState.SOLID]
    if not gone:
        return []
    if solid:
        return [RemoveOwnerRefs(item, tuple(gone))]
    waiting = any(state is OwnerState.WAITING for state in owners.values())
    if waiting and has_dependents:
        return [Delete(item, "Foreground")]
    return [Delete(item, propagation_for(obj))]


def decide_orphaning(owner: ObjectId, dependents: list[tuple[ObjectId, Obj]]) -> list[Action]:
    """Cut every dependent loose from the owner, then let the owner go."""
    actions: list[Action] = [RemoveOwnerRefs(dep, (owner.uid,)) for dep, _ in dependents]
    return [*actions, RemoveFinalizer(owner, ORPHAN)]


def decide_foreground(owner: ObjectId, dependents: list[tuple[ObjectId, Obj]]) -> list[Action]:
    """Send the dependents away (blocking ones first); let the owner go when none blocks."""
    blocking = [(dep, obj) for dep, obj in dependents if blocks(obj, owner.uid)]
    if not blocking:
        return [RemoveFinalizer(owner, FOREGROUND)]
    others = [(dep, obj) for dep, obj in dependents if not blocks(obj, owner.uid)]
    return [Check(dep.uid) for dep, obj in [*blocking, *others] if not being_deleted(obj)]


def decide(
    item: ObjectId,
    obj: Obj,
    owners: dict[str, OwnerState],
    dependents: list[tuple[ObjectId, Obj]],
) -> list[Action]:
    """Every action the collector takes for one object, in order."""
    if being_deleted(obj):
        if ORPHAN in finalizers(obj):
            return decide_orphaning(item, dependents)
        if FOREGROUND in finalizers(obj):
            return decide_foreground(item, dependents)
        return []
    if not owners:
        return []
    return decide_dependent(item, obj, owners, bool(dependents))


# --- the graph --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    ref: ResourceRef
    key: str
    owners: tuple[str, ...]


class Graph:
    """Every watched object by uid, and the dependents of every owner uid."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def upsert(self, ref: ResourceRef, obj: Obj) -> set[str]:
        """Record the object; return the owner uids it dropped."""
        uid = obj["metadata"]["uid"]
        owners = tuple(dict.fromkeys(ref["uid"] for ref in owner_references(obj)))
        old = self.nodes.get(uid)
        dropped = set(old.owners) - set(owners) if old else set()
        for owner in dropped:
            self._unlink(owner, uid)
        for owner in owners:
            self._dependents.setdefault(owner, set()).add(uid)
        self.nodes[uid] = Node(ref, object_key(obj), owners)
        return dropped

    def remove(self, uid: str) -> Node | None:
        node = self.nodes.pop(uid, None)
        for owner in node.owners if node else ():
            self._unlink(owner, uid)
        return node

    def dependents_of(self, uid: str) -> set[str]:
        return set(self._dependents.get(uid, ()))

    def _unlink(self, owner: str, dependent: str) -> None:
        dependents = self._dependents.get(owner)
        if dependents is not None:
            dependents.discard(dependent)
            if not dependents:
                del self._dependents[owner]


# --- the controller ---------------------------------------------------------------------------


class UnknownOwnerKind(Exception):
    """An ownerReference names a kind the API does not serve (retried with backoff)."""


def deletable(resource: DiscoveredResource) -> bool:
    ref = resource.ref
    return resource.allows("list", "watch", "delete") and (ref.group, ref.plural) not in IGNORED


class GarbageCollector:
    """Informers on every deletable resource, a uid graph, and workers acting on `decide`."""

    def __init__(
        self,
        client: Client,
        *,
        workers: int = 4,
        resync_interval: float = 30.0,
        sync_timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.graph = Graph()
        self.queue = WorkQueue("garbagecollector")
        self.controller = Controller("garbagecollector", self.queue, self.reconcile, workers)
        self.resync_interval = resync_interval
        self.sync_timeout = sync_timeout
        self._informers: dict[ResourceRef, tuple[Informer, asyncio.Task[None]]] = {}
        self._by_kind: dict[tuple[str, str], ResourceRef] = {}
        self._stopped: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._discovered_at = -REDISCOVERY_INTERVAL

    async def run(self) -> None:
        """Discover, watch and collect until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keep_resources_synced())
                group.create_task(self.controller.run())
        finally:
            for informer_ref in list(self._informers):
                self._stop_informer(informer_ref, forget=False)
            await asyncio.gather(*self._stopped, return_exceptions=True)

    async def _keep_resources_synced(self) -> None:
        while True:
            try:
                await self.sync_resources()
            except Exception:
                log.exception("garbage collector: discovery failed")
            await asyncio.sleep(self.resync_interval)

    async def _rediscover(self) -> None:
        """Discovery now, rather than at the next resync; at most once a second."""
        now = asyncio.get_running_loop().time()
        if now - self._discovered_at < REDISCOVERY_INTERVAL:
            return
        self._discovered_at = now
        await self.sync_resources()

    async def sync_resources(self) -> None:
        """Watch every deletable resource discovery lists, and only those."""
        resources = await discover(self.client)
        self._by_kind = {(r.ref.group, r.ref.kind): r.ref for r in resources}
        wanted = {r.ref for r in resources if deletable(r)}
        started = [self._start_informer(ref) for ref in wanted - self._informers.keys()]
        for ref in self._informers.keys() - wanted:
            self._stop_informer(ref, forget=True)
        await self._wait_synced(started)
        self._ready.set()

    async def _wait_synced(self, informers: list[Informer]) -> None:
        """Until the informers have their first lists, or `sync_timeout` (then go on without)."""
        try:
            async with asyncio.timeout(self.sync_timeout):
                await asyncio.gather(*(informer.wait_synced() for informer in informers))
        except TimeoutError:
            unsynced = [str(i.ref) for i in informers if not i.has_synced]
            log.warning("garbage collector: going on without synced %s", ", ".join(unsynced))

    def _start_informer(self, ref: ResourceRef) -> Informer:
        informer = Informer(self.client, ref)
        informer.add_handlers(
            on_add=lambda obj: self._on_change(ref, obj),
            on_update=lambda old, new: self._on_change(ref, new),
            on_delete=self._on_delete,
        )
        self._informers[ref] = (informer, informer.start())
        return informer

    def _stop_informer(self, ref: ResourceRef, *, forget: bool) -> None:
        informer, task = self._informers.pop(ref)
        task.cancel()
        self._stopped.add(task)
        task.add_done_callback(self._stopped.discard)
        for obj in informer.cache.list() if forget else ():
            self._on_delete(obj)

    def _on_change(self, ref: ResourceRef, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        for owner in self.graph.upsert(ref, obj):
            self.queue.add(owner)  # an owner waiting in the foreground may be free now
        if owner_references(obj) or has_deletion_work(obj):
            self.queue.add(uid)

    def _on_delete(self, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        node = self.graph.remove(uid)
        for related in (*(node.owners if node else ()), *self.graph.dependents_of(uid)):
            self.queue.add(related)

    # -- one key --

    async def reconcile(self, uid: str) -> None:
        await self._ready.wait()  # the first discovery, and its informers' first lists
        found = self._lookup(uid)
        if found is None:
            return
        item, obj = found
        dependents = self._dependents(uid)
        owners = {} if being_deleted(obj) else await self._owner_states(item, obj)
        for action in decide(item, obj, owners, dependents):
            await self._act(action)

    def _lookup(self, uid: str) -> tuple[ObjectId, Obj] | None:
        node = self.graph.nodes.get(uid)
        entry = self._informers.get(node.ref) if node else None
        if node is None or entry is None:
            return None
        obj = entry[0].cache.get(node.key)
        if obj is None or obj["metadata"].get("uid") != uid:
            return None
        return object_id(node.ref, obj), obj

    def _dependents(self, uid: str) -> list[tuple[ObjectId, Obj]]:
        found = (self._lookup(dependent) for dependent in sorted(self.graph.dependents_of(uid)))
        return [entry for entry in found if entry is not None]

    async def _owner_states(self, item: ObjectId, obj: Obj) -> dict[str, OwnerState]:
        states: dict[str, OwnerState] = {}
        for reference in owner_references(obj):
            cached = self._lookup(reference["uid"])
            if cached is not None:
                states[reference["uid"]] = owner_state(cached[1])
            else:
                states[reference["uid"]] = await self._live_owner_state(item, reference)
        return states

    async def _live_owner_state(self, item: ObjectId, reference: Obj) -> OwnerState:
        """Ask the API before calling an owner absent: caches may lag."""
        group, _ = _split(str(reference.get("apiVersion", "")))
        kind = (group, str(reference.get("kind")))
        if kind not in self._by_kind:  # a CRD created since the last discovery
            await self._rediscover()
        ref = self._by_kind.get(kind)
        if ref is None:
            raise UnknownOwnerKind(f"{reference.get('apiVersion')} {reference.get('kind')}")
        if ref.namespaced and item.namespace is None:
            return OwnerState.ABSENT  # a cluster-scoped object cannot have a namespaced owner
        try:
            owner = await self.client.get(ref, reference["name"], item.namespace)
        except NotFound:
            return OwnerState.ABSENT
        if owner["metadata"].get("uid") != reference["uid"]:
            return OwnerState.ABSENT
        return owner_state(owner)

    # -- acting --

    async def _act(self, action: Action) -> None:
        log.info("garbage collector: %s", describe(action))
        if isinstance(action, Check):
            self.queue.add(action.uid)
        elif isinstance(action, Delete):
            await self._delete(action)
        elif isinstance(action, RemoveOwnerRefs):
            await self._modify(action.target, without_owners(action.owner_uids))
        else:
            await self._modify(action.target, without_finalizer(action.finalizer))

    async def _delete(self, action: Delete) -> None:
        target = action.target
        with contextlib.suppress(NotFound, Conflict):  # Conflict: the uid precondition failed
            await self.client.delete(
                target.ref,
                target.name,
                target.namespace,
                propagation_policy=action.propagation,
                preconditions={"uid": target.uid},
            )

    async def _modify(self, target: ObjectId, change: Change, attempts: int = 5) -> None:
        """Read, change and write back the object, again on a conflict."""
        for _ in range(attempts):
            try:
                obj = await self.client.get(target.ref, target.name, target.namespace)
            except NotFound:
                return
            if obj["metadata"].get("uid") != target.uid or not change(obj):
                return
            try:
                await self.client.update(target.ref, obj)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise ApiError(409, "Conflict", {"message": f"{target}: too many conflicts"})


def without_owners(uids: Iterable[str]) -> Change:
    """Drop the ownerReferences to these uids."""
    drop = set(uids)

    def change(obj: Obj) -> bool:
        refs = owner_references(obj)
        kept = [ref for ref in refs if ref.get("uid") not in drop]
        obj["metadata"]["ownerReferences"] = kept
        return len(kept) != len(refs)

    return change


def without_finalizer(finalizer: str) -> Change:
    """Drop one finalizer."""

    def change(obj: Obj) -> bool:
        present = finalizers(obj)
        obj["metadata"]["finalizers"] = [f for f in present if f != finalizer]
        return finalizer in present

    return change
