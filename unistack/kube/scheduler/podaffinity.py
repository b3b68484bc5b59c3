"""Required inter-pod affinity and anti-affinity: kube-scheduler's InterPodAffinity filter.

A term (`labelSelector`, `namespaces` or `namespaceSelector`, `topologyKey`) names pods and a
topology domain: the nodes sharing the node's value of `topologyKey`. For a node to pass,

- no pod already placed may have a required anti-affinity term that matches the new pod
  within the node's domain ("node(s) didn't satisfy existing pods anti-affinity rules");
- no anti-affinity term of the new pod may match a pod within the node's domain
  ("node(s) didn't match pod anti-affinity rules");
- every affinity term of the new pod must match a pod within the node's domain — unless no
  pod anywhere matches and the new pod matches its own terms, the first of its group
  ("node(s) didn't match pod affinity rules").

`namespaceSelector` is honoured only as "all namespaces" when empty (`{}`): the scheduler
keeps no Namespace cache yet. Pure; `filters.node_failures` runs it last, as kube does.

`preference_scores` is kube's InterPodAffinity score: every placed pod in a node's topology
domain that a preferred term of the new pod matches adds (affinity) or takes away
(anti-affinity) the term's weight; so do the placed pods' own preferred terms that match the
new pod, and their required affinity terms with weight 1 (kube's `hardPodAffinityWeight`).
The sums are scaled to 0-100 between the lowest and the highest feasible node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from unistack.kube.labels import selector_matches
from unistack.kube.scheduler.filters import NodeInfo
from unistack.kube.scheduler.nodeinfo import pod_affinity_terms, preferred_pod_affinity_terms

Obj = dict[str, Any]
HARD_POD_AFFINITY_WEIGHT = 1
MAX_SCORE = 100
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"


def term_matches(term: Obj, owner: Obj, other: Obj) -> bool:
    """Whether `other` is a pod the term of `owner` names (namespaces, then labels)."""
    namespace = other.get("metadata", {}).get("namespace")
    namespaces = term.get("namespaces") or []
    all_namespaces = term.get("namespaceSelector") == {} and not namespaces
    if not all_namespaces and namespace not in (namespaces or [_namespace(owner)]):
        return False
    labels = other.get("metadata", {}).get("labels") or {}
    return selector_matches(term.get("labelSelector"), labels)


def _namespace(pod: Obj) -> str | None:
    return pod.get("metadata", {}).get("namespace")


def _domain(info: NodeInfo, key: str, cluster: Sequence[NodeInfo]) -> Iterator[NodeInfo]:
    """The nodes sharing `info`'s value of the topology key (none when it has no such label)."""
    value = info.labels.get(key)
    if value is None:
        return
    yield from (other for other in cluster if other.labels.get(key) == value)


def _pods_in_domain(info: NodeInfo, key: str, cluster: Sequence[NodeInfo]) -> Iterator[Obj]:
    for member in _domain(info, key, cluster):
        yield from member.pods


def _existing_anti_affinity_ok(pod: Obj, info: NodeInfo, cluster: Sequence[NodeInfo]) -> bool:
    for other in cluster:
        for existing in other.pods:
            for term in pod_affinity_terms(existing, "podAntiAffinity"):
                key = term.get("topologyKey", "")
                same = key in info.labels and info.labels[key] == other.labels.get(key)
                if same and term_matches(term, existing, pod):
                    return False
    return True


def _anti_affinity_ok(pod: Obj, info: NodeInfo, cluster: Sequence[NodeInfo]) -> bool:
    for term in pod_affinity_terms(pod, "podAntiAffinity"):
        found = _pods_in_domain(info, term.get("topologyKey", ""), cluster)
        if any(term_matches(term, pod, other) for other in found):
            return False
    return True


def _affinity_ok(pod: Obj, info: NodeInfo, cluster: Sequence[NodeInfo]) -> bool:
    terms = pod_affinity_terms(pod, "podAffinity")
    if all(_term_satisfied(term, pod, info, cluster) for term in terms):
        return True
    anywhere = [p for member in cluster for p in member.pods]
    first_of_group = not any(term_matches(t, pod, p) for t in terms for p in anywhere)
    keys_present = all(t.get("topologyKey", "") in info.labels for t in terms)
    return first_of_group and keys_present and all(term_matches(t, pod, pod) for t in terms)


def _term_satisfied(term: Obj, pod: Obj, info: NodeInfo, cluster: Sequence[NodeInfo]) -> bool:
    found = _pods_in_domain(info, term.get("topologyKey", ""), cluster)
    return any(term_matches(term, pod, other) for other in found)


def inter_pod_affinity(pod: Obj, info: NodeInfo, cluster: Sequence[NodeInfo]) -> list[str]:
    """Why the node fails the pod's (and placed pods') required pod (anti-)affinity."""
    if not _existing_anti_affinity_ok(pod, info, cluster):
        return [EXISTING_ANTI_AFFINITY]
    if not _anti_affinity_ok(pod, info, cluster):
        return [ANTI_AFFINITY]
    if not _affinity_ok(pod, info, cluster):
        return [AFFINITY]
    return []


Domain = tuple[str, str]  # (topology key, value)


def _weighted_terms(pod: Obj, required_weight: int) -> Iterator[tuple[int, Obj]]:
    """The pod's terms that count in scoring, weight signed: anti-affinity takes away."""
    yield from preferred_pod_affinity_terms(pod, "podAffinity")
    for weight, term in preferred_pod_affinity_terms(pod, "podAntiAffinity"):
        yield -weight, term
    if required_weight:
        for term in pod_affinity_terms(pod, "podAffinity"):
            yield required_weight, term


def _domain_weights(pod: Obj, cluster: Sequence[NodeInfo]) -> dict[Domain, int]:
    """How much the new pod gains in each topology domain from the placed pods."""
    mine = list(_weighted_terms(pod, 0))
    weights: dict[Domain, int] = {}
    for info in cluster:
        for existing in info.pods:
            theirs = list(_weighted_terms(existing, HARD_POD_AFFINITY_WEIGHT))
            for weight, term, owner, other in [
                *((w, t, pod, existing) for w, t in mine),
                *((w, t, existing, pod) for w, t in theirs),
            ]:
                key = term.get("topologyKey", "")
                value = info.labels.get(key)
                if weight and value is not None and term_matches(term, owner, other):
                    weights[key, value] = weights.get((key, value), 0) + weight
    return weights


def preference_scores(
    pod: Obj, infos: Sequence[NodeInfo], cluster: Sequence[NodeInfo]
) -> list[int]:
    """Each feasible node's inter-pod affinity score, 0-100, in order (all 0 when equal)."""
    weights = _domain_weights(pod, cluster)
    if not weights:
        return [0] * len(infos)
    raw = [
        sum(w for (key, value), w in weights.items() if info.labels.get(key) == value)
        for info in infos
    ]
    low, high = min(raw), max(raw)
    if high == low:
        return [0] * len(infos)
    return [MAX_SCORE * (value - low) // (high - low) for value in raw]
