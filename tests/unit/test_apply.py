"""Server-side apply and managedFields tracking, checked against kube-apiserver's output."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from unistack.apiserver import apply
from unistack.apiserver.errors import ApiError

Obj = dict[str, Any]

T0, T1, T2 = "2024-09-03T14:09:23Z", "2024-09-03T14:10:00Z", "2024-09-03T14:11:00Z"
DEPLOYMENT = "apps/Deployment"


def deployment(replicas: int | None = None, image: str = "nginx:1", **labels: str) -> Obj:
    obj: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    if labels:
        obj["metadata"]["labels"] = labels
    return obj


def ssa(live: Obj | None, applied: Obj, manager: str, force: bool = False, now: str = T0) -> Obj:
    return apply.server_side_apply(live, applied, manager, force, DEPLOYMENT, now)


def entries(obj: Obj) -> dict[str, Obj]:
    return {entry["manager"]: entry for entry in obj["metadata"].get("managedFields", [])}


def owned(obj: Obj, manager: str) -> Obj:
    return dict(entries(obj)[manager]["fieldsV1"])


def conflict_of(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    return caught.value


def causes_of(error: ApiError) -> list[Obj]:
    assert error.details is not None
    return list(error.details["causes"])


def edited(obj: Obj, change: Any) -> Obj:
    new = copy.deepcopy(obj)
    change(new)
    return new


# --- FieldsV1, checked against objects a real kube-apiserver produced -------------------------

# A Deployment applied with `kubectl apply --server-side` style config by
# "provider-kubernetes/sample-deployment-owner"; kube-apiserver recorded this fieldsV1.
UPSTREAM_APPLY_FIELDS = json.loads(
    r"""{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},
    "f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{
    "k:{\"name\":\"nginx\"}":{".":{},"f:env":{"k:{\"name\":\"MY_NODE_NAME\"}":{".":{},
    "f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},"f:image":{},"f:name":{},"f:ports":{
    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"""
)


def nginx_config() -> Obj:
    container = {
        "name": "nginx",
        "image": "nginx:1.14.2",
        "ports": [{"containerPort": 80}],
        "env": [
            {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "nginx-deployment",
            "namespace": "default",
            "labels": {"app": "nginx"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [container]},
            },
        },
    }


def test_apply_of_a_deployment_records_fields_exactly_as_kube_does() -> None:
    manager = "provider-kubernetes/sample-deployment-owner"
    created = ssa(None, nginx_config(), manager)
    [entry] = created["metadata"]["managedFields"]
    assert entry == {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": UPSTREAM_APPLY_FIELDS,
    }
    # Same keys in the same order: the stored JSON matches byte for byte.
    assert json.dumps(entry["fieldsV1"]) == json.dumps(UPSTREAM_APPLY_FIELDS)
    assert created["spec"] == nginx_config()["spec"]


# A Deployment created by `kubectl apply` (client side), after defaulting; kube-apiserver
# recorded this fieldsV1 for "kubectl-client-side-apply".
UPSTREAM_CREATE_FIELDS = json.loads(
    r"""{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},
    "f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},
    "f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},
    "f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":
    {".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},
    "f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},
    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{".":{},"f:limits":{
    ".":{},"f:cpu":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},
    "f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},
    "f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},
    "f:terminationGracePeriodSeconds":{}}}}}"""
)


def defaulted_nginx() -> Obj:
    container = {
        "name": "nginx",
        "image": "nginx:latest",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "resources": {
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "Always",
    }
    pod_spec = {
        "containers": [container],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "nginx-deployment",
            "namespace": "default",
            "uid": "8ed8a225-b538-4d27-adc2-fa6c9bf6baeb",
            "resourceVersion": "10227",
            "generation": 1,
            "creationTimestamp": "2026-08-15T10:04:57Z",
            "labels": {"app": "nginx"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": pod_spec},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    }


def test_create_records_fields_exactly_as_kube_does() -> None:
    created = apply.track_update(
        None, defaulted_nginx(), "kubectl-client-side-apply", "Update", "apps/v1", T0
    )
    [entry] = created["metadata"]["managedFields"]
    assert {key: value for key, value in entry.items() if key != "fieldsV1"} == {
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    assert json.dumps(entry["fieldsV1"]) == json.dumps(UPSTREAM_CREATE_FIELDS)


def test_status_update_is_recorded_with_its_subresource() -> None:
    created = apply.track_update(None, defaulted_nginx(), "kubectl", "Update", "apps/v1", T0)

    def report(new: Obj) -> None:
        new["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}

    updated = apply.track_update(
        created,
        edited(created, report),
        "kube-controller-manager",
        "Update",
        "apps/v1",
        T1,
        subresource="status",
    )
    entry = entries(updated)["kube-controller-manager"]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {
        "f:status": {
            "f:conditions": {
                ".": {},
                'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}},
            },
            "f:replicas": {},
        }
    }
    assert owned(updated, "kubectl") == owned(created, "kubectl")


# --- Server-side apply: conflicts and ownership --------------------------------------------------


def test_two_appliers_conflict_on_a_field_they_set_differently() -> None:
    live = ssa(None, deployment(replicas=3), "alice")
    error = conflict_of(lambda: ssa(live, deployment(replicas=5), "bob"))
    assert error.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert error.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "alice"',
                "field": ".spec.replicas",
            }
        ]
    }


def test_forcing_takes_the_field_over() -> None:
    live = ssa(None, deployment(replicas=3), "alice")
    forced = ssa(live, deployment(replicas=5), "bob", force=True, now=T1)
    assert forced["spec"]["replicas"] == 5
    assert "f:replicas" in owned(forced, "bob")["f:spec"]
    assert "f:replicas" not in owned(forced, "alice")["f:spec"]
    assert entries(forced)["alice"]["time"] == T0
    # Alice now conflicts with bob in turn.
    error = conflict_of(lambda: ssa(forced, deployment(replicas=3), "alice"))
    assert error.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "bob"',
                "field": ".spec.replicas",
            }
        ]
    }


def test_applying_the_same_value_shares_the_field() -> None:
    live = ssa(None, deployment(replicas=3), "alice")
    shared = ssa(live, deployment(replicas=3), "bob")
    assert "f:replicas" in owned(shared, "alice")["f:spec"]
    assert "f:replicas" in owned(shared, "bob")["f:spec"]
    # Alice lets go; bob still owns it, so it stays.
    released = ssa(shared, deployment(), "alice", now=T1)
    assert released["spec"]["replicas"] == 3
    assert "f:replicas" not in owned(released, "alice")["f:spec"]
    # Bob lets go too: nobody owns it, so it goes.
    assert "replicas" not in ssa(released, deployment(), "bob", now=T2)["spec"]


def test_a_field_dropped_from_the_config_is_removed() -> None:
    live = ssa(None, deployment(replicas=3, app="web", tier="front"), "alice")
    after = ssa(live, deployment(app="web"), "alice", now=T1)
    assert after["metadata"]["labels"] == {"app": "web"}
    assert "replicas" not in after["spec"]
    assert owned(after, "alice")["f:metadata"] == {"f:labels": {"f:app": {}}}


def test_dropping_every_label_removes_the_map() -> None:
    live = ssa(None, deployment(app="web"), "alice")
    assert "labels" not in ssa(live, deployment(), "alice", now=T1)["metadata"]


def test_a_keyed_item_dropped_from_the_config_is_removed() -> None:
    config = deployment()
    config["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "p:1"})
    live = ssa(None, config, "alice")
    after = ssa(live, deployment(), "alice", now=T1)
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_a_field_another_writer_changed_is_not_the_appliers_to_remove() -> None:
    live = ssa(None, deployment(replicas=3), "alice")
    scaled = apply.track_update(
        live,
        edited(live, lambda new: new["spec"].update(replicas=7)),
        "hpa",
        "Update",
        "apps/v1",
        T1,
    )
    assert "f:replicas" not in owned(scaled, "alice")["f:spec"]
    after = ssa(scaled, deployment(), "alice", now=T2)
    assert after["spec"]["replicas"] == 7


def test_apply_conflicts_with_an_updater_named_with_its_version() -> None:
    live = ssa(None, deployment(image="nginx:1"), "alice")

    def bump(new: Obj) -> None:
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"

    edited_live = apply.track_update(
        live, edited(live, bump), "kubectl-edit", "Update", "apps/v1", T1
    )
    error = conflict_of(lambda: ssa(edited_live, deployment(image="nginx:3"), "alice", now=T2))
    field = '.spec.template.spec.containers[name="app"].image'
    assert error.message == (
        f'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: {field}'
    )
    assert error.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-edit" using apps/v1',
                "field": field,
            }
        ]
    }


def test_several_conflicts_are_listed_by_manager() -> None:
    live = ssa(None, deployment(replicas=1, tier="a"), "alice")
    live = ssa(live, deployment(image="nginx:1"), "bob", now=T1)
    error = conflict_of(
        lambda: ssa(live, deployment(replicas=2, image="nginx:2", tier="b"), "carol", now=T2)
    )
    image = '.spec.template.spec.containers[name="app"].image'
    assert error.message == (
        "Apply failed with 4 conflicts: "
        'conflicts with "alice":\n- .metadata.labels.tier\n- .spec.replicas\n'
        f"- {image}\n"
        f'conflicts with "bob":\n- {image}'
    )
    assert [cause["field"] for cause in causes_of(error)] == [
        ".metadata.labels.tier",
        ".spec.replicas",
        image,
        image,
    ]


def test_an_object_without_managed_fields_is_owned_before_first_apply() -> None:
    live = deployment(replicas=3)
    error = conflict_of(lambda: ssa(live, deployment(replicas=4), "alice"))
    [cause] = causes_of(error)
    assert cause["message"] == 'conflict with "before-first-apply" using apps/v1'
    forced = ssa(live, deployment(replicas=4), "alice", force=True)
    assert set(entries(forced)) == {"alice", "before-first-apply"}


def test_a_no_op_apply_keeps_the_appliers_time() -> None:
    live = ssa(None, deployment(replicas=3), "alice")
    again = ssa(live, deployment(replicas=3), "alice", now=T1)
    assert entries(again)["alice"]["time"] == T0
    assert again == live


def test_server_bookkeeping_is_never_owned() -> None:
    config = deployment()
    config["metadata"].update(uid="u-1", resourceVersion="5", generation=2, creationTimestamp=T0)
    fields = owned(ssa(None, config, "alice"), "alice")
    assert "f:metadata" not in fields
    assert "f:apiVersion" not in fields and "f:kind" not in fields


def test_appliers_come_before_updaters_in_managed_fields() -> None:
    live = apply.track_update(
        None, deployment(replicas=1), "kubectl-create", "Update", "apps/v1", T0
    )
    applied = ssa(live, deployment(replicas=1, team="x"), "alice", now=T1)
    assert [entry["manager"] for entry in applied["metadata"]["managedFields"]] == [
        "alice",
        "kubectl-create",
    ]


def test_reset_fields_are_never_owned_and_never_conflict() -> None:
    config = deployment(replicas=1)
    config["status"] = {"replicas": 9}
    created = apply.server_side_apply(
        None, config, "alice", False, DEPLOYMENT, T0, ignored_fields=("status",)
    )
    assert "f:status" not in owned(created, "alice")

    def report(new: Obj) -> None:
        new["status"] = {"replicas": 1}
        new["spec"]["replicas"] = 5  # a status write cannot change spec: reset, not owned

    reported = apply.track_update(
        created,
        edited(created, report),
        "kube-controller-manager",
        "Update",
        "apps/v1",
        T1,
        subresource="status",
        ignored_fields=("spec", "metadata.labels"),
    )
    assert owned(reported, "kube-controller-manager") == {"f:status": {"f:replicas": {}}}
    config["status"] = {"replicas": 7}
    again = apply.server_side_apply(
        reported, config, "alice", False, DEPLOYMENT, T2, ignored_fields=("status",)
    )
    assert "kube-controller-manager" in entries(again)


def test_managed_fields_in_the_applied_config_are_refused() -> None:
    config = deployment()
    config["metadata"]["managedFields"] = []
    with pytest.raises(ApiError) as caught:
        ssa(None, config, "alice")
    assert (caught.value.code, caught.value.message) == (400, "metadata.managedFields must be nil")


def test_applied_keyed_item_without_its_key_is_refused() -> None:
    config = deployment()
    config["spec"]["template"]["spec"]["containers"] = [{"image": "x"}]
    with pytest.raises(ApiError) as caught:
        ssa(None, config, "alice")
    assert caught.value.code == 500
    assert caught.value.message == (
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): "
        ".spec.template.spec.containers: element 0: associative list with keys has an "
        'element that omits key field "name" (and doesn\'t have default value)'
    )


def test_apply_leaves_its_inputs_alone() -> None:
    live = ssa(None, deployment(replicas=3, app="web"), "alice")
    config = deployment(replicas=4)
    kept_live, kept_config = copy.deepcopy(live), copy.deepcopy(config)
    ssa(live, config, "alice", now=T1)
    assert (live, config) == (kept_live, kept_config)


# --- Custom resources ------------------------------------------------------------------------


def widget(**spec: Any) -> Obj:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_custom_resources_merge_maps_and_replace_lists() -> None:
    live = apply.server_side_apply(
        None, widget(size=1, ports=[1, 2]), "a", False, "example.com/Widget", T0
    )
    assert owned(live, "a") == {"f:spec": {"f:ports": {}, "f:size": {}}}
    after = apply.server_side_apply(live, widget(color="red"), "b", False, "example.com/Widget", T1)
    assert after["spec"] == {"size": 1, "ports": [1, 2], "color": "red"}


def test_creating_a_custom_resource_owns_spec_itself() -> None:
    created = apply.track_update(
        None, widget(size=1), "kubectl-create", "Update", "example.com/v1", T0
    )
    assert owned(created, "kubectl-create") == {"f:spec": {".": {}, "f:size": {}}}


# --- Tracking updates ------------------------------------------------------------------------


def test_a_write_that_changes_nothing_records_nothing() -> None:
    created = apply.track_update(None, deployment(replicas=1), "kubectl", "Update", "apps/v1", T0)
    same = apply.track_update(created, copy.deepcopy(created), "other", "Update", "apps/v1", T1)
    assert set(entries(same)) == {"kubectl"}
    assert entries(same)["kubectl"]["time"] == T0


def test_removing_a_field_takes_it_from_its_owner() -> None:
    created = apply.track_update(
        None, deployment(replicas=1, a="1"), "kubectl", "Update", "apps/v1", T0
    )
    trimmed = apply.track_update(
        created,
        edited(created, lambda new: new["metadata"].pop("labels")),
        "edit",
        "Update",
        "apps/v1",
        T1,
    )
    assert "f:labels" not in owned(trimmed, "kubectl").get("f:metadata", {})
    assert "edit" not in entries(trimmed)


def test_managed_fields_sent_empty_are_reset() -> None:
    created = apply.track_update(None, deployment(replicas=1), "kubectl", "Update", "apps/v1", T0)

    def reset(new: Obj) -> None:
        new["metadata"]["managedFields"] = []
        new["spec"]["replicas"] = 2

    result = apply.track_update(created, edited(created, reset), "edit", "Update", "apps/v1", T1)
    assert set(entries(result)) == {"edit"}
    assert owned(result, "edit") == {"f:spec": {"f:replicas": {}}}


def test_managed_fields_sent_to_a_subresource_are_ignored() -> None:
    created = apply.track_update(None, deployment(replicas=1), "kubectl", "Update", "apps/v1", T0)
    sent = edited(created, lambda new: new["metadata"].update(managedFields=[]))
    result = apply.track_update(created, sent, "ctl", "Update", "apps/v1", T1, subresource="status")
    assert set(entries(result)) == {"kubectl"}


def test_updaters_using_different_versions_are_different_managers() -> None:
    created = apply.track_update(None, deployment(replicas=1), "ctl", "Update", "apps/v1", T0)
    bumped = edited(created, lambda new: new["spec"].update(replicas=2))
    result = apply.track_update(created, bumped, "ctl", "Update", "apps/v1beta2", T1)
    versions = sorted(entry["apiVersion"] for entry in result["metadata"]["managedFields"])
    assert versions == ["apps/v1", "apps/v1beta2"]


def test_unknown_manager_is_recorded_as_unknown() -> None:
    created = apply.track_update(None, deployment(replicas=1), "", "Update", "apps/v1", T0)
    assert set(entries(created)) == {"unknown"}
