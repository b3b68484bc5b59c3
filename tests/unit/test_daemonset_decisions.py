"""The DaemonSet controller's decisions (`decide_daemons` and its parts), without I/O."""

from __future__ import annotations

import datetime
from typing import Any

from unistack.kube.daemonset import (
    DEFAULT_TOLERATIONS,
    REVISION_LABEL,
    CreateDaemonPods,
    DeletePods,
    UpdateStatus,
    daemon_pod,
    decide_daemons,
    target_node,
)
from unistack.kube.deployment import template_hash

Obj = dict[str, Any]
NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
DS_UID = "ds-uid"
READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T11:00:00Z"}


def daemonset(**template_spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": DS_UID, "generation": 3},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "a", "image": "busybox"}], **template_spec},
            },
        },
    }


def node(name: str, labels: Obj | None = None, taints: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
    }


def pod(
    name: str, node_name: str, ds: Obj | None = None, *, phase: str = "Running", created: str = ""
) -> Obj:
    ds = ds or daemonset()
    body = daemon_pod(ds, node_name)
    body["metadata"].update(name=name, creationTimestamp=created or "2026-01-01T10:00:00Z")
    body["spec"]["nodeName"] = node_name
    body["status"] = {"phase": phase, "conditions": [READY]}
    return body


def created_nodes(actions: list[Any]) -> tuple[str, ...]:
    return next((a.nodes for a in actions if isinstance(a, CreateDaemonPods)), ())


def deleted(actions: list[Any]) -> tuple[str, ...]:
    return tuple(n for a in actions if isinstance(a, DeletePods) for n in a.names)


def status(actions: list[Any]) -> Obj:
    return next(a.status for a in actions if isinstance(a, UpdateStatus))


def test_one_pod_for_every_eligible_node() -> None:
    actions = decide_daemons(daemonset(), [node("a"), node("b")], [], NOW)
    assert created_nodes(actions) == ("a", "b")
    assert status(actions)["desiredNumberScheduled"] == 2
    assert status(actions)["observedGeneration"] == 3


def test_node_selector_and_required_affinity_limit_the_nodes() -> None:
    nodes = [node("a", {"disk": "ssd"}), node("b", {"disk": "hdd"}), node("c")]
    assert created_nodes(
        decide_daemons(daemonset(nodeSelector={"disk": "ssd"}), nodes, [], NOW)
    ) == ("a",)
    term = {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    assert created_nodes(decide_daemons(daemonset(affinity=affinity), nodes, [], NOW)) == ("a", "b")


def test_untolerated_taints_exclude_a_node_and_tolerations_admit_it() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes = [node("a"), node("b", taints=[taint])]
    assert created_nodes(decide_daemons(daemonset(), nodes, [], NOW)) == ("a",)
    toleration = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    admitted = decide_daemons(daemonset(tolerations=[toleration]), nodes, [], NOW)
    assert created_nodes(admitted) == ("a", "b")


def test_default_tolerations_admit_not_ready_and_pressured_nodes() -> None:
    taints = [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
    ]
    assert created_nodes(decide_daemons(daemonset(), [node("a", taints=taints)], [], NOW)) == ("a",)


def test_daemon_pods_are_owned_pinned_and_tolerant() -> None:
    ds = daemonset(tolerations=[{"key": "x", "operator": "Exists"}])
    body = daemon_pod(ds, "node-1")
    meta = body["metadata"]
    assert meta["generateName"] == "agent-"
    assert meta["labels"]["app"] == "agent"
    assert meta["labels"][REVISION_LABEL] == template_hash(ds["spec"]["template"])
    [ref] = meta["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("DaemonSet", DS_UID, True)
    required = body["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}
        ]
    }
    tolerations = body["spec"]["tolerations"]
    assert tolerations[0] == {"key": "x", "operator": "Exists"}
    assert all(t in tolerations for t in DEFAULT_TOLERATIONS)
    assert target_node(body) == "node-1"


def test_pinning_replaces_the_templates_required_terms() -> None:
    term = {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    ds = daemonset(affinity=affinity)
    terms = daemon_pod(ds, "n")["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]
    assert ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"] == [term]


def test_a_node_with_its_pod_needs_nothing_and_counts_in_status() -> None:
    actions = decide_daemons(daemonset(), [node("a")], [pod("agent-1", "a")], NOW)
    assert not created_nodes(actions) and not deleted(actions)
    assert status(actions) == {
        "desiredNumberScheduled": 1,
        "currentNumberScheduled": 1,
        "numberMisscheduled": 0,
        "numberReady": 1,
        "numberAvailable": 1,
        "numberUnavailable": 0,
        "updatedNumberScheduled": 1,
        "observedGeneration": 3,
    }


def test_extra_pods_on_a_node_are_deleted_keeping_the_oldest() -> None:
    pods = [
        pod("agent-new", "a", created="2026-01-01T11:00:00Z"),
        pod("agent-old", "a", created="2026-01-01T09:00:00Z"),
    ]
    assert deleted(decide_daemons(daemonset(), [node("a")], pods, NOW)) == ("agent-new",)


def test_pods_on_gone_or_ineligible_nodes_are_deleted() -> None:
    ds = daemonset(nodeSelector={"role": "edge"})
    nodes = [node("a", {"role": "edge"}), node("b")]
    pods = [pod("agent-a", "a", ds), pod("agent-b", "b", ds), pod("agent-gone", "gone", ds)]
    actions = decide_daemons(ds, nodes, pods, NOW)
    assert deleted(actions) == ("agent-b", "agent-gone")
    assert status(actions)["numberMisscheduled"] == 2


def test_a_noexecute_taint_evicts_but_noschedule_does_not() -> None:
    no_schedule = node("a", taints=[{"key": "k", "effect": "NoSchedule"}])
    no_execute = node("b", taints=[{"key": "k", "effect": "NoExecute"}])
    pods = [pod("agent-a", "a"), pod("agent-b", "b")]
    actions = decide_daemons(daemonset(), [no_schedule, no_execute], pods, NOW)
    assert deleted(actions) == ("agent-b",)
    assert status(actions)["desiredNumberScheduled"] == 0


def test_failed_pods_are_deleted_to_be_recreated() -> None:
    actions = decide_daemons(daemonset(), [node("a")], [pod("agent-1", "a", phase="Failed")], NOW)
    assert deleted(actions) == ("agent-1",)
    assert not created_nodes(actions)
    assert created_nodes(decide_daemons(daemonset(), [node("a")], [], NOW)) == ("a",)


def test_rolling_update_replaces_at_most_max_unavailable() -> None:
    old = daemonset()
    new = daemonset(hostNetwork=True)
    nodes = [node("a"), node("b"), node("c")]
    pods = [pod(f"agent-{n}", n, old) for n in "abc"]
    assert deleted(decide_daemons(new, nodes, pods, NOW)) == ("agent-a",)
    new["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 2},
    }
    assert deleted(decide_daemons(new, nodes, pods, NOW)) == ("agent-a", "agent-b")
    new["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert deleted(decide_daemons(new, nodes, pods, NOW)) == ()
    assert status(decide_daemons(new, nodes, pods, NOW))["updatedNumberScheduled"] == 0


def test_nothing_is_created_or_deleted_while_expectations_are_pending() -> None:
    actions = decide_daemons(daemonset(), [node("a")], [], NOW, manage=False)
    assert not created_nodes(actions)
    assert status(actions)["desiredNumberScheduled"] == 1
