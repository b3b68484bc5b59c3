"""The pod garbage collector: pods nobody will ever finish are removed, as
kube-controller-manager's pod-garbage-collector does.

A pod's node agent is what ends a deleted pod (it stops the containers, then removes the
object). Some pods have no agent that ever will:
- an **orphan**: bound to a Node that no longer exists (a host retired with
  `kubectl delete node`, or left out by `unistack up --hosts N`). Upstream waits a quarantine
  (40 s) after the Node is first missing from its cache, then asks the API server once more,
  so a Node just being registered, or a stale cache, costs no pod;
- a terminating pod that was **never scheduled**: there is no agent to finish it;
- a terminating pod on a Node that is not Ready and carries the `node.kubernetes.io/out-of-service`
  taint: the operator's word that the host is down for good (upstream's non-graceful node
  shutdown);
- **terminated** pods (Succeeded or Failed) beyond the threshold (upstream's
  terminated-pod-gc-threshold, 12500): the oldest go first.

Each is force-deleted (grace period 0, guarded by its uid). An orphan or an out-of-service pod
that has not finished is first marked Failed with upstream's `DisruptionTarget` condition
(reason `DeletionByPodGC`), so whoever watches it (a Job) sees why it went.

`decide_pod` and `excess_terminated` are pure (a pod, its node, when the node was first
missed, the time → what to do and when to look again); `PodGarbageCollector` observes Pods and
Nodes through informers and acts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from unistack.client.api import ApiError, Client, Conflict, NotFound
from unistack.client.resources import NODES, PODS
from unistack.kube.nodelifecycle import node_of, ready_condition
from unistack.runtime import events
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import SharedInformers, object_key, split_key
from unistack.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
QUARANTINE_S = 40.0
TERMINATED_THRESHOLD = 12500
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
REASON = "DeletionByPodGC"
TERMINAL = ("Succeeded", "Failed")
# the queue key that asks for a count of the terminated pods: a pod's key always holds a
# slash (pods are namespaced), so a bare word cannot collide with one
TERMINATED_KEY = "terminated-pods"


@dataclass(frozen=True, slots=True)
class ForceDelete:
    """Fail the pod with `message` (unless it already finished), then delete it at once."""

    message: str


@dataclass(frozen=True, slots=True)
class LookAgain:
    """Nothing yet; decide again after `seconds` (an orphan's quarantine)."""

    seconds: float


Decision = ForceDelete | LookAgain | None


def decide_pod(
    pod: Obj,
    node: Obj | None,
    missed_since: float | None,
    now: float,
    quarantine: float = QUARANTINE_S,
) -> Decision:
    """What becomes of `pod`: `node` is its Node from the cache (None when missing),
    `missed_since` when the Node was first found missing (None: not yet)."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    node_name = spec.get("nodeName")
    if not node_name:
        return (
            ForceDelete("PodGC: pod is terminating and unscheduled")
            if meta.get("deletionTimestamp")
            else None
        )
    if node is None:
        waited = 0.0 if missed_since is None else now - missed_since
        if waited < quarantine:
            return LookAgain(quarantine - waited)
        return ForceDelete("PodGC: node no longer exists")
    if meta.get("deletionTimestamp") and out_of_service(node):
        return ForceDelete("PodGC: node is out of service")
    return None


def out_of_service(node: Obj) -> bool:
    """Not Ready, and tainted out-of-service with NoExecute (upstream's two conditions)."""
    if (ready_condition(node) or {}).get("status") == "True":
        return False
    return any(
        taint.get("key") == OUT_OF_SERVICE and taint.get("effect") == "NoExecute"
        for taint in (node.get("spec") or {}).get("taints") or []
    )


def excess_terminated(pods: list[Obj], threshold: int = TERMINATED_THRESHOLD) -> list[Obj]:
    """The oldest finished pods beyond `threshold` (none when at or under it)."""
    finished = [
        pod
        for pod in pods
        if (pod.get("status") or {}).get("phase") in TERMINAL
        and not pod["metadata"].get("deletionTimestamp")
    ]
    if len(finished) <= threshold:
        return []
    finished.sort(key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", object_key(pod)))
    return finished[: len(finished) - threshold]


def failed_status(pod: Obj, message: str, now: float) -> Obj:
    """The status patch that marks `pod` Failed with the DisruptionTarget condition."""
    condition = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": REASON,
        "message": message,
        "lastTransitionTime": events.timestamp(now),
    }
    others = [
        c
        for c in (pod.get("status") or {}).get("conditions") or []
        if c.get("type") != "DisruptionTarget"
    ]
    return {"status": {"phase": "Failed", "conditions": [*others, condition]}}


class PodGarbageCollector:
    """Watches Pods and Nodes; force-deletes the pods no node agent will ever finish."""

    def __init__(
        self,
        client: Client,
        *,
        informers: SharedInformers | None = None,
        quarantine: float = QUARANTINE_S,
        threshold: int = TERMINATED_THRESHOLD,
    ) -> None:
        self.client = client
        self.quarantine = quarantine
        self.threshold = threshold
        shared = informers or SharedInformers(client)
        self.pods = shared.informer(PODS, indexers={"node": node_of})
        self.nodes = shared.informer(NODES)
        self.missed: dict[str, float] = {}  # node name → when first found missing
        self.queue = WorkQueue("pod-garbage-collector")
        self.controller = Controller("pod-garbage-collector", self.queue, self.reconcile)
        self.pods.add_handlers(
            on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new)
        )
        self.nodes.add_handlers(
            on_add=self._node_added,
            on_update=lambda old, new: self._node_changed(new),
            on_delete=self._node_changed,
        )

    def _pod_changed(self, pod: Obj) -> None:
        if (pod.get("status") or {}).get("phase") in TERMINAL:
            self.queue.add(TERMINATED_KEY)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            if pod["metadata"].get("deletionTimestamp"):
                self.queue.add(object_key(pod))
        elif node not in self.nodes.cache or pod["metadata"].get("deletionTimestamp"):
            self.queue.add(object_key(pod))

    def _node_added(self, node: Obj) -> None:
        self.missed.pop(node["metadata"]["name"], None)

    def _node_changed(self, node: Obj) -> None:
        for pod in self.pods.cache.by_index("node", node["metadata"]["name"]):
            self.queue.add(object_key(pod))

    async def run(self) -> None:
        await run_with_informers(self.controller, self.pods, self.nodes)

    async def reconcile(self, key: str) -> float | None:
        if key == TERMINATED_KEY:
            for finished in excess_terminated(self.pods.cache.list(), self.threshold):
                await self._delete(finished)
            return None
        pod = self.pods.cache.get(key)
        if pod is None:
            return None
        name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.cache.get(name) if name else None
        now = time.time()
        if name and node is None:
            self.missed.setdefault(name, now)
        decision = decide_pod(pod, node, self.missed.get(name or ""), now, self.quarantine)
        if isinstance(decision, LookAgain):
            return decision.seconds + 0.1
        if decision is None:
            return None
        if node is None and name and not await self._really_gone(name):
            return None  # the cache was behind: the Node's add event brings the pod back
        namespace, pod_name = split_key(key)
        log.info("deleting pod %s/%s: %s", namespace, pod_name, decision.message)
        if (pod.get("status") or {}).get("phase") not in TERMINAL:
            with contextlib.suppress(NotFound, Conflict):
                patch = failed_status(pod, decision.message, now)
                await self.client.patch(
                    PODS, pod_name, patch, namespace=namespace, subresource="status"
                )
        await self._delete(pod)
        return None

    async def _really_gone(self, name: str) -> bool:
        """Upstream's second look: the API server itself says the Node is not there."""
        try:
            await self.client.get(NODES, name)
        except NotFound:
            return True
        except ApiError:
            return False
        self.missed.pop(name, None)
        return False

    async def _delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(NotFound, Conflict):
            await self.client.delete(
                PODS,
                meta["name"],
                meta["namespace"],
                preconditions={"uid": meta["uid"]},
                grace_period=0,
            )
