"""Scores: how good a feasible node is for a pod, each 0-100, higher is better.

kube-scheduler's default resource scorers, both over cpu and memory with the pod placed on
the node, counting kube's defaults for containers without requests (`non_zero_requests`):

- least allocated: the mean of the free fraction of each resource (spreads pods out);
- balanced allocation: 100 * (1 - the standard deviation of the used fractions), so cpu and
  memory are used evenly.

`score` adds them; `scheduler.decide` picks the highest (ties by node name). Pure.
"""

from __future__ import annotations

import statistics
from typing import Any

from unistack.kube.scheduler import resources
from unistack.kube.scheduler.filters import NodeInfo

Obj = dict[str, Any]
MAX_SCORE = 100
_SCORED = (resources.CPU, resources.MEMORY)


def _used_fractions(pod: Obj, info: NodeInfo) -> list[tuple[int, int]]:
    """(requested with the pod, allocatable) for cpu and memory."""
    allocatable = resources.allocatable(info.node)
    on_node = resources.total_requests(info.pods, resources.non_zero_requests)
    mine = resources.non_zero_requests(pod)
    return [(on_node.get(r, 0) + mine[r], allocatable.get(r, 0)) for r in _SCORED]


def least_allocated(pod: Obj, info: NodeInfo) -> int:
    scores = [
        (capacity - used) * MAX_SCORE // capacity if capacity > 0 and used <= capacity else 0
        for used, capacity in _used_fractions(pod, info)
    ]
    return sum(scores) // len(scores)


def balanced_allocation(pod: Obj, info: NodeInfo) -> int:
    fractions = [
        min(used / capacity, 1.0) if capacity > 0 else 1.0
        for used, capacity in _used_fractions(pod, info)
    ]
    deviation = statistics.pstdev(fractions)
    return int((1 - deviation) * MAX_SCORE)


def score(pod: Obj, info: NodeInfo) -> int:
    """The node's total score for the pod (0-200: two scorers of weight 1)."""
    return least_allocated(pod, info) + balanced_allocation(pod, info)
