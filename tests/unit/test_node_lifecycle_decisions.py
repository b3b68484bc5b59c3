"""The node lifecycle controller's decision, without I/O: a Node whose heartbeat Lease and
status went silent for the grace period becomes Unknown and unreachable-tainted; Ready
again, it is untainted; a Node without a Lease is never judged."""

from __future__ import annotations

from unistack.kube.nodelifecycle import UNKNOWN_REASON, UNREACHABLE, decide_node, eviction_due
from unistack.runtime import events

NOW = 1_800_000_000.0


def node(ready: str = "True", heartbeat: float = NOW - 100, taints: list | None = None) -> dict:
    conditions = [
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady",
            "lastHeartbeatTime": events.timestamp(heartbeat),
            "lastTransitionTime": events.timestamp(heartbeat - 1000),
        },
    ]
    return {
        "metadata": {"name": "hv1", "resourceVersion": "7"},
        "spec": {"taints": taints or []},
        "status": {"conditions": conditions},
    }


def lease(renewed: float) -> dict:
    stamp = events.timestamp(renewed).replace("Z", ".123456Z")  # a MicroTime
    return {
        "metadata": {"name": "hv1", "namespace": "kube-node-lease"},
        "spec": {"renewTime": stamp},
    }


def test_a_renewed_lease_keeps_the_node_and_says_when_to_look_again() -> None:
    change = decide_node(node(), lease(NOW - 5), NOW, grace=40)
    assert change.conditions is None and change.taints is None
    assert 35 < (change.requeue or 0) <= 37


def test_a_silent_node_becomes_unknown_and_tainted_once() -> None:
    dedicated = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    change = decide_node(node(taints=[dedicated]), lease(NOW - 41), NOW, grace=40)
    assert change.conditions is not None
    assert {c["status"] for c in change.conditions} == {"Unknown"}
    assert {c["reason"] for c in change.conditions} == {UNKNOWN_REASON}
    ready = next(c for c in change.conditions if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == events.timestamp(NOW - 100)  # kept
    assert ready["lastTransitionTime"] == events.timestamp(NOW)
    assert change.taints is not None and change.taints[0] == dedicated
    assert {(t["key"], t["effect"]) for t in change.taints[1:]} == {
        (UNREACHABLE, "NoSchedule"),
        (UNREACHABLE, "NoExecute"),
    }
    marked = node("Unknown", taints=change.taints)
    again = decide_node(marked, lease(NOW - 50), NOW, grace=40)
    assert again.conditions is None and again.taints is None  # nothing more to write
    # both times, its pods are judged by the NoExecute taint
    assert change.evict_for is not None and again.evict_for is not None
    assert again.evict_for["effect"] == "NoExecute" and again.evict_for["key"] == UNREACHABLE


def test_ready_again_drops_the_unreachable_taints_only() -> None:
    dedicated = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    taints = [dedicated, {"key": UNREACHABLE, "effect": "NoExecute"}]
    back = decide_node(node("True", heartbeat=NOW - 1, taints=taints), lease(NOW - 1), NOW)
    assert back.taints == [dedicated] and back.conditions is None
    # heard of again, but the agent has not said Ready yet: the taints stay
    waiting = decide_node(node("Unknown", taints=taints), lease(NOW - 1), NOW)
    assert waiting.evict_for is None  # but no pod goes from a node heard of again
    assert waiting.taints is None


def test_a_node_without_a_heartbeat_lease_is_not_judged() -> None:
    change = decide_node(node(heartbeat=NOW - 10_000), None, NOW)
    assert change.conditions is None and change.taints is None and change.requeue is None


def test_a_pod_goes_when_its_toleration_of_the_unreachable_taint_runs_out() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": events.timestamp(NOW)}

    def pod(*tolerations: dict) -> dict:
        return {"spec": {"tolerations": list(tolerations)}}

    five_minutes = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 300}  # fmt: skip
    for_ever = {"operator": "Exists"}
    other = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
    assert eviction_due(pod(), taint) == NOW
    assert eviction_due(pod(other), taint) == NOW
    assert eviction_due(pod(five_minutes), taint) == NOW + 300
    assert eviction_due(pod(five_minutes, {**five_minutes, "tolerationSeconds": 30}), taint) == (
        NOW + 30
    )
    assert eviction_due(pod(five_minutes, for_ever), taint) is None
