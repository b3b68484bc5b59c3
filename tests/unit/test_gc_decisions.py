"""The garbage collector's decisions, without I/O: object, owner states, dependents → actions."""

from __future__ import annotations

from typing import Any

from unistack.client.resources import CONFIGMAPS, DEPLOYMENTS, PODS, REPLICASETS
from unistack.kube.garbagecollector import (
    FOREGROUND,
    ORPHAN,
    Check,
    Delete,
    Graph,
    ObjectId,
    OwnerState,
    RemoveFinalizer,
    RemoveOwnerRefs,
    decide,
    object_id,
    owner_state,
)

Obj = dict[str, Any]


def owner_ref(uid: str, *, kind: str = "ReplicaSet", block: bool = False) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": f"owner-{uid}",
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": block,
    }


def obj(
    uid: str,
    *,
    owners: list[Obj] | None = None,
    finalizers: list[str] | None = None,
    deleting: bool = False,
) -> Obj:
    meta: Obj = {"name": f"obj-{uid}", "namespace": "default", "uid": uid}
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def ident(o: Obj, ref: Any = PODS) -> ObjectId:
    return object_id(ref, o)


# -- dependents ---------------------------------------------------------------------------------


def test_an_object_without_owners_is_left_alone() -> None:
    pod = obj("p")
    assert decide(ident(pod), pod, {}, []) == []


def test_a_dependent_of_a_live_owner_is_left_alone() -> None:
    pod = obj("p", owners=[owner_ref("rs")])
    assert decide(ident(pod), pod, {"rs": OwnerState.SOLID}, []) == []


def test_a_dependent_whose_only_owner_is_gone_is_deleted_in_the_background() -> None:
    pod = obj("p", owners=[owner_ref("rs")])
    actions = decide(ident(pod), pod, {"rs": OwnerState.ABSENT}, [])
    assert actions == [Delete(ident(pod), "Background")]


def test_a_dependent_with_one_live_owner_only_loses_the_dead_references() -> None:
    pod = obj("p", owners=[owner_ref("a"), owner_ref("b"), owner_ref("c")])
    states = {"a": OwnerState.ABSENT, "b": OwnerState.SOLID, "c": OwnerState.WAITING}
    assert decide(ident(pod), pod, states, []) == [RemoveOwnerRefs(ident(pod), ("a", "c"))]


def test_a_dependent_with_all_owners_gone_is_deleted() -> None:
    pod = obj("p", owners=[owner_ref("a"), owner_ref("b")])
    states = {"a": OwnerState.ABSENT, "b": OwnerState.ABSENT}
    assert decide(ident(pod), pod, states, []) == [Delete(ident(pod), "Background")]


def test_a_dependent_of_a_foreground_owner_with_dependents_of_its_own_goes_in_the_foreground():
    rs = obj("rs", owners=[owner_ref("dep", kind="Deployment", block=True)])
    child = obj("p", owners=[owner_ref("rs")])
    actions = decide(
        ident(rs, REPLICASETS), rs, {"dep": OwnerState.WAITING}, [(ident(child), child)]
    )
    assert actions == [Delete(ident(rs, REPLICASETS), "Foreground")]


def test_a_childless_dependent_of_a_foreground_owner_goes_in_the_background() -> None:
    pod = obj("p", owners=[owner_ref("rs", block=True)])
    actions = decide(ident(pod), pod, {"rs": OwnerState.WAITING}, [])
    assert actions == [Delete(ident(pod), "Background")]


def test_an_orphaned_dependent_is_deleted_as_its_own_finalizers_ask() -> None:
    rs = obj("rs", owners=[owner_ref("dep")], finalizers=[ORPHAN])
    actions = decide(ident(rs, REPLICASETS), rs, {"dep": OwnerState.ABSENT}, [])
    assert actions == [Delete(ident(rs, REPLICASETS), "Orphan")]


