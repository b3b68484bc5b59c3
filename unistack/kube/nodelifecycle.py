"""The node lifecycle controller: a host whose agent stopped renewing its heartbeat is not
Ready, as kube-controller-manager's node lifecycle controller decides.

Each agent renews the Lease `kube-node-lease/<node>` every 10 s and posts the Node's status
(`unistack.agent.node`). When neither has been heard of for `grace` (upstream's
node-monitor-grace-period, 40 s), the Node's conditions become `Unknown` with reason
`NodeStatusUnknown` ("Kubelet stopped posting node status.") and it is tainted
`node.kubernetes.io/unreachable` (NoSchedule and NoExecute, as upstream's taint-based
eviction does): the pod scheduler and the compute scheduler then place nothing there, and
`openstack compute service list` shows it down. When the agent posts Ready again, the taints
go. Only Nodes with a heartbeat Lease are judged: a Node nobody heartbeats for (registered by
hand, a scale test's fake hypervisor) is left as it is.

The pods of an unreachable node are evicted as upstream's taint manager does: a pod that
does not tolerate the NoExecute taint is deleted at once; one that tolerates it for
`tolerationSeconds` (every pod gets 300 s by default, DefaultTolerationSeconds) is deleted
that long after the taint was added; one that tolerates it for ever (a DaemonSet's) stays.
The deleted pod stays Terminating until its node answers again, but its ReplicaSet counts it
gone and starts a replacement on a node that is up.

`decide_node` and `eviction_due` are pure (the Node, its Lease, a pod, the time → what to
change and when to look again); `NodeLifecycleController` observes Nodes, Leases and Pods
through informers and acts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from unistack.client.api import Client, Conflict, NotFound
from unistack.client.resources import LEASES, NODES, PODS
from unistack.kube.scheduler.filters import tolerates
from unistack.runtime import events
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import SharedInformers, object_key
from unistack.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
GRACE_S = 40.0
UNREACHABLE = "node.kubernetes.io/unreachable"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What to write: the status's conditions and the spec's taints (None: as they are),
    when to look again (None: on the next change only), and the NoExecute taint whose
    tolerations decide which pods go (None while the node is heard of)."""

    conditions: list[Obj] | None = None
    taints: list[Obj] | None = None
    requeue: float | None = None
    evict_for: Obj | None = None


def last_heard(node: Obj, lease: Obj | None) -> float:
    """The latest of the Lease's renewal and the Ready condition's heartbeat."""
    renewed = events.parse_timestamp(((lease or {}).get("spec") or {}).get("renewTime"))
    ready = ready_condition(node) or {}
    return max(renewed, events.parse_timestamp(ready.get("lastHeartbeatTime")))


def ready_condition(node: Obj) -> Obj | None:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def _unreachable_taints(now: float) -> list[Obj]:
    added = events.timestamp(now)
    return [
        {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": added},
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added},
    ]


def decide_node(node: Obj, lease: Obj | None, now: float, grace: float = GRACE_S) -> NodeChange:
    """Unknown and tainted once unheard of for `grace`; untainted once Ready again."""
    if lease is None:
        return NodeChange()
    taints = list((node.get("spec") or {}).get("taints") or [])
    mine = [taint for taint in taints if taint.get("key") == UNREACHABLE]
    others = [taint for taint in taints if taint.get("key") != UNREACHABLE]
    ready = ready_condition(node) or {}
    silent_for = now - last_heard(node, lease)
    if silent_for <= grace:
        # heard of lately: untaint once the agent says Ready; look again when it may go silent
        untaint = others if mine and ready.get("status") == "True" else None
        return NodeChange(taints=untaint, requeue=grace - silent_for + 1.0)
    conditions = None
    if ready.get("status") != "Unknown":
        transition = events.timestamp(now)
        conditions = [
            {
                **condition,
                "status": "Unknown",
                "reason": UNKNOWN_REASON,
                "message": UNKNOWN_MESSAGE,
                "lastTransitionTime": transition,
            }
            for condition in (node.get("status") or {}).get("conditions") or []
        ]
        if not any(condition.get("type") == "Ready" for condition in conditions):
            conditions.append(
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": UNKNOWN_REASON,
                    "message": UNKNOWN_MESSAGE,
                    "lastTransitionTime": transition,
                }
            )
    wanted = {(taint.get("key"), taint.get("effect")) for taint in mine}
    taints_now = None
    if wanted != {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}:
        taints_now = others + _unreachable_taints(now)
    evict_for = _no_execute(mine if taints_now is None else taints_now)
    return NodeChange(conditions=conditions, taints=taints_now, evict_for=evict_for)


