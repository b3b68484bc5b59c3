"""The namespace controller's decisions, without I/O: namespace and its content → actions."""

from __future__ import annotations

from typing import Any

from unistack.client.resources import CONFIGMAPS, PODS, DiscoveredResource
from unistack.kube.namespace import (
    Content,
    DeleteCollection,
    DeleteObject,
    Finalize,
    RequeueAfter,
    SetStatus,
    decide_namespace,
    merge_conditions,
)

Obj = dict[str, Any]
NOW = "2026-01-01T00:00:10Z"
ALL_VERBS = frozenset({"list", "delete", "deletecollection", "get", "watch"})


def namespace(
    *,
    deleting: bool = True,
    finalizers: tuple[str, ...] = ("kubernetes",),
    status: Obj | None = None,
) -> Obj:
    meta: Obj = {"name": "team", "uid": "ns-uid"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"finalizers": list(finalizers)}, "status": status or {}}


def item(name: str, *, deleting: bool = False, finalizers: list[str] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": "team"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:05Z"
    if finalizers:
        meta["finalizers"] = finalizers
    return {"metadata": meta}


def content(ref: Any, *items: Obj, verbs: frozenset[str] = ALL_VERBS) -> Content:
    return Content(DiscoveredResource(ref, verbs), tuple(items))


def conditions_of(actions: list[Any]) -> dict[str, Obj]:
    status = next(a for a in actions if isinstance(a, SetStatus))
    return {c["type"]: c for c in status.conditions}


def test_a_namespace_not_being_deleted_needs_nothing() -> None:
    assert decide_namespace(namespace(deleting=False), [content(PODS, item("p"))], NOW) == []


def test_a_namespace_without_the_content_finalizer_needs_nothing() -> None:
    assert decide_namespace(namespace(finalizers=()), [], NOW) == []


def test_content_is_deleted_per_resource_and_looked_at_again() -> None:
    actions = decide_namespace(
        namespace(), [content(PODS, item("a"), item("b")), content(CONFIGMAPS)], NOW, 0.5
    )
    assert isinstance(actions[0], SetStatus) and actions[0].phase == "Terminating"
    assert actions[1:] == [DeleteCollection(PODS), RequeueAfter(0.5)]
    remaining = conditions_of(actions)["NamespaceContentRemaining"]
    assert remaining["status"] == "True"
    assert remaining["message"] == "Some resources are remaining: pods has 2 resource instances"


def test_objects_are_deleted_one_by_one_without_deletecollection() -> None:
    verbs = frozenset({"list", "delete"})
    actions = decide_namespace(namespace(), [content(CONFIGMAPS, item("x"), verbs=verbs)], NOW)
    assert actions[1:] == [DeleteObject(CONFIGMAPS, "x"), RequeueAfter(1.0)]


def test_content_already_being_deleted_is_waited_for_not_deleted_again() -> None:
    going = item("p", deleting=True, finalizers=["example.com/hold"])
    actions = decide_namespace(namespace(), [content(PODS, going)], NOW)
    assert not any(isinstance(a, DeleteCollection | DeleteObject) for a in actions)
    assert actions[-1] == RequeueAfter(1.0)
    finalizers = conditions_of(actions)["NamespaceFinalizersRemaining"]
    assert finalizers["status"] == "True"
    assert "example.com/hold in 1 resource instances" in finalizers["message"]


def test_an_empty_namespace_is_finalized_keeping_other_finalizers() -> None:
    ns = namespace(finalizers=("kubernetes", "example.com/other"))
    actions = decide_namespace(ns, [content(PODS)], NOW)
    assert isinstance(actions[0], SetStatus)
    assert actions[1:] == [Finalize(("example.com/other",))]
    assert conditions_of(actions)["NamespaceContentRemaining"]["status"] == "False"


def test_status_is_not_rewritten_when_nothing_changed() -> None:
    first = decide_namespace(namespace(), [content(PODS, item("a"))], NOW)
    status = {"phase": "Terminating", "conditions": [dict(c) for c in first[0].conditions]}
    again = decide_namespace(namespace(status=status), [content(PODS, item("a"))], NOW)
    assert again == [DeleteCollection(PODS), RequeueAfter(1.0)]


def test_merge_conditions_keeps_transition_times_of_unchanged_conditions() -> None:
    old = [
        {"type": "A", "status": "True", "lastTransitionTime": "t0"},
        {"type": "B", "status": "True", "lastTransitionTime": "t0"},
    ]
    new = [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]
    merged = merge_conditions(old, new, "t1")
    assert [c["lastTransitionTime"] for c in merged] == ["t0", "t1"]
