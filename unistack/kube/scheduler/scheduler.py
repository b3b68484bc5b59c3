"""The scheduler: picks a node for each pending pod and binds it there.

Queue keys are pod keys (`namespace/name`) of pods this scheduler owns (`schedulerName`
empty or `default-scheduler`) with no node, not being deleted, not finished and not gated.
For each key the pure `decide(pod, nodes, pods_by_node)` runs the `filters` (then
`podaffinity`) on every node and the `scoring` on those that pass, and answers `Bind(node)`
for the best, or `Unschedulable(reason, message)` with kube-scheduler's message ("0/3 nodes
are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.").

`Scheduler` observes (informers of pods and nodes, plus the pods it bound that the cache has
not seen bound yet, so two quick decisions do not overcommit a node) and acts: a Bind POSTs
the `binding` subresource and records a `Scheduled` Event; an Unschedulable sets the pod's
`PodScheduled=False` condition through the status subresource, records a `FailedScheduling`
Event, and keeps the key aside. Those keys are queued again when the cluster changes (a node
added or changed, a pod deleted or finished; a pod placed, for those waiting on pod affinity)
and otherwise retried with a growing backoff.
One worker, as kube-scheduler schedules one pod at a time. Built on `unistack.runtime`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unistack.client.api import Client, Conflict, NotFound
from unistack.client.resources import NODES, PODS
from unistack.kube.scheduler import filters, podaffinity, scoring
from unistack.runtime import events
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import Informer, copy_object, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"
UNSCHEDULABLE_REASON = "Unschedulable"
_TERMINAL = ("Succeeded", "Failed")

log = logging.getLogger(__name__)


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    node: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    reason: str
    message: str


Decision = Bind | Unschedulable


def needs_scheduling(pod: Obj) -> bool:
    """A pending pod this scheduler is responsible for."""
    meta, spec = pod.get("metadata", {}), pod.get("spec") or {}
    return (
        spec.get("schedulerName") in (None, "", SCHEDULER_NAME)
        and not spec.get("nodeName")
        and not spec.get("schedulingGates")
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") not in _TERMINAL
    )


def occupies_node(pod: Obj) -> bool:
    """Bound and not finished: its requests and ports count on its node."""
    phase = (pod.get("status") or {}).get("phase")
    return bool((pod.get("spec") or {}).get("nodeName")) and phase not in _TERMINAL


def failure_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError text: counts of each reason, sorted, after the node count."""
    if total == 0:
        return NO_NODES
    counts = sorted(f"{n} {reason}" for reason, n in reasons.items())
    return f"0/{total} nodes are available: {', '.join(counts)}."


def uses_pod_affinity(pod: Obj) -> bool:
    return any(podaffinity.required_terms(pod, k) for k in ("podAffinity", "podAntiAffinity"))


def _failures(pod: Obj, info: filters.NodeInfo, cluster: Sequence[filters.NodeInfo]) -> list[str]:
    """The node-local filters, then (when any pod uses it) inter-pod affinity."""
    return filters.node_failures(pod, info) or (
        podaffinity.inter_pod_affinity(pod, info, cluster) if cluster else []
    )


def cluster_view(
    nodes: Sequence[Obj], pods_by_node: Mapping[str, Sequence[Obj]]
) -> list[filters.NodeInfo]:
    return [
        filters.NodeInfo.of(node, tuple(pods_by_node.get(node["metadata"]["name"], ())))
        for node in nodes
    ]


def decide(pod: Obj, nodes: Sequence[Obj], pods_by_node: Mapping[str, Sequence[Obj]]) -> Decision:
    """Where the pod goes: the best-scoring node that passes every filter, or why none does."""
    infos = cluster_view(nodes, pods_by_node)
    placed = (p for info in infos for p in info.pods)
    affinity = uses_pod_affinity(pod) or any(map(uses_pod_affinity, placed))
    reasons: Counter[str] = Counter()
    best: tuple[int, str] | None = None
    for info in infos:
        failures = _failures(pod, info, infos if affinity else ())
        reasons.update(failures)
        if not failures:
            candidate = (-scoring.score(pod, info), info.name)
            best = candidate if best is None or candidate < best else best
    if best is not None:
        return Bind(best[1])
    return Unschedulable(UNSCHEDULABLE_REASON, failure_message(len(nodes), reasons))


def scheduled_condition(pod: Obj) -> Obj | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "PodScheduled"), None)


def with_unschedulable_condition(pod: Obj, decision: Unschedulable, now: str) -> Obj | None:
    """A copy of the pod with `PodScheduled=False` for the decision; None when already so."""
    old = scheduled_condition(pod) or {}
    wanted = {"type": "PodScheduled", "status": "False"}
    wanted |= {"reason": decision.reason, "message": decision.message}
    if all(old.get(k) == v for k, v in wanted.items()):
        return None
    updated = copy_object(pod)
    status = updated.setdefault("status", {})
    kept = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    condition = {**wanted, "lastProbeTime": None, "lastTransitionTime": now}
    status["conditions"] = [*kept, condition]
    status.setdefault("phase", "Pending")
    return updated


def binding_for(pod: Obj, node: str) -> Obj:
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def event_for(pod: Obj, kind: str, reason: str, message: str, now: str) -> Obj:
    """A v1 Event about the pod, from the default scheduler."""
    return events.event(pod, "Pod", kind, reason, message, component=SCHEDULER_NAME, now=now)


