"""The StatefulSet controller's decisions (`decide_stateful` and its parts), without I/O."""

from __future__ import annotations

import datetime
from typing import Any

from unistack.kube.statefulset import (
    POD_INDEX_LABEL,
    POD_NAME_LABEL,
    REVISION_LABEL,
    CreateClaim,
    CreatePod,
    DeletePod,
    UpdateStatus,
    decide_stateful,
    pod_for,
    update_revision,
)

Obj = dict[str, Any]
NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
UID = "sts-uid"


def statefulset(replicas: int = 3, *, policy: str = "OrderedReady", claims: bool = True) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "serviceName": "web-svc",
        "podManagementPolicy": policy,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "web", "image": "busybox"}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}],
            },
        },
    }
    if claims:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "uid": UID, "generation": 1},
        "spec": spec,
    }


def pod(sts: Obj, ordinal: int, *, ready: bool = True, phase: str = "Running") -> Obj:
    made = pod_for(sts, ordinal)
    made["metadata"]["ownerReferences"][0]["uid"] = UID
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    made["status"] = {"phase": phase, "conditions": [condition]}
    return made


def claims_of(sts: Obj, count: int) -> list[str]:
    return [f"data-web-{i}" for i in range(count)]


def non_status(actions: list[Any]) -> list[Any]:
    return [a for a in actions if not isinstance(a, UpdateStatus)]


def test_ordered_creates_the_first_claim_then_pod_only() -> None:
    sts = statefulset()
    actions = non_status(decide_stateful(sts, [], [], NOW))
    assert [type(a) for a in actions] == [CreateClaim, CreatePod]
    assert actions[0].claim["metadata"]["name"] == "data-web-0"
    assert actions[1].pod["metadata"]["name"] == "web-0"


def test_ordered_waits_for_the_previous_pod_to_be_running_and_ready() -> None:
    sts = statefulset()
    waiting = [pod(sts, 0, ready=False)]
    assert non_status(decide_stateful(sts, waiting, claims_of(sts, 1), NOW)) == []
    pending = [pod(sts, 0, phase="Pending")]
    assert non_status(decide_stateful(sts, pending, claims_of(sts, 1), NOW)) == []
    actions = non_status(decide_stateful(sts, [pod(sts, 0)], claims_of(sts, 1), NOW))
    assert [type(a) for a in actions] == [CreateClaim, CreatePod]
    assert actions[1].pod["metadata"]["name"] == "web-1"


def test_an_existing_claim_is_not_created_again() -> None:
    sts = statefulset()
    actions = non_status(decide_stateful(sts, [pod(sts, 0)], claims_of(sts, 2), NOW))
    assert [type(a) for a in actions] == [CreatePod]


def test_parallel_creates_all_at_once() -> None:
    sts = statefulset(policy="Parallel")
    actions = non_status(decide_stateful(sts, [], [], NOW))
    pods = [a.pod["metadata"]["name"] for a in actions if isinstance(a, CreatePod)]
    claims = [a.claim["metadata"]["name"] for a in actions if isinstance(a, CreateClaim)]
    assert pods == ["web-0", "web-1", "web-2"]
    assert claims == ["data-web-0", "data-web-1", "data-web-2"]


def test_ordered_scale_down_deletes_the_highest_one_at_a_time() -> None:
    sts = statefulset(replicas=1)
    pods = [pod(sts, i) for i in range(3)]
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW)) == [DeletePod("web-2")]
    pods[2]["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW)) == []
    actions = non_status(decide_stateful(sts, pods[:2], claims_of(sts, 3), NOW))
    assert actions == [DeletePod("web-1")]


def test_parallel_scale_down_deletes_all_extras_highest_first() -> None:
    sts = statefulset(replicas=1, policy="Parallel")
    pods = [pod(sts, i) for i in range(3)]
    actions = non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW))
    assert actions == [DeletePod("web-2"), DeletePod("web-1")]


def test_a_failed_pod_is_deleted_and_a_missing_one_recreated() -> None:
    sts = statefulset(replicas=2)
    pods = [pod(sts, 0, phase="Failed"), pod(sts, 1)]
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 2), NOW)) == [DeletePod("web-0")]
    actions = non_status(decide_stateful(sts, pods[1:], claims_of(sts, 2), NOW))
    assert [a.pod["metadata"]["name"] for a in actions if isinstance(a, CreatePod)] == ["web-0"]


def test_the_pod_carries_identity_hostname_and_claim_volumes() -> None:
    sts = statefulset()
    made = pod_for(sts, 2)
    meta, spec = made["metadata"], made["spec"]
    assert meta["name"] == "web-2"
    assert meta["labels"][POD_NAME_LABEL] == "web-2"
    assert meta["labels"][POD_INDEX_LABEL] == "2"
    assert meta["labels"][REVISION_LABEL] == update_revision(sts)
    assert meta["labels"]["app"] == "web"
    assert meta["ownerReferences"][0]["kind"] == "StatefulSet"
    assert (spec["hostname"], spec["subdomain"]) == ("web-2", "web-svc")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}}
    assert volumes["cfg"] == {"name": "cfg", "emptyDir": {}}
    assert sts["spec"]["template"]["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}


def test_the_claim_takes_the_template_and_selector_labels_and_no_owner() -> None:
    sts = statefulset(replicas=1)
    [claim] = [a.claim for a in decide_stateful(sts, [], [], NOW) if isinstance(a, CreateClaim)]
    assert claim["metadata"]["name"] == "data-web-0"
    assert claim["metadata"]["labels"] == {"app": "web"}
    assert "ownerReferences" not in claim["metadata"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}


def test_a_changed_template_replaces_the_highest_old_pod_above_the_partition() -> None:
    sts = statefulset(replicas=3)
    pods = [pod(sts, i) for i in range(3)]
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW)) == [DeletePod("web-2")]
    pods[2] = pod(sts, 2)
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW)) == [DeletePod("web-1")]
    pods[1] = pod(sts, 1)
    assert non_status(decide_stateful(sts, pods, claims_of(sts, 3), NOW)) == []


def test_status_counts_ready_and_updated_pods() -> None:
    sts = statefulset(replicas=2)
    pods = [pod(sts, 0), pod(sts, 1, ready=False)]
    [status] = [
        a.status
        for a in decide_stateful(sts, pods, claims_of(sts, 2), NOW)
        if isinstance(a, UpdateStatus)
    ]
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 1
    assert status["availableReplicas"] == 1
    assert status["updatedReplicas"] == status["currentReplicas"] == 2
    assert status["observedGeneration"] == 1


def test_pods_of_other_owners_are_ignored() -> None:
    sts = statefulset(replicas=1)
    stranger = pod(sts, 0)
    stranger["metadata"]["ownerReferences"][0]["uid"] = "other"
    actions = non_status(decide_stateful(sts, [stranger], claims_of(sts, 1), NOW))
    assert [type(a) for a in actions] == [CreatePod]
