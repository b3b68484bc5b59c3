"""Resource quantities as the scheduler counts them: requests of pods, allocatable of nodes.

Quantities ("100m", "1Gi", "2", "1e3") are parsed with upstream's grammar to exact fractions;
cpu is then counted in millicores, everything else in whole units rounded up, as
kube-scheduler's `Resource` does. A pod requests the larger of its containers' sum and its
biggest init container, plus its overhead. The parser is the shared `unistack.quantity`.
Used by `filters` and `scoring`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from unistack import quantity

Obj = dict[str, Any]
Resources = dict[str, int]  # cpu in millicores, the rest in units
CPU = "cpu"
MEMORY = "memory"
PODS = "pods"
DEFAULT_MILLI_CPU = 100  # what scoring assumes a container without requests uses
DEFAULT_MEMORY = 200 * 1024 * 1024


def amount(resource: str, value: Any) -> int:
    """A quantity in the scheduler's units: millicores for cpu, whole units otherwise."""
    if isinstance(value, str):
        return _amount_of_text(resource, value)
    return _amount(resource, value)


@functools.lru_cache(maxsize=4096)
def _amount_of_text(resource: str, value: str) -> int:
    """The same few quantities ("100m", "128Mi") are counted for every pod: cached."""
    return _amount(resource, value)


def _amount(resource: str, value: Any) -> int:
    try:
        exact = quantity.parse_quantity(value)
    except ValueError:
        return 0
    return math.ceil(exact * 1000) if resource == CPU else math.ceil(exact)


def quantities(values: Mapping[str, Any] | None) -> Resources:
    return {name: amount(name, value) for name, value in (values or {}).items()}


def _add(total: Resources, more: Mapping[str, int]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def _requests(container: Obj) -> Resources:
    return quantities((container.get("resources") or {}).get("requests"))


def _containers(spec: Obj, key: str) -> list[Obj]:
    return [c for c in spec.get(key) or [] if isinstance(c, dict)]


def pod_requests(pod: Obj) -> Resources:
    """What a pod asks of its node: max(sum of containers, each init container) + overhead."""
    spec = pod.get("spec") or {}
    total: Resources = {}
    for container in _containers(spec, "containers"):
        _add(total, _requests(container))
    for container in _containers(spec, "initContainers"):
        for name, value in _requests(container).items():
            total[name] = max(total.get(name, 0), value)
    _add(total, quantities(spec.get("overhead")))
    return total


def non_zero_requests(pod: Obj) -> Resources:
    """cpu and memory requests, counting kube's defaults for containers that set none."""
    cpu = memory = 0
    for container in _containers(pod.get("spec") or {}, "containers"):
        requests = _requests(container)
        cpu += requests.get(CPU) or DEFAULT_MILLI_CPU
        memory += requests.get(MEMORY) or DEFAULT_MEMORY
    return {CPU: cpu, MEMORY: memory}


def total_requests(
    pods: Iterable[Obj], measure: Callable[[Obj], Resources] = pod_requests
) -> Resources:
    total: Resources = {}
    for pod in pods:
        _add(total, measure(pod))
    return total


def allocatable(node: Obj) -> Resources:
    return quantities((node.get("status") or {}).get("allocatable"))
