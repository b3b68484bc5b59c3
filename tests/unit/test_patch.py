"""JSON patch, merge patch and strategic merge patch, as kube-apiserver applies them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from unistack.apiserver import patch
from unistack.apiserver.errors import ApiError

Obj = dict[str, Any]


def deployment(*containers: Obj, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": list(containers), **spec}},
        },
    }


def pod_with(*names: str) -> Obj:
    return {"spec": {"containers": [{"name": name} for name in names]}}


def containers_of(obj: Obj) -> list[Obj]:
    spec = obj["spec"]
    return list(
        spec["template"]["spec"]["containers"] if "template" in spec else spec["containers"]
    )


def names_of(obj: Obj) -> list[str]:
    return [container["name"] for container in containers_of(obj)]


def smp(obj: Obj, body: Any, kind_key: str = "apps/Deployment") -> Obj:
    return patch.apply_strategic_merge_patch(obj, body, kind_key)


def template_patch(**spec: Any) -> Obj:
    return {"spec": {"template": {"spec": spec}}}


APP = {"name": "app", "image": "app:1", "env": [{"name": "MODE", "value": "a"}]}
SIDECAR = {"name": "sidecar", "image": "proxy:1"}


# --- JSON patch -------------------------------------------------------------------------


def test_json_patch_replaces_and_adds() -> None:
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels", "value": {"app": "web"}},
    ]
    result = patch.apply_json_patch(deployment(APP), ops)
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["labels"] == {"app": "web"}


def test_json_patch_passing_test_op_applies_the_rest() -> None:
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "remove", "path": "/metadata/finalizers"},
    ]
    assert "finalizers" not in patch.apply_json_patch(deployment(APP), ops)["metadata"]


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/spec/replicas", "value": 2}],
        [{"op": "remove", "path": "/spec/nothing"}],
        [{"op": "replace", "path": "/spec/template/spec/containers/5/image", "value": "x"}],
        [{"op": "frobnicate", "path": "/spec"}],
        [{"op": "add", "path": "/spec/x"}],
    ],
)
def test_json_patch_that_cannot_apply_is_invalid_without_detail(ops: list[Obj]) -> None:
    with pytest.raises(ApiError) as caught:
        patch.apply_json_patch(deployment(APP), ops)
    assert (caught.value.code, caught.value.reason) == (422, "Invalid")
    assert caught.value.message == "the server rejected our request due to an error in our request"


def test_json_patch_that_is_not_a_list_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        patch.apply_json_patch(deployment(APP), {"op": "add"})
    assert caught.value.code == 400
    assert caught.value.message == (
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
    )


def test_json_patch_operation_that_is_not_an_object_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        patch.apply_json_patch(deployment(APP), ["add"])
    assert caught.value.code == 400
    assert "jsonpatch.Operation" in caught.value.message


def test_json_patch_with_too_many_operations_is_too_large() -> None:
    ops = [{"op": "test", "path": "/spec/replicas", "value": 1}] * 10001
    with pytest.raises(ApiError) as caught:
        patch.apply_json_patch(deployment(APP), ops)
    assert caught.value.code == 413
    assert caught.value.message.endswith("is 10000, got 10001")


def test_json_patch_leaves_its_inputs_alone() -> None:
    original = deployment(APP)
    ops = [{"op": "add", "path": "/metadata/labels", "value": {"app": "web"}}]
    kept, kept_ops = copy.deepcopy(original), copy.deepcopy(ops)
    result = patch.apply_json_patch(original, ops)
    result["metadata"]["labels"]["app"] = "changed"
    assert (original, ops) == (kept, kept_ops)


# --- Merge patch ----------------------------------------------------------------------------


def test_merge_patch_null_deletes_and_objects_merge() -> None:
    body = {"metadata": {"finalizers": None, "labels": {"app": "web"}}, "spec": {"replicas": 4}}
    result = patch.apply_merge_patch(deployment(APP), body)
    assert result["metadata"] == {"name": "web", "namespace": "default", "labels": {"app": "web"}}
    assert result["spec"]["replicas"] == 4
    assert names_of(result) == ["app"]


def test_merge_patch_replaces_lists_whole() -> None:
    body = template_patch(containers=[{"name": "other"}])
    assert names_of(patch.apply_merge_patch(deployment(APP, SIDECAR), body)) == ["other"]


def test_merge_patch_drops_nulls_inside_new_objects() -> None:
    result = patch.apply_merge_patch({}, {"spec": {"a": 1, "b": None}})
    assert result == {"spec": {"a": 1}}


def test_merge_patch_must_be_an_object() -> None:
    with pytest.raises(ApiError) as caught:
        patch.apply_merge_patch({}, [1])
    assert (caught.value.code, caught.value.message) == (400, "Invalid JSON Patch")


def test_merge_patch_leaves_its_input_alone() -> None:
    original = deployment(APP)
    kept = copy.deepcopy(original)
    result = patch.apply_merge_patch(original, {"spec": {"replicas": 9}})
    result["metadata"]["name"] = "changed"
    assert original == kept


# --- Strategic merge patch: lists with merge keys --------------------------------------------


def test_changing_one_containers_image_keeps_the_others() -> None:
    result = smp(
        deployment(APP, SIDECAR), template_patch(containers=[{"name": "app", "image": "app:2"}])
    )
    assert containers_of(result) == [{**APP, "image": "app:2"}, SIDECAR]


def test_a_new_container_goes_before_the_stored_ones_without_an_order() -> None:
    # apimachinery's normalizeElementOrder: items the server does not know sort first.
    result = smp(deployment(APP), template_patch(containers=[{"name": "new", "image": "n:1"}]))
    assert names_of(result) == ["new", "app"]


def test_set_element_order_places_a_new_container_last() -> None:
    body = template_patch(
        containers=[{"name": "new"}],
        **{"$setElementOrder/containers": [{"name": "app"}, {"name": "new"}]},
    )
    assert names_of(smp(deployment(APP), body)) == ["app", "new"]


def test_patch_delete_removes_the_item_with_that_key() -> None:
    body = template_patch(containers=[{"name": "sidecar", "$patch": "delete"}])
    assert names_of(smp(deployment(APP, SIDECAR), body)) == ["app"]


def test_patch_replace_in_a_list_replaces_the_whole_list() -> None:
    body = template_patch(containers=[{"$patch": "replace"}, {"name": "only", "image": "o:1"}])
    assert containers_of(smp(deployment(APP, SIDECAR), body)) == [{"name": "only", "image": "o:1"}]


def test_nested_lists_merge_by_their_own_keys() -> None:
    body = template_patch(containers=[{"name": "app", "env": [{"name": "EXTRA", "value": "1"}]}])
    env = containers_of(smp(deployment(APP), body))[0]["env"]
    assert env == [{"name": "EXTRA", "value": "1"}, {"name": "MODE", "value": "a"}]


def test_null_in_an_item_removes_that_field() -> None:
    body = template_patch(containers=[{"name": "app", "env": None}])
    assert containers_of(smp(deployment(APP), body))[0] == {"name": "app", "image": "app:1"}


def test_lists_without_a_strategy_are_replaced() -> None:
    original = deployment(APP, tolerations=[{"key": "a"}, {"key": "b"}])
    result = smp(original, template_patch(tolerations=[{"key": "c"}]))
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "c"}]


def test_service_ports_merge_on_port() -> None:
    service = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    result = smp(service, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}, "Service")
    assert result["spec"]["ports"] == [
        {"port": 80, "name": "http"},
        {"port": 443, "name": "https", "targetPort": 8443},
    ]


def test_service_account_secrets_merge_but_image_pull_secrets_are_atomic() -> None:
    account = {"secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "r1"}]}
    body = {"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "r2"}]}
    result = smp(account, body, "ServiceAccount")
    assert result["secrets"] == [{"name": "b"}, {"name": "a"}]
    assert result["imagePullSecrets"] == [{"name": "r2"}]


def test_node_conditions_merge_on_type() -> None:
    node = {
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure"}]}
    }
    body = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    result = smp(node, body, "Node")
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "DiskPressure"},
    ]


def test_cron_job_pod_template_containers_merge_by_name() -> None:
    cron = {"spec": {"jobTemplate": {"spec": {"template": pod_with("a", "b")}}}}
    body = {
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "x"}]}}}
            }
        }
    }
    result = smp(cron, body, "batch/CronJob")
    assert result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "a"},
        {"name": "b", "image": "x"},
    ]


def test_patch_order_wins_over_the_stored_order() -> None:
    # apimachinery "preserve the order from the patch in a merging list 2"
    original = {"spec": {"containers": [{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]}}
    body = {"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}}
    assert containers_of(smp(original, body, "Pod")) == [
        {"name": "2", "image": "b"},
        {"name": "3", "image": "c"},
        {"name": "1", "image": "a"},
    ]


# --- Strategic merge patch: directives -----------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "order", "expected"),
    [
        ("12934", "2143", "21943"),
        ("1279834", "2143", "2179843"),
    ],
)
def test_set_element_order_keeps_server_only_items_in_place(
    stored: str, order: str, expected: str
) -> None:
    body = {"spec": {"$setElementOrder/containers": [{"name": name} for name in order]}}
    assert names_of(smp(pod_with(*stored), body, "Pod")) == list(expected)


def test_set_element_order_of_a_primitive_list() -> None:
    stored = {"metadata": {"finalizers": ["1", "4", "2"]}}
    body = {"metadata": {"$setElementOrder/finalizers": ["3", "1", "2"], "finalizers": ["3"]}}
    assert smp(stored, body, "Pod")["metadata"]["finalizers"] == ["3", "1", "4", "2"]


def test_set_element_order_must_name_every_patched_item() -> None:
    body = {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}
    with pytest.raises(ApiError) as caught:
        smp(pod_with("a"), body, "Pod")
    assert caught.value.code == 400


def test_primitive_merge_lists_are_unioned() -> None:
    result = smp(deployment(APP), {"metadata": {"finalizers": ["b", "c"]}})
    assert sorted(result["metadata"]["finalizers"]) == ["a", "b", "c"]


def test_delete_from_primitive_list() -> None:
    body = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}
    assert smp(deployment(APP), body)["metadata"]["finalizers"] == ["b"]


def test_retain_keys_clears_the_fields_not_listed() -> None:
    volume = {"name": "data", "emptyDir": {}}
    original = deployment(APP, volumes=[volume])
    body = template_patch(
        volumes=[{"name": "data", "hostPath": {"path": "/d"}, "$retainKeys": ["name", "hostPath"]}]
    )
    volumes = smp(original, body)["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "data", "hostPath": {"path": "/d"}}]


def test_retain_keys_must_list_every_patched_field() -> None:
    body = template_patch(volumes=[{"name": "data", "hostPath": {}, "$retainKeys": ["name"]}])
    with pytest.raises(ApiError) as caught:
        smp(deployment(APP, volumes=[{"name": "data"}]), body)
    assert (caught.value.code, caught.value.message) == (400, "invalid patch format of retainKeys")


def test_patch_replace_on_a_map_replaces_it() -> None:
    original = deployment(APP)
    original["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    body = {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}
    assert smp(original, body)["spec"]["strategy"] == {"type": "Recreate"}


def test_patch_delete_on_a_map_empties_it() -> None:
    result = smp(deployment(APP), {"spec": {"template": {"$patch": "delete"}}})
    assert result["spec"]["template"] == {}


def test_new_values_arrive_without_nulls_or_directives() -> None:
    body = {"spec": {"extra": {"keep": 1, "drop": None, "gone": {"$patch": "delete"}}}}
    assert smp(deployment(APP), body)["spec"]["extra"] == {"keep": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            template_patch(containers=[{"image": "x"}]),
            "map: map[image:x] does not contain declared merge key: name",
        ),
        (
            template_patch(containers=[{"name": "app", "$patch": "merge"}]),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            {"spec": {"$patch": "bogus"}},
            "unknown patch type: bogus in map: map[$patch:bogus]",
        ),
    ],
)
def test_malformed_strategic_patches_are_bad_requests(body: Obj, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        smp(deployment(APP), body)
    assert (caught.value.code, caught.value.message) == (400, message)


def test_lists_of_lists_are_invalid() -> None:
    with pytest.raises(ApiError) as caught:
        smp({"metadata": {"finalizers": [["a"]]}}, {"metadata": {"finalizers": [["b"]]}}, "Pod")
    assert caught.value.code == 422


def test_strategic_patch_body_must_be_an_object() -> None:
    with pytest.raises(ApiError) as caught:
        smp(deployment(APP), [1])
    assert caught.value.code == 400


def test_custom_resources_do_not_take_strategic_merge_patch() -> None:
    assert patch.supports_strategic_merge("apps/Deployment")
    assert patch.supports_strategic_merge("Pod")
    assert not patch.supports_strategic_merge("example.com/Widget")
    with pytest.raises(ApiError) as caught:
        smp({}, {}, "example.com/Widget")
    assert (caught.value.code, caught.value.reason) == (415, "UnsupportedMediaType")
    assert "strategic-merge-patch" not in caught.value.message


def test_strategic_patch_leaves_its_inputs_alone() -> None:
    original = deployment(APP, SIDECAR)
    body = template_patch(
        containers=[{"name": "app", "image": "app:2"}, {"name": "sidecar", "$patch": "delete"}]
    )
    kept, kept_body = copy.deepcopy(original), copy.deepcopy(body)
    result = smp(original, body)
    containers_of(result)[0]["env"].append({"name": "MUTATED"})
    assert (original, body) == (kept, kept_body)
