"""What the filters and scorers read, computed once: `NodeInfo` per node, `PodQuery` per pod.

A decision runs every filter against hundreds of nodes, so nothing in that loop may parse a
quantity or walk a node's pods. `NodeInfo` keeps a node's parsed allocatable, its taints,
and running sums over the pods placed on it (requests, kube's non-zero cpu/memory used for
scoring, host ports, how many carry pod (anti-)affinity terms); `add` and `remove` keep
them current as the scheduler's cache sees pods come and go, as kube-scheduler's
`framework.NodeInfo` does. `PodQuery` is the pod being placed, parsed once per decision:
requests, host ports, tolerations, node selector and affinity terms. The filters take either
a pod or its query (`query` turns one into the other), so they stay pure functions that
tests call with plain objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, ValuesView
from typing import Any, NamedTuple

from unistack.kube.scheduler import resources
from unistack.runtime.informer import object_key

Obj = dict[str, Any]
HostPort = tuple[str, str, int]  # (protocol, hostIP, hostPort)
FILTERED_EFFECTS = ("NoSchedule", "NoExecute")
PREFER_NO_SCHEDULE = "PreferNoSchedule"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def host_ports(pod: Obj) -> Iterator[HostPort]:
    """(protocol, hostIP, hostPort) of every container port that asks for a host port."""
    spec = _spec(pod)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ip = port.get("hostIP") or "0.0.0.0"
                yield port.get("protocol") or "TCP", ip, int(port["hostPort"])


def pod_affinity_terms(pod: Obj, kind: str) -> list[Obj]:
    """The pod's required `podAffinity` or `podAntiAffinity` terms."""
    affinity = (_spec(pod).get("affinity") or {}).get(kind) or {}
    return [t for t in affinity.get(_REQUIRED) or [] if isinstance(t, dict)]


def preferred_pod_affinity_terms(pod: Obj, kind: str) -> list[tuple[int, Obj]]:
    """The pod's preferred `podAffinity` or `podAntiAffinity` terms, as (weight, term)."""
    affinity = (_spec(pod).get("affinity") or {}).get(kind) or {}
    return [
        (int(t.get("weight") or 0), t["podAffinityTerm"])
        for t in affinity.get(_PREFERRED) or []
        if isinstance(t, dict) and isinstance(t.get("podAffinityTerm"), dict)
    ]


def uses_pod_affinity(pod: Obj) -> bool:
    """Whether the pod has pod (anti-)affinity terms, required or preferred: then placing any
    pod must look at the whole cluster, not at one node."""
    return any(
        pod_affinity_terms(pod, kind) or preferred_pod_affinity_terms(pod, kind)
        for kind in ("podAffinity", "podAntiAffinity")
    )


def _resource_order(item: tuple[str, int]) -> tuple[int, str]:
    rank = {resources.CPU: 0, resources.MEMORY: 1, "ephemeral-storage": 2}
    return rank.get(item[0], 3), item[0]


class Usage(NamedTuple):
    """What a placed pod takes from its node, computed once when it is counted."""

    requests: resources.Resources
    cpu: int  # non-zero cpu and memory, for scoring
    memory: int
    host_ports: list[HostPort]
    pod_affinity: bool

    @classmethod
    def of(cls, pod: Obj) -> Usage:
        non_zero = resources.non_zero_requests(pod)
        return cls(
            resources.pod_requests(pod),
            non_zero[resources.CPU],
            non_zero[resources.MEMORY],
            list(host_ports(pod)),
            uses_pod_affinity(pod),
        )


class PodQuery:
    """The pod being scheduled, with everything the filters and scorers read parsed once."""

    __slots__ = (
        "cpu",
        "host_ports",
        "memory",
        "node_selector",
        "pod",
        "pod_affinity",
        "preferred_terms",
        "request_cpu",
        "request_memory",
        "requests",
        "required_terms",
        "simple",
        "tolerations",
    )

    def __init__(self, pod: Obj) -> None:
        spec = _spec(pod)
        node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = node_affinity.get(_REQUIRED)
        non_zero = resources.non_zero_requests(pod)
        self.pod = pod
        self.requests = sorted(resources.pod_requests(pod).items(), key=_resource_order)
        self.cpu = non_zero[resources.CPU]
        self.memory = non_zero[resources.MEMORY]
        self.host_ports = list(host_ports(pod))
        self.tolerations: list[Obj] = list(spec.get("tolerations") or [])
        self.node_selector: dict[str, str] = dict(spec.get("nodeSelector") or {})
        self.required_terms: list[Obj] | None = (
            None if required is None else list(required.get("nodeSelectorTerms") or [])
        )
        self.preferred_terms: list[Obj] = [
            t for t in node_affinity.get(_PREFERRED) or [] if isinstance(t, dict)
        ]
        self.pod_affinity = uses_pod_affinity(pod)
        asked = dict(self.requests)
        self.request_cpu = asked.pop(resources.CPU, 0)
        self.request_memory = asked.pop(resources.MEMORY, 0)
        # What most pods are: only cpu and memory asked for, no selector, affinity or host
        # port, and no pod affinity. The scheduler's search decides those alone on untainted nodes.
        self.simple = not (
            asked
            or self.node_selector
            or self.required_terms is not None
            or self.host_ports
            or self.pod_affinity
        )

    def usage(self) -> Usage:
        return Usage(dict(self.requests), self.cpu, self.memory, self.host_ports, self.pod_affinity)


