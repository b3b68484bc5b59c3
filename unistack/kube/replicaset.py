"""The ReplicaSet controller: keeps `spec.replicas` pods matching a ReplicaSet's selector.

For each ReplicaSet (queue key `namespace/name`) the pure `decide_replicas` looks at the pods
of its namespace and returns actions, as kube-controller-manager's replicaset controller does:
adopt orphans that match the selector, release owned pods that no longer match, create the
missing pods from `spec.template` (in slow-start batches 1, 2, 4, ...) or delete the extras
(unscheduled first, then not ready, then the newest), and write `status` (replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration) through the status
subresource. Pods being deleted do not count. `ReplicaSetController` observes (informers on
ReplicaSets and Pods, built on `unistack.runtime`) and acts; `Expectations` keeps it from
acting twice on pods its informer has not seen yet. The pod and selector helpers here are
shared with `unistack.kube.deployment`, which drives ReplicaSets.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from unistack.client.api import Client
from unistack.client.resources import PODS, REPLICASETS
from unistack.kube import labels as labels_module
from unistack.kube.labels import labels_of
from unistack.kube.podcontrol import (
    PodControl,
    is_terminating,
    owner_reference,
)
from unistack.runtime.controller import (
    Controller,
    controller_of,
    enqueue_objects,
    enqueue_owners,
    run_with_informers,
)
from unistack.runtime.informer import SharedInformers, namespace_index, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
BURST_REPLICAS = 500  # at most this many creations or deletions per sync, as kube


# --- pods and selectors (pure) ----------------------------------------------------------------


def parse_time(value: str | None) -> datetime.datetime | None:
    """An RFC 3339 timestamp as an aware datetime (None when absent or unreadable)."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def selector_matches(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """A workload's selector selects these labels; an empty one selects none."""
    return not labels_module.is_empty(selector) and labels_module.selector_matches(selector, labels)


def is_active(pod: Obj) -> bool:
    """Counts toward a ReplicaSet: not being deleted, not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


def ready_condition(pod: Obj) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def is_ready(pod: Obj) -> bool:
    condition = ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def ready_for(pod: Obj, now: datetime.datetime) -> float | None:
    """Seconds the pod has been Ready (None when it is not ready)."""
    condition = ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return None
    since = parse_time(condition.get("lastTransitionTime"))
    return (now - since).total_seconds() if since else 0.0


def is_available(pod: Obj, min_ready_seconds: int, now: datetime.datetime) -> bool:
    """Ready for at least `min_ready_seconds`."""
    seconds = ready_for(pod, now)
    return seconds is not None and (min_ready_seconds <= 0 or seconds >= min_ready_seconds)


def owned_by(obj: Obj, uid: str) -> bool:
    """The object's controller is the owner with this uid."""
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == uid


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdoptPod:
    name: str


@dataclass(frozen=True, slots=True)
class ReleasePod:
    name: str


@dataclass(frozen=True, slots=True)
class CreatePods:
    count: int


@dataclass(frozen=True, slots=True)
class DeletePods:
    names: tuple[str, ...]  # in the order to delete them


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    status: Obj


@dataclass(frozen=True, slots=True)
class RequeueAfter:
    seconds: float


Action = AdoptPod | ReleasePod | CreatePods | DeletePods | UpdateStatus | RequeueAfter


@dataclass(frozen=True, slots=True)
class Claim:
    """The pods a ReplicaSet counts, and the ownership changes that took."""

    pods: tuple[Obj, ...]
    actions: tuple[Action, ...]


def _adoptable(rs: Obj, pod: Obj) -> bool:
    """An orphan pod a live ReplicaSet may take (its selector matching is checked apart)."""
    return controller_of(pod) is None and not is_terminating(pod) and not is_terminating(rs)


def claim_pods(rs: Obj, pods: Iterable[Obj]) -> Claim:
    """kube's ClaimPods: keep owned matching pods, adopt matching orphans, release the rest."""
    uid, selector = rs["metadata"]["uid"], rs.get("spec", {}).get("selector")
    claimed: list[Obj] = []
    actions: list[Action] = []
    for pod in pods:
        matches = selector_matches(selector, labels_of(pod))
        name = pod["metadata"]["name"]
        if owned_by(pod, uid):
            if matches:
                claimed.append(pod)
            elif not is_terminating(pod):
                actions.append(ReleasePod(name))
        elif matches and _adoptable(rs, pod):
            claimed.append(pod)
            actions.append(AdoptPod(name))
    return Claim(tuple(claimed), tuple(actions))


def _deletion_rank(pod: Obj) -> tuple[bool, int, bool, int]:
    """Smaller goes first: unscheduled, pending, not ready, most restarted."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    scheduled = bool(pod.get("spec", {}).get("nodeName"))
    return (scheduled, phase_rank, is_ready(pod), -restarts)


def pods_to_delete(pods: Iterable[Obj], count: int) -> list[Obj]:
    """The `count` pods to delete first (ties: the newest first)."""
    newest_first = sorted(
        pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
    )
    return sorted(newest_first, key=_deletion_rank)[:count]


def replica_status(rs: Obj, pods: list[Obj], now: datetime.datetime) -> Obj:
    """The ReplicaSet's status given the active pods it owns."""
    spec = rs.get("spec") or {}
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(
            1 for p in pods if template_labels.items() <= labels_of(p).items()
        ),
        "readyReplicas": sum(1 for p in pods if is_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 0),
    }
    conditions = (rs.get("status") or {}).get("conditions")
    return {**status, "conditions": conditions} if conditions else status


