"""The API server's verbs and errors, through HTTP semantics, in process."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Api

CM = "/api/v1/namespaces/default/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(name: str = "web", replicas: int = 1) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}]
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
        },
    }


async def test_create_get_and_duplicate(api: Api) -> None:
    status, created = await api.call("POST", CM, configmap("a", k="v"))
    assert status == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert meta["namespace"] == "default"
    assert "generation" not in meta  # kube tracks generation for apps kinds and CRs only
    status, got = await api.call("GET", f"{CM}/a")
    assert status == 200 and got["data"] == {"k": "v"}
    status, clash = await api.call("POST", CM, configmap("a"))
    assert status == 409 and clash["reason"] == "AlreadyExists" and clash["kind"] == "Status"


async def test_rejected_requests_change_nothing(api: Api) -> None:
    status, error = await api.call("POST", CM, b"{not json")
    assert status == 400 and error["kind"] == "Status" and error["reason"] == "BadRequest"
    status, error = await api.call("POST", CM, configmap("Bad_Name"))
    assert status == 422 and error["reason"] == "Invalid"
    assert [c["field"] for c in error["details"]["causes"]] == ["metadata.name"]
    status, error = await api.call(
        "POST", CM, b'{"metadata":{"name":"big"},"data":{"x":"' + b"a" * (3 * 1024 * 1024) + b'"}}'
    )
    assert status == 413 and error["reason"] == "RequestEntityTooLarge"
    status, error = await api.call("POST", "/api/v1/namespaces/nowhere/configmaps", configmap("x"))
    assert status == 404 and "namespaces" in error["message"]
    _, listing = await api.call("GET", CM)
    assert listing["items"] == []


async def test_update_conflicts_and_names(api: Api) -> None:
    _, first = await api.call("POST", CM, configmap("a", k="1"))
    _, second = await api.call("PUT", f"{CM}/a", {**first, "data": {"k": "2"}})
    assert second["data"] == {"k": "2"}
    status, error = await api.call("PUT", f"{CM}/a", {**first, "data": {"k": "stale"}})
    assert status == 409 and error["reason"] == "Conflict"
    status, error = await api.call("PUT", f"{CM}/b", second)
    assert status == 400 and "does not match the name on the URL" in error["message"]
    status, error = await api.call("PUT", f"{CM}/missing", configmap("missing"))
    assert status == 404


async def test_generation_and_status_subresource(api: Api) -> None:
    _, dep = await api.call("POST", DEPLOYMENTS, deployment())
    assert dep["metadata"]["generation"] == 1 and dep.get("status", {}) == {}
    dep["status"] = {"replicas": 9}
    _, same_spec = await api.call("PUT", f"{DEPLOYMENTS}/web", dep)
    assert (
        same_spec["metadata"]["generation"] == 1
        and same_spec.get("status", {}).get("replicas") is None
    )
    same_spec["status"] = {"replicas": 3}
    _, with_status = await api.call("PUT", f"{DEPLOYMENTS}/web/status", same_spec)
    assert with_status["status"]["replicas"] == 3 and with_status["metadata"]["generation"] == 1
    with_status["spec"]["replicas"] = 4
    _, scaled = await api.call("PUT", f"{DEPLOYMENTS}/web", with_status)
    assert scaled["metadata"]["generation"] == 2 and scaled["status"]["replicas"] == 3


async def test_patch_types(api: Api) -> None:
    await api.call("POST", DEPLOYMENTS, deployment())
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "nginx:2"}]}}}}
    status, patched = await api.call(
        "PATCH", f"{DEPLOYMENTS}/web", smp, content_type="application/strategic-merge-patch+json"
    )
    assert status == 200
    images = [c["image"] for c in patched["spec"]["template"]["spec"]["containers"]]
    assert images == ["busybox", "nginx:2"]
    merge = {"metadata": {"labels": {"tier": "front"}}}
    _, merged = await api.call(
        "PATCH", f"{DEPLOYMENTS}/web", merge, content_type="application/merge-patch+json"
    )
    assert merged["metadata"]["labels"] == {"tier": "front"}
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 7}]
    _, jsonpatched = await api.call(
        "PATCH", f"{DEPLOYMENTS}/web", ops, content_type="application/json-patch+json"
    )
    assert jsonpatched["spec"]["replicas"] == 7
    status, _ = await api.call("PATCH", f"{DEPLOYMENTS}/web", {"x": 1}, content_type="text/plain")
    assert status == 415
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}
    status, _ = await api.call(
        "PATCH", f"{DEPLOYMENTS}/web", stale, content_type="application/merge-patch+json"
    )
    assert status == 409


async def test_a_patch_cannot_turn_an_object_into_another(api: Api) -> None:
    _, created = await api.call("POST", CM, configmap("q", k="v"))
    for body, content_type in [
        ({"kind": "Pod", "apiVersion": "v9"}, "application/merge-patch+json"),
        ({"metadata": "x"}, "application/merge-patch+json"),
        ([{"op": "replace", "path": "/metadata", "value": 3}], "application/json-patch+json"),
        (
            [{"op": "replace", "path": "/metadata/name", "value": "r"}],
            "application/json-patch+json",
        ),
        ({"metadata": {"namespace": "kube-system"}}, "application/strategic-merge-patch+json"),
    ]:
        status, error = await api.call("PATCH", f"{CM}/q", body, content_type=content_type)
        assert (status, error["reason"]) == (400, "BadRequest"), body
    _, stored = await api.call("GET", f"{CM}/q")
    assert stored == created


async def test_apply_creates_only_the_object_the_url_names(api: Api) -> None:
    other = {**configmap("other"), "data": {"k": "v"}}
    for body in (other, {**other, "metadata": "x"}):
        status, error = await api.call(
            "PATCH",
            f"{CM}/q",
            body,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "m"},
        )
        assert (status, error["reason"]) == (400, "BadRequest")
    _, listing = await api.call("GET", CM)
    assert listing["items"] == []


async def test_yaml_bodies_store_as_json(api: Api) -> None:
    body = b"metadata:\n  name: y\n  annotations:\n    when: 2024-01-01\ndata:\n  8080: port\n"
    status, created = await api.call("POST", CM, body, content_type="application/yaml")
    assert status == 201
    assert created["data"] == {"8080": "port"}
    assert created["metadata"]["annotations"] == {"when": "2024-01-01"}


def pod(**spec: Any) -> dict[str, Any]:
    containers = [{"name": "a", "image": "busybox", **spec.pop("container", {})}]
    return {"metadata": {"name": "p"}, "spec": {"containers": containers, **spec}}


def service(port: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "s"}, "spec": {"ports": [port, {**port, "name": "b"}]}}


PODS = "/api/v1/namespaces/default/pods"
SERVICES = "/api/v1/namespaces/default/services"
MISTYPED = [
    (CM, {"metadata": {"name": "o", "ownerReferences": [{"kind": [], "name": "x", "uid": "u"}]}}),
    (CM, {"metadata": {"name": "o", "generateName": 5}}),
    (PODS, pod(container={"volumeMounts": [{"name": ["v"], "mountPath": "/v"}]})),
    (PODS, pod(tolerations=[{"key": 5, "operator": "Exists"}])),
    (SERVICES, service({"name": ["a"], "port": 80})),
    (SERVICES, service({"name": "a", "port": [80]})),
    (DEPLOYMENTS, {**deployment(), "spec": {"selector": {"matchExpressions": 1}}}),
    (DEPLOYMENTS, {**deployment(), "spec": {"selector": {"matchExpressions": [{"key": 1}]}}}),
]


@pytest.mark.parametrize(("collection", "body"), MISTYPED)
async def test_mistyped_fields_are_invalid_not_a_server_error(
    api: Api, collection: str, body: dict[str, Any]
) -> None:
    status, error = await api.call("POST", collection, body)
    assert (status, error["reason"]) == (422, "Invalid")


async def test_a_body_cut_short_by_a_disconnect_is_not_acted_on(api: Api) -> None:
    body = b"metadata:\n  name: cut\ndata:\n  a: x\n  b: y\n"
    messages = [
        {"type": "http.request", "body": body[:30], "more_body": True},  # ends after `a: x`
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/yaml"), (b"content-length", b"%d" % len(body))]
    scope = {"type": "http", "method": "POST", "path": CM, "query_string": b"", "headers": headers}
    await api.server(scope, receive, send)
    assert sent == []
    status, _ = await api.call("GET", f"{CM}/cut")
    assert status == 404


async def test_scale_subresource(api: Api) -> None:
    await api.call("POST", DEPLOYMENTS, deployment(replicas=2))
    _, scale = await api.call("GET", f"{DEPLOYMENTS}/web/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    status, _ = await api.call(
        "PATCH",
        f"{DEPLOYMENTS}/web/scale",
        {"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    _, dep = await api.call("GET", f"{DEPLOYMENTS}/web")
    assert dep["spec"]["replicas"] == 5
    status, _ = await api.call(
        "PUT", f"{DEPLOYMENTS}/web/scale", {**scale, "spec": {"replicas": -1}}
    )
    assert status == 422
    status, _ = await api.call(
        "PATCH",
        f"{DEPLOYMENTS}/web/scale",
        {"spec": 3},
        content_type="application/merge-patch+json",
    )
    assert status == 422


async def test_dry_run_stores_nothing(api: Api) -> None:
    status, obj = await api.call("POST", CM, configmap("dry"), params={"dryRun": "All"})
    assert status == 201 and obj["metadata"]["name"] == "dry"
    status, _ = await api.call("GET", f"{CM}/dry")
    assert status == 404


async def test_finalizers_hold_deletion(api: Api) -> None:
    cm = configmap("held")
    cm["metadata"]["finalizers"] = ["example.com/hold"]
    await api.call("POST", CM, cm)
    status, marked = await api.call("DELETE", f"{CM}/held")
    assert status == 200 and marked["metadata"]["deletionTimestamp"]
    status, _ = await api.call("GET", f"{CM}/held")
    assert status == 200
    release = {"metadata": {"finalizers": None}}
    await api.call("PATCH", f"{CM}/held", release, content_type="application/merge-patch+json")
    status, _ = await api.call("GET", f"{CM}/held")
    assert status == 404


async def test_foreground_and_orphan_add_finalizers(api: Api) -> None:
    await api.call("POST", CM, configmap("fg"))
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    _, marked = await api.call("DELETE", f"{CM}/fg", options)
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
    await api.call("POST", CM, configmap("or"))
    _, marked = await api.call("DELETE", f"{CM}/or", params={"propagationPolicy": "Orphan"})
    assert marked["metadata"]["finalizers"] == ["orphan"]


async def test_delete_preconditions(api: Api) -> None:
    _, cm = await api.call("POST", CM, configmap("pre"))
    wrong = {"preconditions": {"uid": "not-the-uid"}}
    status, error = await api.call("DELETE", f"{CM}/pre", wrong)
    assert status == 409 and "Precondition failed" in error["message"]
    status, done = await api.call(
        "DELETE", f"{CM}/pre", {"preconditions": {"uid": cm["metadata"]["uid"]}}
    )
    assert status == 200 and done["status"] == "Success"


async def test_delete_options_of_the_wrong_type_are_a_bad_request(api: Api) -> None:
    await api.call("POST", CM, configmap("typed"))
    for options in (
        {"preconditions": "x"},
        {"preconditions": {"uid": 5}},
        {"gracePeriodSeconds": "30"},
        {"orphanDependents": "yes"},
    ):
        status, error = await api.call("DELETE", f"{CM}/typed", options)
        assert (status, error["reason"]) == (400, "BadRequest"), options
    status, _ = await api.call("GET", f"{CM}/typed")
    assert status == 200


async def test_concurrent_deletes_one_wins_the_other_is_not_found(api: Api) -> None:
    await api.call("POST", CM, configmap("twice"))
    results = await asyncio.gather(
        api.call("DELETE", f"{CM}/twice"), api.call("DELETE", f"{CM}/twice")
    )
    assert sorted(status for status, _ in results) == [200, 404]


async def test_namespace_termination(api: Api) -> None:
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    _, ns = await api.call("DELETE", "/api/v1/namespaces/doomed")
    assert ns["status"]["phase"] == "Terminating" and ns["spec"]["finalizers"] == ["kubernetes"]
    status, error = await api.call(
        "POST", "/api/v1/namespaces/doomed/configmaps", configmap("late")
    )
    assert status == 403 and "being terminated" in error["message"]
    ns["spec"]["finalizers"] = []
    status, _ = await api.call("PUT", "/api/v1/namespaces/doomed/finalize", ns)
    assert status == 200
    status, _ = await api.call("GET", "/api/v1/namespaces/doomed")
    assert status == 404


async def test_namespace_finalizers_change_only_through_finalize(api: Api) -> None:
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "kept"}})
    unfinalized = {"spec": {"finalizers": []}}
    _, patched = await api.call(
        "PATCH", "/api/v1/namespaces/kept", unfinalized, content_type="application/merge-patch+json"
    )
    assert patched["spec"]["finalizers"] == ["kubernetes"]
    _, deleting = await api.call("DELETE", "/api/v1/namespaces/kept")
    assert deleting["status"]["phase"] == "Terminating"


async def test_list_pages_and_selectors(api: Api) -> None:
    for i in range(7):
        cm = configmap(f"c{i}")
        cm["metadata"]["labels"] = {"parity": "even" if i % 2 == 0 else "odd"}
        await api.call("POST", CM, cm)
    _, page = await api.call("GET", CM, params={"limit": "3"})
    assert [i["metadata"]["name"] for i in page["items"]] == ["c0", "c1", "c2"]
    assert page["metadata"]["remainingItemCount"] == 4
    _, rest = await api.call(
        "GET", CM, params={"limit": "10", "continue": page["metadata"]["continue"]}
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c3", "c4", "c5", "c6"]
    assert "continue" not in rest["metadata"]
    _, odd = await api.call("GET", CM, params={"labelSelector": "parity=odd"})
    assert [i["metadata"]["name"] for i in odd["items"]] == ["c1", "c3", "c5"]
    _, one = await api.call("GET", CM, params={"fieldSelector": "metadata.name=c4"})
    assert [i["metadata"]["name"] for i in one["items"]] == ["c4"]
    status, error = await api.call("GET", CM, params={"fieldSelector": "spec.nodeName=x"})
    assert status == 400 and "field label not supported" in error["message"]
    _, everywhere = await api.call("GET", "/api/v1/configmaps")
    assert len(everywhere["items"]) == 7
    status, unlimited = await api.call("GET", CM, params={"limit": "-1"})
    assert status == 200 and len(unlimited["items"]) == 7


async def test_table_output(api: Api) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    await api.call("POST", "/api/v1/namespaces/default/pods", pod)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table = await api.call("GET", "/api/v1/namespaces/default/pods", accept=accept)
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:3] == ["p", "0/1", "Pending"]


async def test_delete_collection(api: Api) -> None:
    for name in ("x1", "x2", "y1"):
        cm = configmap(name)
        cm["metadata"]["labels"] = {"group": name[0]}
        await api.call("POST", CM, cm)
    status, _ = await api.call("DELETE", CM, params={"labelSelector": "group=x"})
    assert status == 200
    _, left = await api.call("GET", CM)
    assert [i["metadata"]["name"] for i in left["items"]] == ["y1"]


async def test_discovery_and_unknown_paths(api: Api) -> None:
    _, core = await api.call("GET", "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "namespaces/finalize", "configmaps"} <= names
    status, error = await api.call("GET", "/apis/nope.example.com/v1/things")
    assert status == 404 and error["kind"] == "Status"
    status, _ = await api.call("GET", "/healthz")
    assert status == 200


async def test_large_list_arrives_whole_and_in_order(api: Api) -> None:
    payload = "x" * 3000
    for i in range(300):
        await api.call("POST", CM, configmap(f"big-{i:03d}", blob=payload))
    response = await api.transport.request("GET", CM)
    assert int(response.headers["content-length"]) == len(response.body) > 900_000
    names = [i["metadata"]["name"] for i in orjson.loads(response.body)["items"]]
    assert names == [f"big-{i:03d}" for i in range(300)]


async def test_metrics_count_and_time_requests(api: Api) -> None:
    await api.call("POST", CM, configmap("measured"))
    await api.call("GET", f"{CM}/measured")
    await api.call("GET", f"{CM}/absent")
    status, text = await api.call("GET", "/metrics", accept="text/plain")
    assert status == 200
    body = text.decode() if isinstance(text, bytes) else str(text)
    common = 'group="",resource="configmaps"'
    created = f'apiserver_request_total{{code="201",{common},subresource="",verb="CREATE"}} 1.0'
    missing = f'apiserver_request_total{{code="404",{common},subresource="",verb="GET"}} 1.0'
    timed = (
        f'apiserver_request_duration_seconds_count{{{common},scope="resource",'
        'subresource="",verb="GET"} 2.0'
    )
    assert created in body and missing in body and timed in body


async def test_stale_scale_write_conflicts(api: Api) -> None:
    await api.call("POST", DEPLOYMENTS, deployment(replicas=1))
    _, scale = await api.call("GET", f"{DEPLOYMENTS}/web/scale")
    await api.call(
        "PATCH",
        f"{DEPLOYMENTS}/web",
        {"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    status, error = await api.call(
        "PUT", f"{DEPLOYMENTS}/web/scale", {**scale, "spec": {"replicas": 3}}
    )
    assert status == 409 and error["reason"] == "Conflict"
    _, dep = await api.call("GET", f"{DEPLOYMENTS}/web")
    assert dep["spec"]["replicas"] == 1


async def test_concurrent_applies_of_a_new_object_both_succeed(api: Api) -> None:
    params = {"fieldManager": "one"}
    body_one = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: raced}\ndata: {a: '1'}\n"
    body_two = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: raced}\ndata: {b: '2'}\n"
    first, second = await asyncio.gather(
        api.call(
            "PATCH",
            f"{CM}/raced",
            body_one,
            params=params,
            content_type="application/apply-patch+yaml",
        ),
        api.call(
            "PATCH",
            f"{CM}/raced",
            body_two,
            params={"fieldManager": "two"},
            content_type="application/apply-patch+yaml",
        ),
    )
    assert (first[0], second[0]) == (201, 200) or (first[0], second[0]) == (200, 201)
    _, stored = await api.call("GET", f"{CM}/raced")
    assert stored["data"] == {"a": "1", "b": "2"}


async def test_unknown_fields_of_built_in_kinds(api: Api) -> None:
    typo = deployment("typo")
    typo["spec"]["replicass"] = 3
    typo["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    status, error = await api.call("POST", DEPLOYMENTS, typo, params={"fieldValidation": "Strict"})
    assert status == 400
    assert 'unknown field "spec.replicass"' in error["message"]
    assert 'unknown field "spec.template.spec.containers[0].imagee"' in error["message"]
    response = await api.transport.request(
        "POST", DEPLOYMENTS, body=orjson.dumps(typo), headers={"content-type": "application/json"}
    )
    assert response.status == 201
    assert 'unknown field \\"spec.replicass\\"' in response.headers["warning"]
    stored = orjson.loads(response.body)
    assert "replicass" not in stored["spec"]
    assert "imagee" not in stored["spec"]["template"]["spec"]["containers"][0]
