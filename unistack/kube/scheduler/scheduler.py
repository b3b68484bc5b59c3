"""The scheduler: picks a node for each pending pod and binds it there.

Queue keys are pod keys (`namespace/name`) of pods this scheduler owns (`schedulerName`
empty or the scheduler's name, `default-scheduler` unless told otherwise) with no node, not
being deleted, not finished and not gated. For each key `choose` runs the `filters` (then
`podaffinity`) on the nodes of the `SchedulerCache`, and the `scoring` on those that pass,
and answers `Bind(node)` for the best, or `Unschedulable(reason, message)` with
kube-scheduler's message ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't
match Pod's node affinity/selector."). As kube-scheduler does on big clusters, it stops
looking once it has found `feasible_nodes_to_find` nodes that fit (all of them up to 100
nodes, 42% of 1,000) and starts the next search where this one stopped, so every node gets
its turn. `decide` is the same choice over plain objects, for tests and callers without a
cache.

`Scheduler` observes (informers of pods and nodes feeding the cache) and acts: a Bind counts
the pod on its node at once (an assumption) and POSTs the `binding` subresource in the
background while the next pod is decided, as kube-scheduler's binding cycle does; a binding
that fails drops the assumption and queues the pod again. A `Scheduled` Event is recorded
without waiting. An Unschedulable sets the pod's `PodScheduled=False` condition through the
status subresource, records a `FailedScheduling` Event, and keeps the key aside. Those keys
are queued again when the cluster changes (a node added or changed, a pod deleted or
finished; a pod placed, for those waiting on pod affinity) and otherwise retried with a
growing backoff. One worker decides, as kube-scheduler schedules one pod at a time. Built on
`unistack.runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unistack.client.api import ApiError, Client, Conflict, NotFound
from unistack.client.resources import NODES, PODS
from unistack.client.transport import TransportError
from unistack.kube.scheduler import filters, podaffinity, scoring
from unistack.kube.scheduler.cache import TERMINAL_PHASES, SchedulerCache, placed_on
from unistack.kube.scheduler.nodeinfo import (
    NodeInfo,
    PodQuery,
    Usage,
    pod_affinity_terms,
    query,
)
from unistack.runtime import events
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import SharedInformers, copy_object, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"
UNSCHEDULABLE_REASON = "Unschedulable"
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
BINDINGS_IN_FLIGHT = 32

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


def needs_scheduling(pod: Obj, scheduler_name: str = SCHEDULER_NAME) -> bool:
    """A pending pod this scheduler is responsible for."""
    meta, spec = pod.get("metadata", {}), pod.get("spec") or {}
    name = spec.get("schedulerName") or SCHEDULER_NAME
    return (
        name == scheduler_name
        and not spec.get("nodeName")
        and not spec.get("schedulingGates")
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
    )


def occupies_node(pod: Obj) -> bool:
    """Bound and not finished: its requests and ports count on its node."""
    return placed_on(pod) is not None


def failure_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError text: counts of each reason, sorted, after the node count."""
    if total == 0:
        return NO_NODES
    counts = sorted(f"{n} {reason}" for reason, n in reasons.items())
    return f"0/{total} nodes are available: {', '.join(counts)}."


