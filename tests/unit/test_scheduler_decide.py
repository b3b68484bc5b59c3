"""`decide` and the other pure parts of the scheduler: where a pod goes, or why it cannot."""

from __future__ import annotations

from typing import Any

from unistack.kube.scheduler import podaffinity, scheduler
from unistack.kube.scheduler.scheduler import Bind, Unschedulable, decide

Obj = dict[str, Any]


def node(name: str, cpu: str = "2", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}},
    }


def pod(name: str = "p", cpu: str = "100m", **spec: Any) -> Obj:
    container = {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"containers": [container], **spec},
    }


def bound(name: str, node_name: str, cpu: str) -> Obj:
    placed = pod(name, cpu)
    placed["spec"]["nodeName"] = node_name
    return placed


def test_binds_to_the_least_loaded_node() -> None:
    nodes = [node("a"), node("b")]
    assert decide(pod(), nodes, {"a": [bound("x", "a", "1")]}) == Bind("b")


def test_ties_go_to_the_first_node_by_name() -> None:
    assert decide(pod(), [node("b"), node("a")], {}) == Bind("a")


def test_only_nodes_passing_every_filter_are_candidates() -> None:
    nodes = [node("a", cpu="8"), node("b", labels={"disk": "ssd"})]
    assert decide(pod(nodeSelector={"disk": "ssd"}), nodes, {}) == Bind("b")


def test_unschedulable_message_counts_reasons_like_kube_scheduler() -> None:
    nodes = [node("a", cpu="1"), node("b", labels={"x": "y"}), node("c")]
    wanted = pod(cpu="1500m", nodeSelector={"disk": "ssd"})
    nodes[0]["metadata"]["labels"] = {"disk": "ssd"}
    assert decide(wanted, nodes, {}) == Unschedulable(
        "Unschedulable",
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) didn't match Pod's node affinity/selector.",
    )


def test_insufficient_cpu_counts_pods_already_bound() -> None:
    nodes = [node("a", cpu="1")]
    decision = decide(pod(cpu="600m"), nodes, {"a": [bound("x", "a", "500m")]})
    assert decision == Unschedulable(
        "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu."
    )


def test_taints_are_named_in_the_message() -> None:
    tainted = node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    decision = decide(pod(), [tainted], {})
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 node(s) had untolerated taint {k: v}."


def test_no_nodes_at_all() -> None:
    assert decide(pod(), [], {}) == Unschedulable(
        "Unschedulable", "no nodes available to schedule pods"
    )


def test_needs_scheduling_only_pending_pods_of_the_default_scheduler() -> None:
    assert scheduler.needs_scheduling(pod())
    assert scheduler.needs_scheduling(pod(schedulerName="default-scheduler"))
    assert not scheduler.needs_scheduling(pod(schedulerName="other"))
    assert not scheduler.needs_scheduling(bound("p", "a", "1"))
    assert not scheduler.needs_scheduling(pod(schedulingGates=[{"name": "wait"}]))
    deleting = pod()
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert not scheduler.needs_scheduling(deleting)
    done = pod()
    done["status"] = {"phase": "Succeeded"}
    assert not scheduler.needs_scheduling(done)


def test_unschedulable_condition_is_set_once_per_message() -> None:
    decision = Unschedulable("Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
    updated = scheduler.with_unschedulable_condition(pod(), decision, "2024-01-01T00:00:00Z")
    assert updated is not None
    assert updated["status"]["conditions"] == [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": decision.message,
            "lastProbeTime": None,
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }
    ]
    assert scheduler.with_unschedulable_condition(updated, decision, "later") is None


def test_binding_and_event_bodies() -> None:
    assert scheduler.binding_for(pod(), "a") == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "a"},
    }
    event = scheduler.event_for(pod(), "Warning", "FailedScheduling", "no", "now")
    assert event["involvedObject"]["name"] == "p"
    assert (event["type"], event["reason"], event["source"]) == (
        "Warning",
        "FailedScheduling",
        {"component": "default-scheduler"},
    )


# --- inter-pod affinity -----------------------------------------------------------------------


def zoned(name: str, zone: str) -> Obj:
    return node(name, labels={"zone": zone, "kubernetes.io/hostname": name})


def labelled(placed: Obj, **labels: str) -> Obj:
    placed["metadata"]["labels"] = labels
    return placed


def term(app: str, key: str = "zone") -> Obj:
    return {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}


def affinity(kind: str, *terms: Obj) -> Obj:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def test_pod_affinity_follows_matching_pods_into_their_zone() -> None:
    nodes = [zoned("a", "east"), zoned("b", "west")]
    cache = {"b": [labelled(bound("db", "b", "1"), app="db")]}
    wanted = pod(affinity=affinity("podAffinity", term("db")))
    assert decide(wanted, nodes, cache) == Bind("b")