def eviction_due(pod: Obj, taint: Obj) -> float | None:
    """When `pod` goes for the NoExecute `taint` (epoch seconds; the taint's time for one
    not tolerating it), or None when it tolerates it for ever."""
    added = events.parse_timestamp(taint.get("timeAdded"))
    matching = [
        toleration
        for toleration in (pod.get("spec") or {}).get("tolerations") or []
        if isinstance(toleration, dict) and tolerates(toleration, taint)
    ]
    if not matching:
        return added
    seconds = [t.get("tolerationSeconds") for t in matching]
    if any(value is None for value in seconds):
        return None  # tolerated for ever by one of them
    return added + max(0, min(int(value) for value in seconds if value is not None))


def _no_execute(taints: list[Obj]) -> Obj | None:
    for taint in taints:
        if taint.get("key") == UNREACHABLE and taint.get("effect") == "NoExecute":
            return dict(taint)
    return None


def node_of(pod: Obj) -> list[str]:
    """The pods' `node` index: the node a pod is bound to."""
    name = (pod.get("spec") or {}).get("nodeName")
    return [str(name)] if name else []


class NodeLifecycleController:
    """Watches Nodes and their heartbeat Leases; marks the silent ones unreachable."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, grace: float = GRACE_S
    ) -> None:
        self.client = client
        self.grace = grace
        shared = informers or SharedInformers(client)
        self.nodes = shared.informer(NODES)
        self.leases = shared.informer(LEASES)
        self.pods = shared.informer(PODS, indexers={"node": node_of})
        self.queue = WorkQueue("node-lifecycle")
        self.controller = Controller("node-lifecycle", self.queue, self.reconcile)
        self.nodes.add_handlers(
            on_add=self._node_changed,
            on_update=lambda old, new: self._node_changed(new),
            on_delete=self._node_changed,
        )
        self.leases.add_handlers(
            on_add=self._lease_changed,
            on_update=lambda old, new: self._lease_changed(new),
        )

    def _node_changed(self, node: Obj) -> None:
        self.queue.add(object_key(node))

    def _lease_changed(self, lease: Obj) -> None:
        if lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.add(lease["metadata"]["name"])

    async def run(self) -> None:
        await run_with_informers(self.controller, self.nodes, self.leases, self.pods)

    async def reconcile(self, name: str) -> float | None:
        node = self.nodes.cache.get(name)
        if node is None:
            return None
        lease = self.leases.cache.get(f"{LEASE_NAMESPACE}/{name}")
        change = decide_node(node, lease, time.time(), self.grace)
        try:
            if change.taints is not None:  # first: the Node as it was decided on, or Conflict
                patch = {
                    "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                    "spec": {"taints": change.taints},
                }
                await self.client.patch(NODES, name, patch)
            if change.conditions is not None:
                patch = {"status": {"conditions": change.conditions}}
                await self.client.patch(NODES, name, patch, subresource="status")
        except NotFound:
            return None
        except Conflict:
            return 0.5  # the Node changed meanwhile: decide again on what it is now
        if change.evict_for is None:
            return change.requeue
        return await self._evict(name, change.evict_for)

    async def _evict(self, name: str, taint: Obj) -> float | None:
        """Delete the node's pods whose toleration ran out; when to look again for the rest."""
        now = time.time()
        later: float | None = None
        for pod in self.pods.cache.by_index("node", name):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            due = eviction_due(pod, taint)
            if due is None:
                continue
            if due > now:
                later = due - now if later is None else min(later, due - now)
                continue
            meta = pod["metadata"]
            log.info(
                "evicting pod %s/%s from unreachable node %s", meta["namespace"], meta["name"], name
            )
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(
                    PODS, meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]}
                )
        return None if later is None else later + 0.5