def feasible_nodes_to_find(total: int) -> int:
    """kube-scheduler's adaptive percentageOfNodesToScore: every node up to 100, then
    50% less 1% per 125 nodes (at least 5%), and never fewer than 100."""
    if total < MIN_FEASIBLE_NODES:
        return total
    percentage = max(50 - total // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES)


def _failures(pod: PodQuery, info: NodeInfo, cluster: Sequence[NodeInfo]) -> list[str]:
    """The node-local filters, then (when any pod uses it) inter-pod affinity."""
    return filters.node_failures(pod, info) or (
        podaffinity.inter_pod_affinity(pod.pod, info, cluster) if cluster else []
    )


def cluster_view(nodes: Sequence[Obj], pods_by_node: Mapping[str, Sequence[Obj]]) -> list[NodeInfo]:
    return [NodeInfo(node, pods_by_node.get(node["metadata"]["name"], ())) for node in nodes]


def choose(
    pod: Obj | PodQuery,
    nodes: Sequence[NodeInfo],
    start: int = 0,
    placed_affinity: bool | None = None,
) -> tuple[Decision, int]:
    """Where the pod goes among `nodes` (searched from `start`, round the end), and how many
    nodes the search looked at. `placed_affinity`: whether any placed pod has required pod
    (anti-)affinity, when the caller keeps count (else it is counted here)."""
    wanted = query(pod)
    total = len(nodes)
    if placed_affinity is None:
        placed_affinity = any(info.affinity_pods for info in nodes)
    affinity = wanted.pod_affinity or placed_affinity
    cluster = nodes if affinity else ()
    enough = feasible_nodes_to_find(total)
    reasons: Counter[str] = Counter()
    feasible: list[NodeInfo] = []
    looked = 0
    # The common pod (cpu and memory only) on a plain node, with no pod affinity anywhere,
    # passes every filter when it fits: that check inlined, as this loop runs for hundreds of
    # nodes per pod. Every other case gets the full filters.
    quick = cluster == () and wanted.simple
    cpu, memory = wanted.request_cpu, wanted.request_memory
    for info in itertools.chain(nodes[start:], nodes[:start]):
        looked += 1
        if not (
            quick
            and info.plain
            and info.free_pods > 0
            and info.free_cpu >= cpu
            and info.free_memory >= memory
        ):
            failures = _failures(wanted, info, cluster)
            if failures:
                reasons.update(failures)
                continue
        feasible.append(info)
        if len(feasible) >= enough:
            break
    if not feasible:
        return Unschedulable(UNSCHEDULABLE_REASON, failure_message(total, reasons)), looked
    return Bind(scoring.best(wanted, feasible, cluster).name), looked


def decide(pod: Obj, nodes: Sequence[Obj], pods_by_node: Mapping[str, Sequence[Obj]]) -> Decision:
    """Where the pod goes: the best-scoring node that passes every filter, or why none does."""
    ordered = sorted(nodes, key=lambda node: node["metadata"]["name"])
    return choose(pod, cluster_view(ordered, pods_by_node))[0]


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
        self,
        client: Client,
        *,
        informers: SharedInformers | None = None,
        scheduler_name: str = SCHEDULER_NAME,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.name = scheduler_name
        self.events = events.EventRecorder(client, scheduler_name)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.pods = shared.informer(PODS)
        self.nodes = shared.informer(NODES)
        self.queue = WorkQueue("scheduler")
        self.controller = Controller("scheduler", self.queue, self.reconcile, workers=1)
        self.cache = SchedulerCache()
        self.next_start = 0
        self.unschedulable: dict[str, int] = {}  # key → failed attempts
        self._binding_slots = asyncio.Semaphore(BINDINGS_IN_FLIGHT)
        self._bindings: set[asyncio.Task[None]] = set()
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated, self._node_deleted)

    async def run(self) -> None:
        try:
            await run_with_informers(self.controller, self.pods, self.nodes)
        finally:
            for task in list(self._bindings):
                task.cancel()

    # -- events → cache and keys ----------------------------------------------------------

    def _pod_added(self, pod: Obj) -> None:
        self.cache.place(pod)
        if needs_scheduling(pod, self.name):
            self.queue.add(object_key(pod))
        elif occupies_node(pod):
            self.retry_affinity()

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self.cache.place(new)
        key = object_key(new)
        if needs_scheduling(new, self.name):
            if key not in self.unschedulable or scheduling_inputs(old) != scheduling_inputs(new):
                self.queue.add(key)  # not on our own status writes: the backoff retries those
            return
        self.unschedulable.pop(key, None)
        if occupies_node(new) and not occupies_node(old):
            self.retry_affinity()  # a pod placed: those waiting to join it may fit now
        if occupies_node(old) and not occupies_node(new):
            self.retry_unschedulable()  # it finished: its node has room again

    def _pod_deleted(self, pod: Obj) -> None:
        self.cache.remove(pod)
        self.unschedulable.pop(object_key(pod), None)
        if occupies_node(pod):
            self.retry_unschedulable()

    def _node_added(self, node: Obj) -> None:
        self.cache.set_node(node)
        self.retry_unschedulable()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.cache.set_node(new)
        if scheduling_view(old) != scheduling_view(new):
            self.retry_unschedulable()

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.queue.add(key)

    def retry_affinity(self) -> None:
        """Queue the unschedulable pods whose pod affinity a newly placed pod may satisfy."""
        for key in list(self.unschedulable):
            pod = self.pods.cache.get(key)
            if pod is not None and pod_affinity_terms(pod, "podAffinity"):
                self.queue.add(key)

    # -- observe and act ------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        pod = self.pods.cache.get(key)
        if pod is None or not needs_scheduling(pod, self.name) or self.cache.is_assumed(key):
            self.unschedulable.pop(key, None)
            return None
        nodes = self.cache.nodes
        wanted = PodQuery(pod)
        decision, looked = choose(wanted, nodes, self.next_start, self.cache.affinity_pods > 0)
        self.next_start = (self.next_start + looked) % len(nodes) if nodes else 0
        if isinstance(decision, Bind):
            await self.start_binding(key, pod, decision.node, wanted.usage())
            return None
        await self.report_unschedulable(pod, decision)
        return self._backoff(key)

    def _backoff(self, key: str) -> float:
        attempts = self.unschedulable.get(key, 0)
        self.unschedulable[key] = attempts + 1
        return float(min(self.backoff_initial * 2**attempts, self.backoff_max))

    async def start_binding(self, key: str, pod: Obj, node: str, usage: Usage) -> None:
        """Count the pod on the node now and bind it in the background (a slot permitting)."""
        self.unschedulable.pop(key, None)
        self.cache.assume(pod, node, usage)
        await self._binding_slots.acquire()
        task = asyncio.ensure_future(self.bind(key, pod, node))
        self._bindings.add(task)
        task.add_done_callback(self._binding_done)

    def _binding_done(self, task: asyncio.Task[None]) -> None:
        self._bindings.discard(task)
        self._binding_slots.release()

    async def bind(self, key: str, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        path = PODS.path(meta["namespace"], meta["name"], "binding")
        try:
            await self.client.request_json("POST", path, body=binding_for(pod, node))
        except (Conflict, NotFound) as exc:  # bound elsewhere, or gone: nothing left to do
            log.info("scheduler: not binding %s: %s", key, exc.message)
            self.cache.forget(pod)
            return
        except (ApiError, TransportError, OSError) as exc:
            log.warning("scheduler: binding %s to %s failed, will retry: %s", key, node, exc)
            self.cache.forget(pod)
            self.queue.add_rate_limited(key)
            return
        self.events.record(
            pod, "Pod", "Normal", "Scheduled", f"Successfully assigned {key} to {node}"
        )

    async def report_unschedulable(self, pod: Obj, decision: Unschedulable) -> None:
        now = events.timestamp()
        updated = with_unschedulable_condition(pod, decision, now)
        if updated is None:  # already reported: no new condition, no new event
            return
        with contextlib.suppress(NotFound):
            await self.client.update_status(PODS, updated)
        self.events.record(pod, "Pod", "Warning", "FailedScheduling", decision.message)
