"""The Deployment controller's decisions (`decide_deployment` and its arithmetic), without I/O."""

from __future__ import annotations

import re
from typing import Any

import pytest

from unistack.kube.deployment import (
    HASH_LABEL,
    REVISION,
    CreateReplicaSet,
    DeleteReplicaSet,
    ScaleReplicaSet,
    SetDeploymentRevision,
    SetRevision,
    UpdateStatus,
    decide_deployment,
    fenceposts,
    new_replica_set,
    new_rs_target,
    old_rs_targets,
    template_hash,
)

Obj = dict[str, Any]
NOW = "2026-01-01T12:00:00Z"
UID = "deploy-uid"


def deployment(
    image: str = "v2",
    replicas: int = 3,
    *,
    surge: int | str = 1,
    unavailable: int | str = 0,
    strategy: str = "RollingUpdate",
    **spec: Any,
) -> Obj:
    rolling = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": UID, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": strategy, "rollingUpdate": rolling},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def replicaset(
    image: str, revision: int, replicas: int, available: int | None = None, created: str = ""
) -> Obj:
    """A ReplicaSet the Deployment made for `image`, its pods all there and `available` ready."""
    rs = new_replica_set(deployment(image), replicas, revision)
    rs["metadata"]["uid"] = f"uid-{image}"
    rs["metadata"]["creationTimestamp"] = created or f"2026-01-01T0{revision}:00:00Z"
    ready = replicas if available is None else available
    rs["status"] = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}
    return rs


def of_type(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def scales(actions: list[Any]) -> dict[str, int]:
    return {a.name: a.replicas for a in of_type(actions, ScaleReplicaSet)}


def progressing(actions: list[Any]) -> Obj:
    [update] = of_type(actions, UpdateStatus)
    return next(c for c in update.status["conditions"] if c["type"] == "Progressing")


# -- hashes and ReplicaSets --------------------------------------------------------------------


def test_the_template_hash_is_stable_dns_safe_and_ignores_its_own_label() -> None:
    template = deployment()["spec"]["template"]
    digest = template_hash(template)
    assert re.fullmatch(r"[a-z0-9]{1,10}", digest)
    labelled = {**template, "metadata": {"labels": {"app": "web", HASH_LABEL: digest}}}
    assert template_hash(labelled) == digest
    assert template_hash(deployment("v3")["spec"]["template"]) != digest


def test_a_new_deployment_gets_one_replicaset_with_the_hash_everywhere() -> None:
    actions = decide_deployment(deployment(), [], [], NOW)
    [create] = of_type(actions, CreateReplicaSet)
    rs, digest = create.body, template_hash(deployment()["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{digest}"
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: digest}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: digest}
    [ref] = rs["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Deployment", UID, True)
    condition = progressing(actions)
    assert condition["reason"] == "NewReplicaSetCreated"
    assert condition["message"] == f'Created new replica set "web-{digest}"'


# -- rolling-update arithmetic -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable down
        (4, "25%", "25%", (1, 1)),
        (3, "25%", "25%", (1, 0)),
        (3, 0, 0, (0, 1)),  # never both zero
        (5, 2, "50%", (2, 2)),
    ],
)
def test_fenceposts(
    replicas: int, surge: int | str, unavailable: int | str, expected: tuple[int, int]
) -> None:
    assert fenceposts(deployment(replicas=replicas, surge=surge, unavailable=unavailable)) == (
        expected
    )


def test_recreate_has_no_surge() -> None:
    assert fenceposts(deployment(strategy="Recreate")) == (0, 0)


@pytest.mark.parametrize(
    ("total", "new", "expected"),
    [(3, 0, 1), (4, 1, 1), (3, 1, 2), (0, 0, 3), (5, 5, 3)],
)
def test_the_new_replicaset_grows_within_the_surge(total: int, new: int, expected: int) -> None:
    assert new_rs_target(3, 1, total, new) == expected


def test_old_replicasets_shrink_keeping_the_minimum_available() -> None:
    old = replicaset("v1", 1, 3)
    assert old_rs_targets(3, 0, 1, 0, [old]) == {old["metadata"]["name"]: 3}  # new not ready
    assert old_rs_targets(3, 0, 1, 1, [old]) == {old["metadata"]["name"]: 2}


def test_unavailable_old_pods_go_even_below_the_minimum_available() -> None:
    old = replicaset("v1", 1, 3, available=1)  # 1 available, 2 wanted: only unhealthy ones go
    assert old_rs_targets(3, 1, 1, 0, [old]) == {old["metadata"]["name"]: 2}


def simulate(deploy: Obj, rses: list[Obj], steps: int = 20) -> list[Obj]:
    """Apply each step's scaling to the ReplicaSets; every pod becomes available at once."""
    surge, unavailable = fenceposts(deploy)
    replicas = deploy["spec"]["replicas"]
    for _ in range(steps):
        actions = decide_deployment(deploy, rses, [], NOW)
        for create in of_type(actions, CreateReplicaSet):
            rs = create.body
            rs["metadata"] |= {"uid": "uid-new", "creationTimestamp": "2026-01-01T09:00:00Z"}
            rses.append(rs)
        targets = scales(actions)
        assert sum(targets.get(r["metadata"]["name"], r["spec"]["replicas"]) for r in rses) <= (
            replicas + surge
        )
        available = sum(r.get("status", {}).get("availableReplicas", 0) for r in rses)
        assert available >= replicas - unavailable or not targets
        for rs in rses:
            count = targets.get(rs["metadata"]["name"], rs["spec"]["replicas"])
            rs["spec"]["replicas"] = count
            rs["status"] = {"replicas": count, "readyReplicas": count, "availableReplicas": count}
        if not targets and not of_type(actions, CreateReplicaSet):
            return rses
    raise AssertionError("the rollout did not finish")


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"), [(3, 1, 0), (10, "25%", "25%"), (4, 0, 1), (5, 2, 2)]
)
def test_a_rolling_update_finishes_within_its_bounds(
    replicas: int, surge: int | str, unavailable: int | str
) -> None:
    deploy = deployment(replicas=replicas, surge=surge, unavailable=unavailable)
    final = simulate(deploy, [replicaset("v1", 1, replicas)])
    assert {r["metadata"]["annotations"][REVISION]: r["spec"]["replicas"] for r in final} == {
        "1": 0,
        "2": replicas,
    }


