"""The DaemonSet controller: one pod of a DaemonSet on every node that should run it.

For each DaemonSet (queue key `namespace/name`) the pure `decide_daemons` looks at the nodes
and the pods of its namespace and returns actions, as kube-controller-manager's daemonset
controller does. A node should run the daemon when the template's `nodeSelector` and required
node affinity match it and the pod, with kube's default daemon tolerations added, tolerates its
NoSchedule and NoExecute taints (the predicates of `unistack.kube.scheduler.filters`). The
decision creates a pod for each such node that has none (generateName `<ds>-`, a controller
ownerReference, and a required node affinity `metadata.name In [node]` so the scheduler binds
it there), deletes failed pods (a later sync recreates them), extra pods on a node (the oldest
scheduled one stays), and pods on nodes that are gone or may no longer run it (an untolerated
NoExecute taint, a mismatched selector). With `updateStrategy` RollingUpdate (the default) it
replaces pods of an older template, at most `maxUnavailable` unavailable at a time. It writes
`status` through the status subresource.

`DaemonSetController` observes (informers on DaemonSets, Pods and Nodes; any node event wakes
every DaemonSet) and acts. Pod, selector, ownership and expectation helpers are shared with
`unistack.kube.replicaset`; the template hash with `unistack.kube.deployment`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unistack.client.api import Client
from unistack.client.resources import DAEMONSETS, NODES, PODS
from unistack.kube.deployment import scaled_value, template_hash
from unistack.kube.podcontrol import PodControl
from unistack.kube.replicaset import (
    AdoptPod,
    DeletePods,
    ReleasePod,
    RequeueAfter,
    UpdateStatus,
    claim_pods,
    is_available,
    is_ready,
    is_terminating,
    owner_reference,
    ready_for,
    utc_now,
)
from unistack.kube.scheduler.filters import NodeInfo, node_affinity, taint_toleration, tolerated
from unistack.runtime.controller import (
    Controller,
    enqueue_objects,
    enqueue_owners,
    run_with_informers,
)
from unistack.runtime.informer import SharedInformers, copy_object, namespace_index, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
REVISION_LABEL = "controller-revision-hash"
NODE_NAME_FIELD = "metadata.name"


def _toleration(key: str, effect: str) -> Obj:
    return {"key": key, "operator": "Exists", "effect": effect}


# What kube's daemonset controller adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations).
DEFAULT_TOLERATIONS: tuple[Obj, ...] = (
    _toleration("node.kubernetes.io/not-ready", "NoExecute"),
    _toleration("node.kubernetes.io/unreachable", "NoExecute"),
    _toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
    _toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
    _toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
    _toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
)


# --- daemon pods (pure) -----------------------------------------------------------------------


def _with_default_tolerations(tolerations: Iterable[Obj]) -> list[Obj]:
    merged = [dict(t) for t in tolerations]
    present = {(t.get("key"), t.get("effect")) for t in merged}
    merged.extend(dict(t) for t in DEFAULT_TOLERATIONS if (t["key"], t["effect"]) not in present)
    return merged


def pin_to_node(affinity: Obj | None, node: str) -> Obj:
    """The affinity with its required node terms replaced by `metadata.name In [node]`."""
    pinned = copy_object(affinity or {})
    node_affinity_ = pinned.setdefault("nodeAffinity", {})
    term = {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node]}]}
    node_affinity_["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    return pinned


def daemon_pod(ds: Obj, node: str | None = None) -> Obj:
    """A new pod for the DaemonSet, pinned to `node` when given (else as checked for a node)."""
    template = (ds.get("spec") or {}).get("template") or {}
    meta = template.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), REVISION_LABEL: template_hash(template)}
    metadata: Obj = {
        "generateName": f"{ds['metadata']['name']}-",
        "namespace": ds["metadata"].get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(ds)],
    }
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    spec = copy_object(template.get("spec") or {})
    spec["tolerations"] = _with_default_tolerations(spec.get("tolerations") or [])
    if node is not None:
        spec["affinity"] = pin_to_node(spec.get("affinity"), node)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def should_run(pod: Obj, node: Obj) -> bool:
    """A new daemon pod may go to the node: affinity matches, NoSchedule/NoExecute tolerated."""
    info = NodeInfo.of(node)
    return not node_affinity(pod, info) and not taint_toleration(pod, info)


def should_continue_running(pod: Obj, node: Obj) -> bool:
    """A daemon pod may stay on the node: affinity matches and NoExecute taints are tolerated."""
    if node_affinity(pod, NodeInfo.of(node)):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    return all(tolerated(pod, t) for t in taints if t.get("effect") == "NoExecute")


def target_node(pod: Obj) -> str | None:
    """The node a pod runs on, or the node its pinning affinity names while unscheduled."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == NODE_NAME_FIELD and field.get("operator") == "In" and values:
                return str(values[0])
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _oldest_scheduled_first(pod: Obj) -> tuple[bool, str, str]:
    meta = pod["metadata"]
    scheduled = bool((pod.get("spec") or {}).get("nodeName"))
    return (not scheduled, meta.get("creationTimestamp", ""), meta["name"])