def query(pod: Obj | PodQuery) -> PodQuery:
    return pod if isinstance(pod, PodQuery) else PodQuery(pod)


class NodeInfo:
    """A node and the pods bound (or being bound) to it, with their sums kept current."""

    __slots__ = (
        "affinity_pods",
        "allocatable",
        "allocatable_cpu",
        "allocatable_memory",
        "allocatable_pods",
        "free_cpu",
        "free_memory",
        "free_pods",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_memory",
        "placed",
        "plain",
        "ports",
        "prefer_taints",
        "requested",
        "taints",
        "unschedulable",
        "usage_key",
        "usages",
    )

    def __init__(self, node: Obj, pods: Iterable[Obj] = ()) -> None:
        self.placed: dict[str, Obj] = {}
        self.usages: dict[str, Usage] = {}
        self.free_pods = self.free_cpu = self.free_memory = 0
        self.requested: resources.Resources = {}
        self.non_zero_cpu = self.non_zero_memory = 0
        self.ports: Counter[HostPort] = Counter()
        self.affinity_pods = 0
        self.set_node(node)
        for pod in pods:
            self.add(pod)

    @classmethod
    def of(cls, node: Obj, pods: Iterable[Obj] = ()) -> NodeInfo:
        return cls(node, pods)

    @property
    def pods(self) -> ValuesView[Obj]:
        return self.placed.values()

    def set_node(self, node: Obj) -> None:
        """Take a new version of the node (labels, taints, allocatable may have changed)."""
        meta, spec = node.get("metadata") or {}, _spec(node)
        taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
        self.node = node
        self.name = str(meta.get("name", ""))
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        self.allocatable = resources.allocatable(node)
        self.allocatable_cpu = self.allocatable.get(resources.CPU, 0)
        self.allocatable_memory = self.allocatable.get(resources.MEMORY, 0)
        self.allocatable_pods = self.allocatable.get(resources.PODS, 0)
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints = [t for t in taints if t.get("effect") in FILTERED_EFFECTS]
        self.prefer_taints = [t for t in taints if t.get("effect") == PREFER_NO_SCHEDULE]
        self.plain = not (self.unschedulable or self.taints)
        self._free()

    def _free(self) -> None:
        self.free_pods = self.allocatable_pods - len(self.placed)
        self.free_cpu = self.allocatable_cpu - self.requested.get(resources.CPU, 0)
        self.free_memory = self.allocatable_memory - self.requested.get(resources.MEMORY, 0)
        # All the resource scores read of the node: nodes with the same key score the same.
        self.usage_key = (
            self.non_zero_cpu,
            self.non_zero_memory,
            self.allocatable_cpu,
            self.allocatable_memory,
        )

    def add(self, pod: Obj, key: str | None = None, usage: Usage | None = None) -> None:
        """Count a pod on this node (replacing an earlier version of it)."""
        key = key or object_key(pod)
        if key in self.placed:
            self.remove(key)
        usage = usage or Usage.of(pod)
        self.placed[key] = pod
        self.usages[key] = usage
        self._count(usage, 1)

    def replace(self, key: str, pod: Obj) -> None:
        """A new version of a counted pod that asks for the same (a pod's requests and
        ports do not change once it is placed)."""
        self.placed[key] = pod

    def remove(self, key: str) -> Obj | None:
        pod = self.placed.pop(key, None)
        usage = self.usages.pop(key, None)
        if usage is not None:
            self._count(usage, -1)
        return pod

    def _count(self, usage: Usage, sign: int) -> None:
        for name, value in usage.requests.items():
            self.requested[name] = self.requested.get(name, 0) + sign * value
        self.non_zero_cpu += sign * usage.cpu
        self.non_zero_memory += sign * usage.memory
        for port in usage.host_ports:
            self.ports[port] += sign
            if self.ports[port] <= 0:
                del self.ports[port]
        self.affinity_pods += sign * usage.pod_affinity
        self._free()