def test_a_dependent_already_being_deleted_is_left_to_finish() -> None:
    pod = obj("p", owners=[owner_ref("rs")], deleting=True, finalizers=["example.com/x"])
    assert decide(ident(pod), pod, {}, []) == []


# -- owners being deleted ----------------------------------------------------------------------


def test_orphan_cuts_every_dependent_loose_then_removes_the_finalizer() -> None:
    rs = obj("rs", finalizers=[ORPHAN], deleting=True)
    pods = [obj(f"p{i}", owners=[owner_ref("rs")]) for i in range(2)]
    actions = decide(ident(rs, REPLICASETS), rs, {}, [(ident(p), p) for p in pods])
    assert actions == [
        RemoveOwnerRefs(ident(pods[0]), ("rs",)),
        RemoveOwnerRefs(ident(pods[1]), ("rs",)),
        RemoveFinalizer(ident(rs, REPLICASETS), ORPHAN),
    ]


def test_orphan_with_no_dependents_just_removes_the_finalizer() -> None:
    rs = obj("rs", finalizers=[ORPHAN], deleting=True)
    assert decide(ident(rs, REPLICASETS), rs, {}, []) == [
        RemoveFinalizer(ident(rs, REPLICASETS), ORPHAN)
    ]


def test_foreground_sends_dependents_away_blocking_ones_first() -> None:
    rs = obj("rs", finalizers=[FOREGROUND], deleting=True)
    loose = obj("loose", owners=[owner_ref("rs")])
    blocking = obj("blocking", owners=[owner_ref("rs", block=True)])
    dependents = [(ident(loose), loose), (ident(blocking), blocking)]
    actions = decide(ident(rs, REPLICASETS), rs, {}, dependents)
    assert actions == [Check("blocking"), Check("loose")]


def test_foreground_waits_for_blocking_dependents_already_going() -> None:
    rs = obj("rs", finalizers=[FOREGROUND], deleting=True)
    going = obj("p", owners=[owner_ref("rs", block=True)], deleting=True, finalizers=["x"])
    assert decide(ident(rs, REPLICASETS), rs, {}, [(ident(going), going)]) == []


def test_foreground_removes_the_finalizer_once_no_dependent_blocks() -> None:
    rs = obj("rs", finalizers=[FOREGROUND], deleting=True)
    loose = obj("loose", owners=[owner_ref("rs")])
    actions = decide(ident(rs, REPLICASETS), rs, {}, [(ident(loose), loose)])
    assert actions == [RemoveFinalizer(ident(rs, REPLICASETS), FOREGROUND)]


def test_an_object_being_deleted_without_gc_finalizers_needs_nothing() -> None:
    cm = obj("cm", finalizers=["example.com/keep"], deleting=True)
    assert decide(ident(cm, CONFIGMAPS), cm, {}, []) == []


def test_owner_state_tells_foreground_deletion_from_the_rest() -> None:
    assert owner_state(obj("a")) is OwnerState.SOLID
    assert owner_state(obj("a", deleting=True, finalizers=["x"])) is OwnerState.SOLID
    assert owner_state(obj("a", deleting=True, finalizers=[FOREGROUND])) is OwnerState.WAITING


# -- the graph ---------------------------------------------------------------------------------


def test_graph_tracks_dependents_and_reports_dropped_owners() -> None:
    graph = Graph()
    pod = obj("p", owners=[owner_ref("a"), owner_ref("b")])
    assert graph.upsert(PODS, pod) == set()
    assert graph.dependents_of("a") == {"p"}
    changed = obj("p", owners=[owner_ref("b")])
    assert graph.upsert(PODS, changed) == {"a"}
    assert graph.dependents_of("a") == set()
    assert graph.dependents_of("b") == {"p"}
    node = graph.remove("p")
    assert node is not None and node.key == "default/obj-p"
    assert graph.dependents_of("b") == set()
    assert graph.upsert(DEPLOYMENTS, obj("d")) == set()