def pods_by_node(pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    """The DaemonSet's pods per target node, the one to keep first (pods with none are left)."""
    grouped: dict[str, list[Obj]] = {}
    for pod in pods:
        node = target_node(pod)
        if node is not None:
            grouped.setdefault(node, []).append(pod)
    return {node: sorted(group, key=_oldest_scheduled_first) for node, group in grouped.items()}


def _running(pods: list[Obj]) -> list[Obj]:
    """Not being deleted and not finished."""
    return [p for p in pods if not is_terminating(p) and _phase(p) not in ("Failed", "Succeeded")]


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateDaemonPods:
    nodes: tuple[str, ...]


Action = AdoptPod | ReleasePod | CreateDaemonPods | DeletePods | UpdateStatus | RequeueAfter


@dataclass(frozen=True, slots=True)
class Placement:
    """Which nodes should run the daemon, and the DaemonSet's pods on every node."""

    eligible: frozenset[str]
    allowed: frozenset[str]  # may keep a pod already there (eligible or only NoSchedule-tainted)
    pods: dict[str, list[Obj]]


def place(ds: Obj, nodes: Iterable[Obj], pods: Iterable[Obj]) -> Placement:
    template_pod = daemon_pod(ds)
    nodes = list(nodes)
    eligible = {n["metadata"]["name"] for n in nodes if should_run(template_pod, n)}
    allowed = {n["metadata"]["name"] for n in nodes if should_continue_running(template_pod, n)}
    return Placement(frozenset(eligible), frozenset(allowed), pods_by_node(pods))


def _node_deletions(node: str, pods: list[Obj], placement: Placement) -> list[str]:
    """Failed and finished pods, extras beyond the first, or all when the node may not run it."""
    live = [p for p in pods if not is_terminating(p)]
    if node not in placement.allowed:
        return [p["metadata"]["name"] for p in live]
    finished = [p for p in live if _phase(p) in ("Failed", "Succeeded")]
    return [p["metadata"]["name"] for p in finished + _running(pods)[1:]]


def manage_daemons(ds: Obj, placement: Placement) -> list[Action]:
    """Create the missing daemon pods, delete the ones that should not be there."""
    if is_terminating(ds):
        return []
    missing = sorted(placement.eligible - set(placement.pods))
    doomed = [
        name
        for node, pods in sorted(placement.pods.items())
        for name in _node_deletions(node, pods, placement)
    ]
    actions: list[Action] = []
    if missing:
        actions.append(CreateDaemonPods(tuple(missing)))
    if doomed:
        actions.append(DeletePods(tuple(doomed)))
    return actions


def _min_ready(ds: Obj) -> int:
    return int((ds.get("spec") or {}).get("minReadySeconds") or 0)


def _current_pod(placement: Placement, node: str) -> Obj | None:
    running = _running(placement.pods.get(node, []))
    return running[0] if running else None


def rolling_update(ds: Obj, placement: Placement, now: datetime.datetime) -> list[Action]:
    """Delete pods of an older template, keeping at most maxUnavailable nodes unavailable."""
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or is_terminating(ds):
        return []
    wanted = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    budget = max(scaled_value(wanted, len(placement.eligible), round_up=True), 1)
    revision = template_hash((ds.get("spec") or {}).get("template"))
    current = {node: _current_pod(placement, node) for node in sorted(placement.eligible)}
    available = {n for n, p in current.items() if p and is_available(p, _min_ready(ds), now)}
    unavailable = len(placement.eligible) - len(available)
    doomed = []
    for node, pod in current.items():
        if pod is None or pod["metadata"].get("labels", {}).get(REVISION_LABEL) == revision:
            continue
        if node not in available:
            doomed.append(pod["metadata"]["name"])
        elif unavailable < budget:
            doomed.append(pod["metadata"]["name"])
            unavailable += 1
    return [DeletePods(tuple(doomed))] if doomed else []


def daemon_status(ds: Obj, placement: Placement, now: datetime.datetime) -> Obj:
    """kube's DaemonSet status, counted per node from the first pod on it."""
    revision = template_hash((ds.get("spec") or {}).get("template"))
    current = {node: _current_pod(placement, node) for node in placement.pods}
    scheduled = [pod for node, pod in current.items() if pod and node in placement.eligible]
    available = sum(1 for p in scheduled if is_available(p, _min_ready(ds), now))
    return {
        "desiredNumberScheduled": len(placement.eligible),
        "currentNumberScheduled": len(scheduled),
        "numberMisscheduled": sum(
            1 for node, pod in current.items() if pod and node not in placement.eligible
        ),
        "numberReady": sum(1 for p in scheduled if is_ready(p)),
        "numberAvailable": available,
        "numberUnavailable": len(placement.eligible) - available,
        "updatedNumberScheduled": sum(
            1 for p in scheduled if p["metadata"].get("labels", {}).get(REVISION_LABEL) == revision
        ),
        "observedGeneration": ds["metadata"].get("generation", 0),
    }


def _next_available_in(ds: Obj, placement: Placement, now: datetime.datetime) -> float | None:
    """Seconds until a ready daemon pod becomes available (minReadySeconds), if any waits."""
    waits = [
        _min_ready(ds) - seconds
        for pods in placement.pods.values()
        for pod in _running(pods)
        if (seconds := ready_for(pod, now)) is not None and seconds < _min_ready(ds)
    ]
    return min(waits) if waits else None


def decide_daemons(
    ds: Obj,
    nodes: Iterable[Obj],
    pods: Iterable[Obj],
    now: datetime.datetime,
    *,
    manage: bool = True,
) -> list[Action]:
    """What to do for a DaemonSet given the nodes and the pods of its namespace.

    `manage=False` (earlier creations or deletions not yet observed) only claims pods and
    reports status.
    """
    claim = claim_pods(ds, pods)
    placement = place(ds, nodes, claim.pods)
    actions: list[Action] = [a for a in claim.actions if isinstance(a, AdoptPod | ReleasePod)]
    if manage:
        changes = manage_daemons(ds, placement)
        actions.extend(changes or rolling_update(ds, placement, now))
    status = daemon_status(ds, placement, now)
    current = ds.get("status") or {}
    if any(current.get(key, 0) != value for key, value in status.items()):
        actions.append(UpdateStatus(status))
    wait = _next_available_in(ds, placement, now)
    if wait is not None:
        actions.append(RequeueAfter(max(wait, 0.1)))
    return actions


# --- the controller ---------------------------------------------------------------------------


class DaemonSetController:
    """Watches DaemonSets, Pods and Nodes; keeps one daemon pod on every eligible node."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.daemonsets = shared.informer(DAEMONSETS, indexers={"namespace": namespace_index})
        self.pods = shared.informer(PODS, indexers={"namespace": namespace_index})
        self.nodes = shared.informer(NODES)
        self.queue = WorkQueue("daemonset")
        self.controller = Controller("daemonset", self.queue, self.reconcile, workers)
        self.pod_control = PodControl(client)
        enqueue_objects(self.daemonsets, self.queue)
        enqueue_owners(self.pods, self.queue, DAEMONSETS)
        self.nodes.add_handlers(
            on_add=self._wake_all,
            on_update=lambda old, new: self._wake_all(new),
            on_delete=self._wake_all,
        )

    def _wake_all(self, node: Obj) -> None:
        """Any node change may change where every DaemonSet should run."""
        for ds in self.daemonsets.cache.list():
            self.queue.add(object_key(ds))

    async def run(self) -> None:
        await run_with_informers(self.controller, self.daemonsets, self.pods, self.nodes)

    def _namespace_pods(self, namespace: str) -> dict[str, Obj]:
        return {p["metadata"]["name"]: p for p in self.pods.cache.by_index("namespace", namespace)}

    async def reconcile(self, key: str) -> float | None:
        ds = self.daemonsets.cache.get(key)
        if ds is None:
            self.pod_control.forget(key)
            return None
        pods = self._namespace_pods(ds["metadata"]["namespace"])
        manage = self.pod_control.may_manage(key, pods)
        nodes = self.nodes.cache.list()
        requeue: float | None = None
        for action in decide_daemons(ds, nodes, pods.values(), utc_now(), manage=manage):
            if isinstance(action, RequeueAfter):
                requeue = action.seconds
            else:
                await self.act(key, ds, action)
        return requeue

    async def act(self, key: str, ds: Obj, action: Action) -> None:
        control = self.pod_control
        if isinstance(action, AdoptPod | ReleasePod):
            await control.change_owner(ds, action.name, adopt=isinstance(action, AdoptPod))
        elif isinstance(action, CreateDaemonPods):
            await control.create(key, [daemon_pod(ds, node) for node in action.nodes])
        elif isinstance(action, DeletePods):
            await control.delete(key, ds["metadata"]["namespace"], action.names)
        elif isinstance(action, UpdateStatus):
            await control.patch_status(DAEMONSETS, ds, action.status)