def test_scaling_down_a_rolled_out_deployment() -> None:
    rs = replicaset("v2", 1, 3)
    assert scales(decide_deployment(deployment(replicas=1), [rs], [], NOW)) == {
        rs["metadata"]["name"]: 1
    }


# -- Recreate ----------------------------------------------------------------------------------


def old_pod(rs: Obj) -> Obj:
    return {"metadata": {"ownerReferences": [{"uid": rs["metadata"]["uid"]}]}, "status": {}}


def test_recreate_scales_old_down_then_waits_for_its_pods_then_creates_the_new() -> None:
    deploy = deployment(strategy="Recreate")
    old = replicaset("v1", 1, 3)
    first = decide_deployment(deploy, [old], [old_pod(old)], NOW)
    assert scales(first) == {old["metadata"]["name"]: 0}
    assert not of_type(first, CreateReplicaSet)
    old = replicaset("v1", 1, 0)
    waiting = decide_deployment(deploy, [old], [old_pod(old)], NOW)
    assert not of_type(waiting, CreateReplicaSet) and not scales(waiting)
    [create] = of_type(decide_deployment(deploy, [old], [], NOW), CreateReplicaSet)
    assert create.body["spec"]["replicas"] == 3
    assert create.body["metadata"]["annotations"][REVISION] == "2"


# -- revisions, history, pausing, status -------------------------------------------------------


def test_a_new_template_gets_the_next_revision() -> None:
    olds = [replicaset("v0", 1, 0), replicaset("v1", 2, 3)]
    [create] = of_type(decide_deployment(deployment("v2"), olds, [], NOW), CreateReplicaSet)
    assert create.body["metadata"]["annotations"][REVISION] == "3"


def test_rolling_back_reuses_the_old_replicaset_with_a_new_revision() -> None:
    back, current = replicaset("v1", 1, 0), replicaset("v2", 2, 3)
    actions = decide_deployment(deployment("v1"), [back, current], [], NOW)
    assert not of_type(actions, CreateReplicaSet)
    assert of_type(actions, SetRevision) == [SetRevision(back["metadata"]["name"], 3)]
    assert of_type(actions, SetDeploymentRevision) == [SetDeploymentRevision(3)]
    assert scales(actions)[back["metadata"]["name"]] == 1


def test_history_beyond_the_limit_is_deleted_oldest_first() -> None:
    olds = [replicaset(f"v{n}", n, 0) for n in (1, 2, 3)]
    current = replicaset("v4", 4, 3)
    actions = decide_deployment(deployment("v4", revisionHistoryLimit=1), [*olds, current], [], NOW)
    assert of_type(actions, DeleteReplicaSet) == [
        DeleteReplicaSet(olds[0]["metadata"]["name"]),
        DeleteReplicaSet(olds[1]["metadata"]["name"]),
    ]


def test_history_keeps_replicasets_that_still_have_pods() -> None:
    olds = [replicaset("v1", 1, 0), replicaset("v2", 2, 0)]
    olds[0]["status"]["replicas"] = 1
    current = replicaset("v3", 3, 3)
    actions = decide_deployment(deployment("v3", revisionHistoryLimit=1), [*olds, current], [], NOW)
    assert not of_type(actions, DeleteReplicaSet)


def test_a_paused_deployment_does_not_roll_out_but_scales() -> None:
    old = replicaset("v1", 1, 3)
    actions = decide_deployment(deployment("v2", replicas=5, paused=True), [old], [], NOW)
    assert not of_type(actions, CreateReplicaSet)
    assert scales(actions) == {old["metadata"]["name"]: 5}
    assert progressing(actions)["reason"] == "DeploymentPaused"


def test_status_while_rolling_and_once_complete() -> None:
    old, new = replicaset("v1", 1, 2), replicaset("v2", 2, 2, available=1)
    rolling = decide_deployment(deployment("v2"), [old, new], [], NOW)
    assert progressing(rolling)["reason"] == "ReplicaSetUpdated"
    [update] = of_type(rolling, UpdateStatus)
    assert update.status["updatedReplicas"] == 2
    assert update.status["replicas"] == 4 and update.status["availableReplicas"] == 3
    done = decide_deployment(deployment("v2"), [replicaset("v2", 2, 3)], [], NOW)
    condition = progressing(done)
    assert (condition["status"], condition["reason"]) == ("True", "NewReplicaSetAvailable")
    [update] = of_type(done, UpdateStatus)
    assert update.status["unavailableReplicas"] == 0
    assert update.status["observedGeneration"] == 1


def test_an_unchanged_status_is_not_written_again() -> None:
    deploy, rs = deployment("v2"), replicaset("v2", 1, 3)
    deploy["metadata"]["annotations"] = {REVISION: "1"}
    [update] = of_type(decide_deployment(deploy, [rs], [], NOW), UpdateStatus)
    deploy["status"] = update.status
    assert decide_deployment(deploy, [rs], [], "2026-01-01T13:00:00Z") == []


def test_replicasets_of_other_owners_are_ignored() -> None:
    foreign = replicaset("v2", 1, 3)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert of_type(decide_deployment(deployment("v2"), [foreign], [], NOW), CreateReplicaSet)
