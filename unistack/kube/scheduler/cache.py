"""The scheduler's view of the cluster, kept current from its informers' events.

One `NodeInfo` per node, in name order, each with the pods placed on it and their sums.
`place` counts a pod where the API says it runs (or forgets it once it has finished or
gone); `assume` counts a pod on the node just chosen for it before the API has confirmed the
binding, so the next decision, made while the binding is in flight, does not overcommit that
node (kube-scheduler's assumed pods). The informer's next event for the pod either confirms
the assumption (`place` with the same node) or replaces it; `forget` drops it when the
binding failed. Pods seen on a node the cache does not know yet are held until the node
arrives. Decisions read `nodes`, which is rebuilt only when nodes come or go.
"""

from __future__ import annotations

from typing import Any

from unistack.kube.scheduler.nodeinfo import NodeInfo, Usage, uses_pod_affinity
from unistack.runtime.informer import object_key

Obj = dict[str, Any]
TERMINAL_PHASES = ("Succeeded", "Failed")


def placed_on(pod: Obj) -> str | None:
    """The node whose resources the pod uses: bound and not finished."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return None
    return str(node)


class SchedulerCache:
    def __init__(self) -> None:
        self.infos: dict[str, NodeInfo] = {}
        self.nodes: list[NodeInfo] = []  # by name
        self.where: dict[str, str] = {}  # pod key → node it is counted on
        self.assumed: set[str] = set()
        self.affinity_pods = 0  # counted pods with pod (anti-)affinity terms
        self._waiting: dict[str, dict[str, Obj]] = {}  # node name → pods placed on it

    # -- nodes ------------------------------------------------------------------------------

    def set_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        info = self.infos.get(name)
        if info is not None:
            info.set_node(node)
            return
        info = NodeInfo(node)
        for key, pod in self._waiting.pop(name, {}).items():
            info.add(pod, key)
        self.infos[name] = info
        self._order()

    def remove_node(self, name: str) -> None:
        info = self.infos.pop(name, None)
        if info is not None:
            self._waiting[name] = dict(info.placed)
            self._order()

    def _order(self) -> None:
        self.nodes = [self.infos[name] for name in sorted(self.infos)]

    # -- pods -------------------------------------------------------------------------------

    def place(self, pod: Obj) -> None:
        """Count the pod where the API says it is; a confirmed assumption stops being one."""
        key = object_key(pod)
        if key in self.assumed and not (pod.get("spec") or {}).get("nodeName"):
            return  # an older version, from before the binding in flight
        node = placed_on(pod)
        self.assumed.discard(key)
        if node is not None and self.where.get(key) == node and node in self.infos:
            self.infos[node].replace(key, pod)  # confirmed, or a newer version: same counts
            return
        self._uncount(key)
        if node is not None:
            self._count(key, pod, node)

    def remove(self, pod: Obj) -> None:
        key = object_key(pod)
        self.assumed.discard(key)
        self._uncount(key)

    def assume(self, pod: Obj, node: str, usage: Usage | None = None) -> None:
        key = object_key(pod)
        bound = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}
        self._uncount(key)
        self._count(key, bound, node, usage)
        self.assumed.add(key)

    def forget(self, pod: Obj) -> None:
        """Drop an assumption whose binding failed."""
        key = object_key(pod)
        if key in self.assumed:
            self.assumed.discard(key)
            self._uncount(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def _count(self, key: str, pod: Obj, node: str, usage: Usage | None = None) -> None:
        usage = usage or Usage.of(pod)
        self.where[key] = node
        self.affinity_pods += usage.pod_affinity
        info = self.infos.get(node)
        if info is None:
            self._waiting.setdefault(node, {})[key] = pod
        else:
            info.add(pod, key, usage)

    def _uncount(self, key: str) -> None:
        node = self.where.pop(key, None)
        if node is None:
            return
        info = self.infos.get(node)
        pod = info.remove(key) if info is not None else self._waiting.get(node, {}).pop(key, None)
        if pod is not None:
            self.affinity_pods -= uses_pod_affinity(pod)