def _next_available_in(rs: Obj, pods: list[Obj], now: datetime.datetime) -> float | None:
    """Seconds until a ready pod becomes available (minReadySeconds), if any is waiting."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [
        min_ready - seconds
        for p in pods
        if (seconds := ready_for(p, now)) is not None and seconds < min_ready
    ]
    return min(waits) if waits else None


def _status_changed(rs: Obj, status: Obj) -> bool:
    current = rs.get("status") or {}
    return any(current.get(key, 0) != value for key, value in status.items())


def manage_replicas(rs: Obj, active: list[Obj]) -> list[Action]:
    """Create the missing pods or delete the extras, at most a burst at a time."""
    if is_terminating(rs):
        return []
    diff = len(active) - int((rs.get("spec") or {}).get("replicas", 1))
    if diff < 0:
        return [CreatePods(min(-diff, BURST_REPLICAS))]
    if diff > 0:
        doomed = pods_to_delete(active, min(diff, BURST_REPLICAS))
        return [DeletePods(tuple(p["metadata"]["name"] for p in doomed))]
    return []


def decide_replicas(
    rs: Obj, pods: Iterable[Obj], now: datetime.datetime, *, manage: bool = True
) -> list[Action]:
    """What to do for a ReplicaSet given the pods of its namespace.

    `manage=False` (earlier creations or deletions not yet observed) only claims pods and
    reports status.
    """
    claim = claim_pods(rs, pods)
    active = [p for p in claim.pods if is_active(p)]
    actions: list[Action] = list(claim.actions)
    if manage:
        actions.extend(manage_replicas(rs, active))
    status = replica_status(rs, active, now)
    if _status_changed(rs, status):
        actions.append(UpdateStatus(status))
    wait = _next_available_in(rs, active, now)
    if wait is not None:
        actions.append(RequeueAfter(max(wait, 0.1)))
    return actions


def pod_from_template(rs: Obj) -> Obj:
    """A new pod for the ReplicaSet: its template, generateName `<rs>-`, owned by it."""
    template = (rs.get("spec") or {}).get("template") or {}
    meta = template.get("metadata") or {}
    metadata: Obj = {
        "generateName": f"{rs['metadata']['name']}-",
        "namespace": rs["metadata"].get("namespace"),
        "labels": dict(meta.get("labels") or {}),
        "ownerReferences": [owner_reference(rs)],
    }
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec")}


# --- the controller ---------------------------------------------------------------------------


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ReplicaSetController:
    """Watches ReplicaSets and Pods; keeps each ReplicaSet's pods at its replica count."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.replicasets = shared.informer(REPLICASETS, indexers={"namespace": namespace_index})
        self.pods = shared.informer(PODS, indexers={"namespace": namespace_index})
        self.queue = WorkQueue("replicaset")
        self.controller = Controller("replicaset", self.queue, self.reconcile, workers)
        self.pod_control = PodControl(client)
        enqueue_objects(self.replicasets, self.queue)
        enqueue_owners(self.pods, self.queue, REPLICASETS)
        self.pods.add_handlers(on_add=self._wake_selectors, on_update=self._wake_on_relabel)

    def _wake_selectors(self, pod: Obj) -> None:
        """An orphan pod wakes the ReplicaSets whose selector matches it (to adopt it)."""
        if controller_of(pod) is not None:
            return
        namespace = pod["metadata"].get("namespace", "")
        for rs in self.replicasets.cache.by_index("namespace", namespace):
            if selector_matches(rs.get("spec", {}).get("selector"), labels_of(pod)):
                self.queue.add(object_key(rs))

    def _wake_on_relabel(self, old: Obj, new: Obj) -> None:
        if labels_of(old) != labels_of(new):
            self._wake_selectors(new)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.replicasets, self.pods)

    def _namespace_pods(self, namespace: str) -> dict[str, Obj]:
        return {p["metadata"]["name"]: p for p in self.pods.cache.by_index("namespace", namespace)}

    async def reconcile(self, key: str) -> float | None:
        rs = self.replicasets.cache.get(key)
        if rs is None:
            self.pod_control.forget(key)
            return None
        pods = self._namespace_pods(rs["metadata"]["namespace"])
        manage = self.pod_control.may_manage(key, pods)
        actions = decide_replicas(rs, pods.values(), utc_now(), manage=manage)
        requeue: float | None = None
        for action in actions:
            if isinstance(action, RequeueAfter):
                requeue = action.seconds
            else:
                await self.act(key, rs, action)
        return requeue

    async def act(self, key: str, rs: Obj, action: Action) -> None:
        control = self.pod_control
        if isinstance(action, AdoptPod | ReleasePod):
            await control.change_owner(rs, action.name, adopt=isinstance(action, AdoptPod))
        elif isinstance(action, CreatePods):
            await control.create_in_batches(key, pod_from_template(rs), action.count)
        elif isinstance(action, DeletePods):
            await control.delete(key, rs["metadata"]["namespace"], action.names)
        elif isinstance(action, UpdateStatus):
            await control.patch_status(REPLICASETS, rs, action.status)