def test_pod_affinity_allows_the_first_pod_of_a_group_that_matches_itself() -> None:
    wanted = labelled(pod(affinity=affinity("podAffinity", term("web"))), app="web")
    assert decide(wanted, [zoned("a", "east")], {}) == Bind("a")
    stranger = pod(affinity=affinity("podAffinity", term("web")))
    assert decide(stranger, [zoned("a", "east")], {}) == Unschedulable(
        "Unschedulable", "0/1 nodes are available: 1 node(s) didn't match pod affinity rules."
    )


def test_pod_anti_affinity_keeps_replicas_apart() -> None:
    nodes = [zoned("a", "east"), zoned("b", "east"), zoned("c", "west")]
    cache = {"a": [labelled(bound("web-1", "a", "100m"), app="web")]}
    wanted = pod(affinity=affinity("podAntiAffinity", term("web")))
    assert decide(wanted, nodes, cache) == Bind("c")
    by_host = pod(affinity=affinity("podAntiAffinity", term("web", "kubernetes.io/hostname")))
    assert decide(by_host, nodes[:1], cache) == Unschedulable(
        "Unschedulable", "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    )


def test_existing_pods_anti_affinity_repels_pods_it_matches() -> None:
    guard = bound("guard", "a", "100m")
    guard["spec"]["affinity"] = affinity("podAntiAffinity", term("noisy"))
    nodes = [zoned("a", "east"), zoned("b", "west")]
    noisy = labelled(pod(), app="noisy")
    assert decide(noisy, nodes, {"a": [guard]}) == Bind("b")
    assert decide(noisy, nodes[:1], {"a": [guard]}) == Unschedulable(
        "Unschedulable",
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.",
    )
    other_namespace = labelled(pod(), app="noisy")
    other_namespace["metadata"]["namespace"] = "elsewhere"
    assert decide(other_namespace, nodes[:1], {"a": [guard]}) == Bind("a")


def preferred(kind: str, *weighted: tuple[int, Obj]) -> Obj:
    terms = [{"weight": w, "podAffinityTerm": t} for w, t in weighted]
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": terms}}


def test_preferred_pod_affinity_outweighs_free_resources() -> None:
    nodes = [zoned("a", "east"), zoned("b", "west")]
    cache = {"a": [labelled(bound("db", "a", "1"), app="db")]}
    assert decide(pod(), nodes, cache) == Bind("b")  # b is emptier
    wanted = pod(affinity=preferred("podAffinity", (100, term("db"))))
    assert decide(wanted, nodes, cache) == Bind("a")
    elsewhere = pod(affinity=preferred("podAffinity", (100, term("cache"))))
    assert decide(elsewhere, nodes, cache) == Bind("b")  # no pod matches: resources decide


def test_preferred_pod_anti_affinity_spreads_but_never_refuses() -> None:
    nodes = [zoned("a", "east"), zoned("b", "west")]
    cache = {"b": [labelled(bound("web-1", "b", "100m"), app="web")]}
    spread = pod(affinity=preferred("podAntiAffinity", (50, term("web"))))
    cache["a"] = [bound("filler", "a", "1")]  # a is the busier: resources alone pick b
    assert decide(pod(), nodes, cache) == Bind("b")
    assert decide(spread, nodes, cache) == Bind("a")
    assert decide(spread, nodes[1:], cache) == Bind("b")  # preferred, not required


def test_placed_pods_terms_score_the_new_pod() -> None:
    nodes = [zoned("a", "east"), zoned("b", "west")]
    loner = bound("loner", "b", "100m")
    loner["spec"]["affinity"] = preferred("podAntiAffinity", (100, term("noisy")))
    noisy = labelled(pod(), app="noisy")
    cache = {"a": [bound("filler", "a", "1")], "b": [loner]}
    assert decide(pod(), nodes, cache) == Bind("b")
    assert decide(noisy, nodes, cache) == Bind("a")
    # A placed pod's required affinity attracts the pods it names (hardPodAffinityWeight 1),
    # too weak to beat a whole core of difference in free cpu.
    friend = bound("friend", "a", "100m")
    friend["spec"]["affinity"] = affinity("podAffinity", term("noisy"))
    view = scheduler.cluster_view(nodes, {"a": [friend]})
    assert podaffinity.preference_scores(noisy, view, view) == [100, 0]
    assert podaffinity.preference_scores(pod(), view, view) == [0, 0]