def scheduling_view(node: Obj) -> tuple[Any, ...]:
    """What of a node scheduling reads: a change here retries the unschedulable pods."""
    status = node.get("status") or {}
    return (node.get("metadata", {}).get("labels"), node.get("spec"), status.get("allocatable"))


def scheduling_inputs(pod: Obj) -> tuple[Any, ...]:
    """What of a pod scheduling reads: its spec, labels and namespace."""
    meta = pod.get("metadata", {})
    return (pod.get("spec"), meta.get("labels"), meta.get("deletionTimestamp"))


# --- the scheduler ----------------------------------------------------------------------------


class Scheduler:
    """Watches pods and nodes; binds each pending pod, or reports why it cannot."""

    def __init__(
        self, client: Client, *, backoff_initial: float = 1.0, backoff_max: float = 60.0
    ) -> None:
        self.client = client
        self.events = events.EventRecorder(client, SCHEDULER_NAME)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES)
        self.queue = WorkQueue("scheduler")
        self.controller = Controller("scheduler", self.queue, self.reconcile, workers=1)
        self.unschedulable: dict[str, int] = {}  # key → failed attempts
        self.assumed: dict[str, Obj] = {}  # key → pod bound here, not yet seen bound
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.pods, self.nodes)

    # -- events → keys --------------------------------------------------------------------

    def _pod_added(self, pod: Obj) -> None:
        if needs_scheduling(pod):
            self.queue.add(object_key(pod))
        elif occupies_node(pod):
            self.retry_affinity()

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = object_key(new)
        if needs_scheduling(new):
            if key not in self.unschedulable or scheduling_inputs(old) != scheduling_inputs(new):
                self.queue.add(key)  # not on our own status writes: the backoff retries those
            return
        self.unschedulable.pop(key, None)
        if occupies_node(new):
            self.assumed.pop(key, None)
            if not occupies_node(old):
                self.retry_affinity()  # a pod placed: those waiting to join it may fit now
        if occupies_node(old) and not occupies_node(new):
            self.retry_unschedulable()  # it finished: its node has room again

    def _pod_deleted(self, pod: Obj) -> None:
        key = object_key(pod)
        self.unschedulable.pop(key, None)
        self.assumed.pop(key, None)
        if occupies_node(pod):
            self.retry_unschedulable()

    def _node_added(self, node: Obj) -> None:
        self.retry_unschedulable()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if scheduling_view(old) != scheduling_view(new):
            self.retry_unschedulable()

    def retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.queue.add(key)

    def retry_affinity(self) -> None:
        """Queue the unschedulable pods whose pod affinity a newly placed pod may satisfy."""
        for key in list(self.unschedulable):
            pod = self.pods.cache.get(key)
            if pod is not None and podaffinity.required_terms(pod, "podAffinity"):
                self.queue.add(key)

    # -- observe and act ------------------------------------------------------------------

    def pods_by_node(self) -> dict[str, list[Obj]]:
        """The pods on each node: the cache's bound pods and the ones bound here since."""
        placed: dict[str, list[Obj]] = {}
        seen = set()
        for pod in self.pods.cache.list():
            if occupies_node(pod):
                placed.setdefault(pod["spec"]["nodeName"], []).append(pod)
                seen.add(object_key(pod))
        for key, pod in self.assumed.items():
            if key not in seen:
                placed.setdefault(pod["spec"]["nodeName"], []).append(pod)
        return placed

    async def reconcile(self, key: str) -> float | None:
        pod = self.pods.cache.get(key)
        if pod is None or not needs_scheduling(pod) or key in self.assumed:
            self.unschedulable.pop(key, None)
            return None
        nodes = sorted(self.nodes.cache.list(), key=lambda n: n["metadata"]["name"])
        decision = decide(pod, nodes, self.pods_by_node())
        if isinstance(decision, Bind):
            await self.bind(key, pod, decision.node)
            return None
        await self.report_unschedulable(pod, decision)
        return self._backoff(key)

    def _backoff(self, key: str) -> float:
        attempts = self.unschedulable.get(key, 0)
        self.unschedulable[key] = attempts + 1
        return float(min(self.backoff_initial * 2**attempts, self.backoff_max))

    async def bind(self, key: str, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        path = PODS.path(meta["namespace"], meta["name"], "binding")
        try:
            await self.client.request_json("POST", path, body=binding_for(pod, node))
        except (Conflict, NotFound) as exc:  # bound elsewhere, or gone: nothing left to do
            log.info("scheduler: not binding %s: %s", key, exc.message)
            return
        self.unschedulable.pop(key, None)
        assumed = copy_object(pod)
        assumed["spec"]["nodeName"] = node
        self.assumed[key] = assumed
        message = f"Successfully assigned {key} to {node}"
        await self._record(pod, "Normal", "Scheduled", message)

    async def report_unschedulable(self, pod: Obj, decision: Unschedulable) -> None:
        now = events.timestamp()
        updated = with_unschedulable_condition(pod, decision, now)
        if updated is None:  # already reported: no new condition, no new event
            return
        with contextlib.suppress(NotFound):
            await self.client.update_status(PODS, updated)
        await self._record(pod, "Warning", "FailedScheduling", decision.message)

    async def _record(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        await self.events.send(pod, "Pod", kind, reason, message)
