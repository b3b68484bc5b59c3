"""OpenAPI documents: what kubectl 1.32 needs to validate, apply and explain."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from unistack.apiserver import builtin_schemas, kinds, openapi
from unistack.apiserver.resources import Registry, ResourceType, Scale

CRONTAB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}},
        },
    },
}
DEPLOYMENT_ITEM = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
GVK = "x-kubernetes-group-version-kind"


def _registry() -> Registry:
    registry = Registry()
    for rt in (
        ResourceType(
            "", "v1", "Pod", "pods", "pod", True, status_subresource=True,
            extra_subresources=("log", "exec", "eviction"),
        ),
        ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True),
        ResourceType("", "v1", "Service", "services", "service", True, status_subresource=True),
        ResourceType(
            "", "v1", "Namespace", "namespaces", "namespace", False, status_subresource=True,
            extra_subresources=("finalize",),
        ),
        ResourceType(
            "apps", "v1", "Deployment", "deployments", "deployment", True,
            status_subresource=True, scale=Scale(),
        ),
        ResourceType(
            "apiextensions.k8s.io", "v1", "CustomResourceDefinition",
            "customresourcedefinitions", "customresourcedefinition", False,
        ),
        ResourceType(
            "stable.example.com", "v1", "CronTab", "crontabs", "crontab", True,
            status_subresource=True, scale=Scale(), schema=CRONTAB_SCHEMA, custom=True,
        ),
    ):  # fmt: skip
        registry.add(rt)
    return registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return _registry()


def _doc(registry: Registry, group: str, version: str) -> dict[str, Any]:
    doc = openapi.v3_group_version(registry, group, version)
    assert doc is not None
    return doc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `allOf: [$ref]` and `$ref` to the schema they name."""
    if "allOf" in schema:
        schema = schema["allOf"][0]
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def _field(doc: dict[str, Any], schema_name: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][schema_name]
    for part in path.split("."):
        schema = _resolve(doc, schema)
        schema = schema["items"] if schema.get("type") == "array" else schema
        schema = _resolve(doc, schema)["properties"][part]
    return schema


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}


def test_index_lists_every_group_version_with_a_hash(registry: Registry) -> None:
    paths = openapi.v3_index(registry)["paths"]
    assert set(paths) == {
        "api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1", "apis/stable.example.com/v1",
    }  # fmt: skip
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=") and len(url.split("hash=")[1]) == 128


