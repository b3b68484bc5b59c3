"""The ReplicaSet controller's decisions (`decide_replicas` and its parts), without I/O."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from unistack.kube.podcontrol import slow_start_batches
from unistack.kube.replicaset import (
    AdoptPod,
    CreatePods,
    DeletePods,
    ReleasePod,
    RequeueAfter,
    UpdateStatus,
    decide_replicas,
    pod_from_template,
    selector_matches,
)

Obj = dict[str, Any]
NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
RS_UID = "rs-uid"


def replicaset(replicas: int = 3, *, min_ready: int = 0) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default", "uid": RS_UID, "generation": 2},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {}},
        },
    }


def pod(
    name: str,
    *,
    owner: str | None = RS_UID,
    labels: dict[str, str] | None = None,
    ready_since: int | None = None,
    node: str = "",
    created: str = "2026-01-01T11:00:00Z",
    deleting: bool = False,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": "default",
        "labels": {"app": "web", "tier": "fe"} if labels is None else labels,
        "creationTimestamp": created,
    }
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    status: Obj = {"phase": "Pending"}
    if ready_since is not None:
        since = (NOW - datetime.timedelta(seconds=ready_since)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = {"type": "Ready", "status": "True", "lastTransitionTime": since}
        status = {"phase": "Running", "conditions": [ready]}
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


def of_type(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def test_missing_pods_are_created() -> None:
    actions = decide_replicas(replicaset(3), [pod("a")], NOW)
    assert of_type(actions, CreatePods) == [CreatePods(2)]


def test_nothing_to_do_when_the_count_and_status_are_right() -> None:
    rs = replicaset(1)
    rs["status"] = {"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1}
    rs["status"] |= {"availableReplicas": 1, "observedGeneration": 2}
    assert decide_replicas(rs, [pod("a", ready_since=5)], NOW) == []


def test_extras_are_deleted_unscheduled_then_not_ready_then_newest() -> None:
    pods = [
        pod("old-ready", node="n1", ready_since=60, created="2026-01-01T10:00:00Z"),
        pod("new-ready", node="n1", ready_since=60, created="2026-01-01T11:00:00Z"),
        pod("not-ready", node="n1"),
        pod("unscheduled"),
    ]
    actions = decide_replicas(replicaset(1), pods, NOW)
    assert of_type(actions, DeletePods) == [DeletePods(("unscheduled", "not-ready", "new-ready"))]


def test_terminating_pods_do_not_count() -> None:
    actions = decide_replicas(replicaset(2), [pod("a"), pod("b", deleting=True)], NOW)
    assert of_type(actions, CreatePods) == [CreatePods(1)]
    assert of_type(actions, UpdateStatus)[0].status["replicas"] == 1


def test_matching_orphans_are_adopted_and_counted() -> None:
    actions = decide_replicas(replicaset(2), [pod("mine"), pod("orphan", owner=None)], NOW)
    assert of_type(actions, AdoptPod) == [AdoptPod("orphan")]
    assert not of_type(actions, CreatePods)


def test_pods_of_other_controllers_and_non_matching_orphans_are_left_alone() -> None:
    pods = [pod("other", owner="someone-else"), pod("x", owner=None, labels={"app": "db"})]
    actions = decide_replicas(replicaset(1), pods, NOW)
    assert not of_type(actions, AdoptPod) and of_type(actions, CreatePods) == [CreatePods(1)]


def test_owned_pods_that_no_longer_match_are_released_and_replaced() -> None:
    actions = decide_replicas(replicaset(1), [pod("relabelled", labels={"app": "x"})], NOW)
    assert of_type(actions, ReleasePod) == [ReleasePod("relabelled")]
    assert of_type(actions, CreatePods) == [CreatePods(1)]


def test_a_replicaset_being_deleted_neither_adopts_nor_creates() -> None:
    rs = replicaset(2)
    rs["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    actions = decide_replicas(rs, [pod("orphan", owner=None)], NOW)
    assert not of_type(actions, AdoptPod) and not of_type(actions, CreatePods)


def test_unobserved_earlier_actions_hold_back_management() -> None:
    actions = decide_replicas(replicaset(3), [], NOW, manage=False)
    assert not of_type(actions, CreatePods)
    assert of_type(actions, UpdateStatus)


def test_status_counts_labels_readiness_and_availability() -> None:
    pods = [
        pod("a", ready_since=30),
        pod("b", ready_since=2),
        pod("c", labels={"app": "web"}),
    ]
    actions = decide_replicas(replicaset(3, min_ready=10), pods, NOW)
    [update] = of_type(actions, UpdateStatus)
    assert update.status == {
        "replicas": 3,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 2,
    }
    assert of_type(actions, RequeueAfter) == [RequeueAfter(8.0)]  # when b becomes available


@pytest.mark.parametrize(
    ("count", "batches"),
    [(0, []), (1, [1]), (3, [1, 2]), (10, [1, 2, 4, 3]), (16, [1, 2, 4, 8, 1])],
)
def test_creations_go_in_slow_start_batches(count: int, batches: list[int]) -> None:
    assert slow_start_batches(count) == batches


def test_a_burst_is_capped() -> None:
    actions = decide_replicas(replicaset(2000), [], NOW)
    assert of_type(actions, CreatePods) == [CreatePods(500)]


def test_new_pods_come_from_the_template_owned_by_the_replicaset() -> None:
    body = pod_from_template(replicaset())
    assert body["metadata"]["generateName"] == "web-"
    assert body["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    [ref] = body["metadata"]["ownerReferences"]
    assert ref["uid"] == RS_UID and ref["controller"] and ref["blockOwnerDeletion"]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {"a": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({}, {"a": "1"}, False),
    ],
)
def test_selectors(selector: Obj, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected
