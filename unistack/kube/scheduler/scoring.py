"""Scores: how good a feasible node is for a pod, each 0-100, higher is better.

kube-scheduler's default scorers, with its default weights:

- least allocated (weight 1): the mean of the free fraction of cpu and memory with the pod
  placed, counting kube's defaults for containers without requests (spreads pods out);
- balanced allocation (weight 1): 100 * (1 - the standard deviation of the used fractions),
  so cpu and memory are used evenly;
- node affinity (weight 2): the sum of the weights of the pod's preferred node affinity terms
  the node matches, scaled so the best feasible node has 100;
- taint toleration (weight 3): fewer `PreferNoSchedule` taints the pod does not tolerate is
  better, scaled so the node with the most has 0;
- inter-pod affinity (weight 2): preferred pod affinity and anti-affinity, the new pod's and
  the placed pods' (`podaffinity.preference_scores`), scaled between the lowest and highest.

The first two are per node (`score`); the last two are normalized over the feasible nodes
(`normalized`), as kube's NormalizeScore does, and are skipped when they would be the same
for every node. `best` adds them up and picks the highest (ties by node name).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unistack.kube.scheduler import filters, podaffinity
from unistack.kube.scheduler.nodeinfo import NodeInfo, PodQuery, query

Obj = dict[str, Any]
Pod = Obj | PodQuery
MAX_SCORE = 100
NODE_AFFINITY_WEIGHT = 2
TAINT_TOLERATION_WEIGHT = 3
INTER_POD_AFFINITY_WEIGHT = 2


def _fractions(pod: PodQuery, info: NodeInfo) -> tuple[int, int, int, int]:
    """(cpu used with the pod, cpu allocatable, memory used with the pod, memory allocatable)."""
    return (
        info.non_zero_cpu + pod.cpu,
        info.allocatable_cpu,
        info.non_zero_memory + pod.memory,
        info.allocatable_memory,
    )


def _free_score(used: int, capacity: int) -> int:
    return (capacity - used) * MAX_SCORE // capacity if capacity > 0 and used <= capacity else 0


def _used_fraction(used: int, capacity: int) -> float:
    return min(used / capacity, 1.0) if capacity > 0 else 1.0


def least_allocated(pod: Pod, info: NodeInfo) -> int:
    cpu, cpu_capacity, memory, memory_capacity = _fractions(query(pod), info)
    return (_free_score(cpu, cpu_capacity) + _free_score(memory, memory_capacity)) // 2


def balanced_allocation(pod: Pod, info: NodeInfo) -> int:
    cpu, cpu_capacity, memory, memory_capacity = _fractions(query(pod), info)
    # The population standard deviation of two fractions is half their distance.
    spread = abs(_used_fraction(cpu, cpu_capacity) - _used_fraction(memory, memory_capacity))
    return int((1 - spread / 2) * MAX_SCORE)


def score(pod: Pod, info: NodeInfo) -> int:
    """The node's own scores for the pod (0-200: two resource scorers of weight 1)."""
    wanted = query(pod)
    return least_allocated(wanted, info) + balanced_allocation(wanted, info)


def best(pod: Pod, infos: Sequence[NodeInfo], cluster: Sequence[NodeInfo] = ()) -> NodeInfo:
    """The feasible node with the highest total score (ties to the first by name). `cluster`:
    every node with its pods, when the pod or a placed pod has pod (anti-)affinity.

    `score` and `normalized` added up. `score` depends only on the node's `usage_key` (used
    and allocatable cpu and memory), which most nodes of a cluster share with others, so it
    is computed once per distinct key here: this runs for hundreds of nodes per pod."""
    wanted = query(pod)
    known: dict[tuple[int, int, int, int], int] = {}
    top_score, chosen = -1, infos[0]
    if wanted.preferred_terms or any(info.prefer_taints for info in infos):
        extra = normalized(wanted, infos)
    else:
        extra = [0] * len(infos)  # both normalized scores are the same everywhere
    if cluster and len(infos) > 1:
        affinity = podaffinity.preference_scores(wanted.pod, infos, cluster)
        extra = [e + INTER_POD_AFFINITY_WEIGHT * a for e, a in zip(extra, affinity, strict=True)]
    for info, bonus in zip(infos, extra, strict=True):
        mine = known.get(info.usage_key)
        if mine is None:
            mine = known[info.usage_key] = score(wanted, info)
        total = mine + bonus
        if total > top_score or (total == top_score and info.name < chosen.name):
            top_score, chosen = total, info
    return chosen


def preferred_affinity(pod: Pod, info: NodeInfo) -> int:
    """The summed weights of the pod's preferred node affinity terms the node matches."""
    return sum(
        int(term.get("weight") or 0)
        for term in query(pod).preferred_terms
        if filters.term_matches(term.get("preference") or {}, info)
    )


def intolerable_taints(pod: Pod, info: NodeInfo) -> int:
    """How many of the node's PreferNoSchedule taints the pod does not tolerate."""
    tolerations = [
        t for t in query(pod).tolerations if (t.get("effect") or "") in ("", "PreferNoSchedule")
    ]
    return sum(
        1
        for taint in info.prefer_taints
        if not any(filters.tolerates(t, taint) for t in tolerations)
    )


def normalized(pod: Pod, infos: Sequence[NodeInfo]) -> list[int]:
    """The weighted node affinity and taint toleration scores of each node, in order."""
    wanted = query(pod)
    totals = [0] * len(infos)
    if wanted.preferred_terms:
        raw = [preferred_affinity(wanted, info) for info in infos]
        best = max(raw, default=0)
        if best > 0:
            for i, value in enumerate(raw):
                totals[i] += NODE_AFFINITY_WEIGHT * (MAX_SCORE * value // best)
    if any(info.prefer_taints for info in infos):
        raw = [intolerable_taints(wanted, info) for info in infos]
        worst = max(raw, default=0)
        if worst > 0:
            for i, value in enumerate(raw):
                totals[i] += TAINT_TOLERATION_WEIGHT * (MAX_SCORE - MAX_SCORE * value // worst)
    return totals
