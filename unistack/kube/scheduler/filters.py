"""Filters: can this node run this pod, and if not, why (in kube-scheduler's words).

Each filter is a pure function of the pod and a `NodeInfo` (the node and the pods already on
it) returning the reasons it does not fit, empty when it does. `node_failures` runs them in
kube-scheduler's order and stops at the first that fails, so a node counts once per reason
in the "0/3 nodes are available: ..." message `scheduler.decide` builds:

- NodeUnschedulable: `spec.unschedulable`, unless the pod tolerates its taint;
- TaintToleration: NoSchedule and NoExecute taints the pod does not tolerate;
- NodeAffinity: `nodeSelector` and required node affinity (`nodeSelectorTerms`);
- NodePorts: host ports already taken on the node;
- NodeResourcesFit: pod count, cpu, memory and any other requested resource vs allocatable.

Inter-pod affinity needs the whole cluster, not one node: it lives in `podaffinity`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unistack.kube.scheduler.nodeinfo import (
    HostPort,
    NodeInfo,
    PodQuery,
    host_ports,
    query,
)

__all__ = ["NodeInfo", "PodQuery", "host_ports", "node_failures", "query"]

Obj = dict[str, Any]
Pod = Obj | PodQuery
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
PORTS_TAKEN = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

Filter = Callable[[Pod, NodeInfo], list[str]]


# --- taints and tolerations ---------------------------------------------------------------


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration tolerates one taint (upstream's `ToleratesTaint`)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(pod: Pod, taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in query(pod).tolerations)


def node_unschedulable(pod: Pod, info: NodeInfo) -> list[str]:
    if not info.unschedulable:
        return []
    taint = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    return [] if tolerated(pod, taint) else [UNSCHEDULABLE]


def taint_toleration(pod: Pod, info: NodeInfo) -> list[str]:
    for taint in info.taints:
        if not tolerated(pod, taint):
            key, value = taint.get("key", ""), taint.get("value", "")
            return [f"node(s) had untolerated taint {{{key}: {value}}}"]
    return []


# --- node selector and node affinity -----------------------------------------------------


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _greater_or_less(operator: str, value: str | None, values: list[str]) -> bool:
    if value is None or len(values) != 1:
        return False
    mine, bound = _as_int(value), _as_int(values[0])
    if mine is None or bound is None:
        return False
    return mine > bound if operator == "Gt" else mine < bound


def requirement_matches(requirement: Obj, labels: dict[str, str]) -> bool:
    """One `matchExpressions` entry (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels."""
    key, operator = requirement.get("key", ""), requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt"):
        return _greater_or_less(operator, value, values)
    return False


def term_matches(term: Obj, info: NodeInfo) -> bool:
    """A node selector term: every expression and field matches; an empty term matches none."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = info.labels
    node_fields = {"metadata.name": info.name}
    return all(requirement_matches(r, labels) for r in expressions) and all(
        requirement_matches(r, node_fields) for r in fields
    )


def node_affinity(pod: Pod, info: NodeInfo) -> list[str]:
    wanted = query(pod)
    labels = info.labels
    if any(labels.get(k) != v for k, v in wanted.node_selector.items()):
        return [AFFINITY_MISMATCH]
    terms = wanted.required_terms
    if terms is not None and not any(term_matches(t, info) for t in terms):
        return [AFFINITY_MISMATCH]
    return []


# --- host ports ----------------------------------------------------------------------------


def _ports_conflict(a: HostPort, b: HostPort) -> bool:
    same_ip = a[1] == b[1] or "0.0.0.0" in (a[1], b[1])
    return a[0] == b[0] and a[2] == b[2] and same_ip


def node_ports(pod: Pod, info: NodeInfo) -> list[str]:
    wanted = query(pod).host_ports
    if not wanted or not info.ports:
        return []
    if any(_ports_conflict(w, u) for w in wanted for u in info.ports):
        return [PORTS_TAKEN]
    return []


# --- resources -----------------------------------------------------------------------------


def resources_fit(pod: Pod, info: NodeInfo) -> list[str]:
    """kube's NodeResourcesFit: the pod count first, then each requested resource."""
    allocatable, requested = info.allocatable, info.requested
    reasons = []
    if len(info.placed) >= info.allocatable_pods:
        reasons.append(TOO_MANY_PODS)
    for name, wanted in query(pod).requests:
        if wanted > 0 and wanted > allocatable.get(name, 0) - requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


FILTERS: tuple[Filter, ...] = (
    node_unschedulable,
    taint_toleration,
    node_affinity,
    node_ports,
    resources_fit,
)


def node_failures(pod: Pod, info: NodeInfo) -> list[str]:
    """Why the node cannot run the pod: the reasons of the first filter that fails."""
    wanted = query(pod)
    for check in FILTERS:
        reasons = check(wanted, info)
        if reasons:
            return reasons
    return []