def test_index_hash_changes_only_with_the_document() -> None:
    registry = _registry()
    before = openapi.v3_index(registry)["paths"]
    registry.add(ResourceType("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True))
    after = openapi.v3_index(registry)["paths"]
    assert after["apis/apps/v1"] != before["apis/apps/v1"]
    assert after["api/v1"] == before["api/v1"]


def test_patch_operation_offers_field_validation_and_names_its_kind(registry: Registry) -> None:
    patch = _doc(registry, "apps", "v1")["paths"][DEPLOYMENT_ITEM]["patch"]
    assert patch[GVK] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert patch["x-kubernetes-action"] == "patch"
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= set(_query_parameters(patch))
    content = patch["requestBody"]["content"]
    assert "application/apply-patch+yaml" in content and "application/merge-patch+json" in content
    # Without merge keys in the schemas kubectl must use its compiled-in ones.
    assert "application/strategic-merge-patch+json" not in content


def test_collection_and_object_operations(registry: Registry) -> None:
    paths = _doc(registry, "apps", "v1")["paths"]
    collection = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert {"limit", "continue", "watch", "labelSelector"} <= set(
        _query_parameters(collection["get"])
    )
    assert {"fieldValidation", "fieldManager", "dryRun"} <= set(
        _query_parameters(collection["post"])
    )
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    item = paths[DEPLOYMENT_ITEM]
    assert {item[m]["x-kubernetes-action"] for m in ("get", "put", "delete", "patch")} == {
        "get", "put", "delete", "patch",
    }  # fmt: skip
    assert {p["name"] for p in item["parameters"] if p["in"] == "path"} == {"name", "namespace"}
    every = paths["/apis/apps/v1/deployments"]["get"]
    assert every["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    assert every[GVK]["kind"] == "Deployment"


def test_subresource_paths(registry: Registry) -> None:
    paths = _doc(registry, "apps", "v1")["paths"]
    scale = paths[DEPLOYMENT_ITEM + "/scale"]
    assert set(scale) == {"get", "put", "patch", "parameters"}
    assert scale["patch"][GVK] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "fieldValidation" in _query_parameters(scale["patch"])
    assert paths[DEPLOYMENT_ITEM + "/status"]["put"][GVK]["kind"] == "Deployment"
    core = _doc(registry, "", "v1")["paths"]
    finalize = core["/api/v1/namespaces/{name}/finalize"]
    assert set(finalize) == {"put", "parameters"}
    log = core["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert log["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "string"}
    assert "tailLines" in _query_parameters(log)
    assert core["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"][
        "x-kubernetes-action"
    ] == ("connect")
    eviction = core["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
    assert eviction[GVK] == {"group": "policy", "kind": "Eviction", "version": "v1"}


def test_kind_schemas_carry_their_group_version_kind(registry: Registry) -> None:
    schemas = _doc(registry, "apps", "v1")["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment[GVK] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert schemas["io.k8s.api.apps.v1.DeploymentList"][GVK][0]["kind"] == "DeploymentList"
    assert schemas["io.k8s.api.autoscaling.v1.Scale"][GVK][0]["group"] == "autoscaling"
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas
    assert "io.k8s.api.core.v1.PodTemplateSpec" in schemas  # core types keep their package
    core = _doc(registry, "", "v1")["components"]["schemas"]
    assert core["io.k8s.api.core.v1.ConfigMap"][GVK] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}
    ]


def test_deployment_schema_fields(registry: Registry) -> None:
    doc = _doc(registry, "apps", "v1")
    deployment = "io.k8s.api.apps.v1.Deployment"
    assert _field(doc, deployment, "spec.replicas")["type"] == "integer"
    assert _field(doc, deployment, "metadata.labels")["additionalProperties"] == {"type": "string"}
    containers = _field(doc, deployment, "spec.template.spec.containers")
    assert containers["type"] == "array"
    assert _field(doc, deployment, "spec.template.spec.containers.name")["type"] == "string"
    surge = _resolve(doc, _field(doc, deployment, "spec.strategy.rollingUpdate.maxSurge"))
    assert surge["x-kubernetes-int-or-string"] is True
    limits = _field(doc, deployment, "spec.template.spec.containers.resources.limits")
    assert _resolve(doc, limits["additionalProperties"])["x-kubernetes-int-or-string"] is True


def test_int_or_string_fields_of_core_kinds(registry: Registry) -> None:
    doc = _doc(registry, "", "v1")
    target_port = _field(doc, "io.k8s.api.core.v1.Service", "spec.ports.targetPort")
    assert _resolve(doc, target_port)["format"] == "int-or-string"
    probe_port = _field(doc, "io.k8s.api.core.v1.Pod", "spec.containers.livenessProbe.httpGet.port")
    assert _resolve(doc, probe_port)["x-kubernetes-int-or-string"] is True


def test_custom_kind_uses_its_crd_schema_with_standard_metadata(registry: Registry) -> None:
    doc = _doc(registry, "stable.example.com", "v1")
    schemas = doc["components"]["schemas"]
    crontab = schemas["com.example.stable.v1.CronTab"]
    assert crontab[GVK] == [{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]
    assert _field(doc, "com.example.stable.v1.CronTab", "spec.replicas")["type"] == "integer"
    assert _field(doc, "com.example.stable.v1.CronTab", "metadata.name")["type"] == "string"
    assert schemas["com.example.stable.v1.CronTabList"][GVK][0]["kind"] == "CronTabList"
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"][
        "patch"
    ]
    assert "fieldValidation" in _query_parameters(patch)
    assert patch[GVK]["kind"] == "CronTab"
    assert CRONTAB_SCHEMA["properties"].keys() == {"spec"}  # the declared schema is not changed


@pytest.mark.parametrize(
    ("group", "version"), [("", "v1"), ("apps", "v1"), ("apiextensions.k8s.io", "v1")]
)
def test_every_reference_resolves(registry: Registry, group: str, version: str) -> None:
    doc = _doc(registry, group, version)
    names = set(doc["components"]["schemas"])
    missing = {ref for ref in _refs(doc) if ref.removeprefix("#/components/schemas/") not in names}
    assert not missing


def test_v3_group_version_is_none_when_not_served(registry: Registry) -> None:
    assert openapi.v3_group_version(registry, "batch", "v1") is None


def test_documents_are_cached_per_generation() -> None:
    registry = _registry()
    doc = openapi.v3_group_version(registry, "apps", "v1")
    assert openapi.v3_group_version(registry, "apps", "v1") is doc
    registry.add(ResourceType("batch", "v1", "Job", "jobs", "job", True))
    assert openapi.v3_group_version(registry, "apps", "v1") is not doc


def test_swagger_v2_has_definitions_and_kind_extensions(registry: Registry) -> None:
    doc = openapi.v2(registry)
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions["io.k8s.api.apps.v1.Deployment"][GVK][0]["kind"] == "Deployment"
    assert definitions[builtin_schemas.INT_OR_STRING]["type"] == "string"
    assert "oneOf" not in definitions[builtin_schemas.QUANTITY]
    patch = doc["paths"][DEPLOYMENT_ITEM]["patch"]
    assert patch[GVK]["kind"] == "Deployment"
    parameters = {p["name"]: p for p in patch["parameters"]}
    assert parameters["fieldValidation"]["type"] == "string"
    assert parameters["body"]["in"] == "body"
    assert "application/apply-patch+yaml" in patch["consumes"]
    missing = {r for r in _refs(doc) if r.removeprefix("#/definitions/") not in definitions}
    assert not missing


def test_swagger_v2_keeps_schema_properties_named_like_keywords(registry: Registry) -> None:
    props = openapi.v2(registry)["definitions"][
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
    ]["properties"]
    assert {"$ref", "oneOf", "anyOf", "not", "nullable"} <= set(props)


def test_every_builtin_kind_has_a_client_schema_and_a_validating_patch() -> None:
    registry = Registry()
    kinds.register_builtins(registry)
    for rt in registry:
        doc = _doc(registry, rt.group, rt.version)
        schema = doc["components"]["schemas"][
            builtin_schemas.kind_name(rt.group, rt.version, rt.kind)
        ]
        assert schema[GVK] == [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
        assert "x-kubernetes-preserve-unknown-fields" not in schema, rt.kind  # not the fallback
        patches = [
            item["patch"]
            for item in doc["paths"].values()
            if item.get("patch", {}).get(GVK, {}).get("kind") == rt.kind
        ]
        if "patch" in rt.verbs:  # create-only kinds (access reviews) have no PATCH
            assert patches and all("fieldValidation" in _query_parameters(p) for p in patches)
        else:
            assert not patches
        names = set(doc["components"]["schemas"])
        assert all(r.removeprefix("#/components/schemas/") in names for r in _refs(doc))


@pytest.fixture
def without_client_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    caches = [
        builtin_schemas._models, builtin_schemas.kind_schemas, builtin_schemas.common_schemas,
        builtin_schemas._core_classes,
    ]  # fmt: skip
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setitem(sys.modules, "kubernetes.client.models", None)
    yield
    monkeypatch.undo()
    for cache in caches:
        cache.cache_clear()


@pytest.mark.usefixtures("without_client_models")
def test_without_the_client_package_kinds_get_open_schemas() -> None:
    registry = _registry()
    doc = _doc(registry, "apps", "v1")
    deployment = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-preserve-unknown-fields"] is True
    assert deployment[GVK][0]["kind"] == "Deployment"
    assert "fieldValidation" in _query_parameters(doc["paths"][DEPLOYMENT_ITEM]["patch"])
    names = set(doc["components"]["schemas"])
    assert all(r.removeprefix("#/components/schemas/") in names for r in _refs(doc))
