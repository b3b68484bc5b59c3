"""The pod garbage collector's decisions, without I/O: an orphan goes once its node has been
missing for the quarantine, a terminating unscheduled pod at once, a terminating pod on an
out-of-service node at once, and the oldest finished pods beyond the threshold."""

from __future__ import annotations

from typing import Any

from unistack.kube.podgc import (
    OUT_OF_SERVICE,
    ForceDelete,
    LookAgain,
    decide_pod,
    excess_terminated,
    failed_status,
    out_of_service,
)

Obj = dict[str, Any]
NOW = 1_800_000_000.0


def pod(
    name: str = "p",
    node: str | None = "hv1",
    deleting: bool = False,
    phase: str = "Running",
    created: str = "2026-01-01T00:00:00Z",
) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    meta["creationTimestamp"] = created
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    spec: Obj = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def node(ready: str = "True", taints: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": "hv1"},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


OOS = {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}


def test_an_orphan_waits_out_the_quarantine_then_goes() -> None:
    assert decide_pod(pod(), None, None, NOW, quarantine=40) == LookAgain(40)
    assert decide_pod(pod(), None, NOW - 30, NOW, quarantine=40) == LookAgain(10)
    assert decide_pod(pod(), None, NOW - 40, NOW, quarantine=40) == ForceDelete(
        "PodGC: node no longer exists"
    )


def test_a_pod_on_a_live_node_is_its_agents_business() -> None:
    assert decide_pod(pod(), node(), None, NOW) is None
    assert decide_pod(pod(deleting=True), node(ready="Unknown"), None, NOW) is None
    assert decide_pod(pod(node=None), None, None, NOW) is None  # pending: the scheduler's


def test_a_terminating_unscheduled_pod_goes_at_once() -> None:
    decision = decide_pod(pod(node=None, deleting=True), None, None, NOW)
    assert decision == ForceDelete("PodGC: pod is terminating and unscheduled")


def test_out_of_service_needs_the_taint_and_a_node_not_ready() -> None:
    assert out_of_service(node(ready="False", taints=[OOS]))
    assert out_of_service(node(ready="Unknown", taints=[OOS]))
    assert not out_of_service(node(ready="True", taints=[OOS]))
    assert not out_of_service(node(ready="False", taints=[{**OOS, "effect": "NoSchedule"}]))
    assert not out_of_service(node(ready="False"))
    down = node(ready="False", taints=[OOS])
    assert decide_pod(pod(deleting=True), down, None, NOW) == ForceDelete(
        "PodGC: node is out of service"
    )
    assert decide_pod(pod(), down, None, NOW) is None  # not being deleted: the taint evicts it


def test_only_the_oldest_finished_pods_beyond_the_threshold_go() -> None:
    pods = [
        pod("new-done", phase="Succeeded", created="2026-03-01T00:00:00Z"),
        pod("old-failed", phase="Failed", created="2026-01-01T00:00:00Z"),
        pod("mid-done", phase="Succeeded", created="2026-02-01T00:00:00Z"),
        pod("running", created="2025-01-01T00:00:00Z"),
        pod("going", phase="Failed", deleting=True, created="2025-01-01T00:00:00Z"),
    ]
    assert [p["metadata"]["name"] for p in excess_terminated(pods, threshold=1)] == [
        "old-failed",
        "mid-done",
    ]
    assert excess_terminated(pods, threshold=3) == []


def test_the_failed_status_keeps_other_conditions_and_says_why() -> None:
    running = pod()
    running["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    patch = failed_status(running, "PodGC: node no longer exists", NOW)["status"]
    assert patch["phase"] == "Failed"
    types = {c["type"]: c for c in patch["conditions"]}
    assert types["Ready"]["status"] == "True"
    target = types["DisruptionTarget"]
    assert (target["status"], target["reason"]) == ("True", "DeletionByPodGC")
    assert target["message"] == "PodGC: node no longer exists"
