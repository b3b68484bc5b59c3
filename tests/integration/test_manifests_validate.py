"""`unistack manifests` output against the in-process API server: the CRDs are created for real,
every other object goes through a strict server-side dry run and is checked against the schema
the server publishes under `/openapi/v3` for its group-version (with `jsonschema`)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tests.integration.conftest import Api
from unistack.client.resources import parse_resource_list, split_api_version
from unistack.controlplane import kind, manifests

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed in .venv")

Obj = dict[str, Any]
OPTIONS = manifests.Options("2.1.0", "small", registry="registry.example:5000")
STRICT_DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}


def _objects() -> list[Obj]:
    return manifests.manifests(OPTIONS, manifests.Credentials("pw", (b"k0", b"k1")))


def _group_version_path(api_version: str) -> str:
    group, version = split_api_version(api_version)
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


async def _served(api: Api, api_version: str) -> dict[str, tuple[str, bool]]:
    """kind -> (plural, namespaced) in one group-version; empty when it is not served."""
    status, document = await api.call("GET", _group_version_path(api_version))
    if status != 200:
        return {}
    return {r.ref.kind: (r.ref.plural, r.ref.namespaced) for r in parse_resource_list(document)}


async def _collection(api: Api, obj: Obj) -> str | None:
    found = (await _served(api, obj["apiVersion"])).get(obj["kind"])
    if found is None:
        return None
    plural, namespaced = found
    path = _group_version_path(obj["apiVersion"])
    if namespaced:
        path += f"/namespaces/{obj['metadata']['namespace']}"
    return f"{path}/{plural}"


async def _install(api: Api, objects: list[Obj]) -> list[Obj]:
    """Create the CRDs and the Namespace for real (what the rest needs); return the rest."""
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        status, body = await api.call(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        )
        assert status == 201, body
    for crd in crds:
        spec = crd["spec"]
        group_version = f"{spec['group']}/{spec['versions'][0]['name']}"
        for _ in range(200):
            if spec["names"]["kind"] in await _served(api, group_version):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail(f"{crd['metadata']['name']} is not served")
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    status, body = await api.call("POST", "/api/v1/namespaces", namespace)
    assert status == 201, body
    return [o for o in objects if o["kind"] not in ("CustomResourceDefinition", "Namespace")]


async def _dry_run(api: Api, obj: Obj) -> tuple[int, Any]:
    path = await _collection(api, obj)
    assert path is not None, f"{obj['apiVersion']} {obj['kind']} is not served"
    return await api.call("POST", path, obj, params=STRICT_DRY_RUN)


class Schemas:
    """The schema of each kind, from the served OpenAPI v3 document of its group-version."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.documents: dict[str, Obj] = {}

    async def validator(self, obj: Obj) -> Any:
        document = await self._document(obj["apiVersion"])
        name = _schema_named(document, obj["apiVersion"], obj["kind"])
        root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        return jsonschema.Draft202012Validator(root)

    async def _document(self, api_version: str) -> Obj:
        key = _group_version_path(api_version).lstrip("/")
        if key not in self.documents:
            status, index = await self.api.call("GET", "/openapi/v3")
            assert status == 200 and key in index["paths"], (key, list(index["paths"]))
            status, document = await self.api.call("GET", f"/openapi/v3/{key}")
            assert status == 200
            self.documents[key] = document
        return self.documents[key]


def _schema_named(document: Obj, api_version: str, kind_name: str) -> str:
    group, version = split_api_version(api_version)
    wanted = {"group": group, "version": version, "kind": kind_name}
    for name, schema in document["components"]["schemas"].items():
        if wanted in schema.get("x-kubernetes-group-version-kind", []):
            return str(name)
    raise AssertionError(f"no schema for {api_version} {kind_name}")


def _errors(validator: Any, obj: Obj) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


# --- the real output ---------------------------------------------------------------------------


async def test_every_object_passes_a_strict_server_side_dry_run(api: Api) -> None:
    rest = await _install(api, _objects())
    for obj in rest:  # every kind is served, the RBAC kinds too
        status, body = await _dry_run(api, obj)
        assert status in (200, 201), (obj["kind"], obj["metadata"]["name"], body)
        assert not body.get("warnings"), body
    # a dry run stores nothing
    path = await _collection(api, rest[-1])
    status, _ = await api.call("GET", f"{path}/{rest[-1]['metadata']['name']}")
    assert status == 404


async def test_every_object_matches_its_served_openapi_schema(api: Api) -> None:
    objects = _objects()
    await _install(api, objects)
    schemas = Schemas(api)
    checked = set()
    for obj in objects:
        validator = await schemas.validator(obj)
        assert _errors(validator, obj) == [], (obj["kind"], obj["metadata"]["name"])
        checked.add(obj["kind"])
    assert {"CustomResourceDefinition", "ControlPlane", "Deployment", "DaemonSet"} <= checked
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret"} <= checked
    assert "apis/controlplane.unistack.io/v1alpha1" in schemas.documents


# --- a test that can fail: wrong objects are rejected ---------------------------------------


def _one(objects: list[Obj], kind_name: str, name: str) -> Obj:
    return copy.deepcopy(
        next(o for o in objects if o["kind"] == kind_name and o["metadata"]["name"] == name)
    )


async def test_an_unknown_field_fails_the_strict_dry_run(api: Api) -> None:
    objects = _objects()
    await _install(api, objects)
    wrong = _one(objects, "Deployment", manifests.CONTROLLERS)
    wrong["spec"]["replicass"] = 2
    status, body = await _dry_run(api, wrong)
    assert status >= 400 and "replicass" in body["message"], body
    wrong = _one(objects, "DaemonSet", manifests.AGENT)
    wrong["spec"]["template"]["spec"]["hostNetwrk"] = True
    status, body = await _dry_run(api, wrong)
    assert status >= 400 and "hostNetwrk" in body["message"], body


async def test_wrong_types_fail_the_dry_run_and_the_schema(api: Api) -> None:
    objects = _objects()
    await _install(api, objects)
    schemas = Schemas(api)
    wrong = _one(objects, "Deployment", manifests.GATEWAY)
    wrong["spec"]["replicas"] = "two"
    status, body = await _dry_run(api, wrong)
    assert status >= 400, body
    assert any("spec.replicas" in e for e in _errors(await schemas.validator(wrong), wrong))


async def test_a_bad_controlplane_fails_its_crd_schema(api: Api) -> None:
    objects = _objects()
    await _install(api, objects)
    wrong = _one(objects, kind.KIND, kind.NAME)
    wrong["spec"]["size"] = "huge"
    status, body = await _dry_run(api, wrong)
    assert status == 422 and body["reason"] == "Invalid", body
    errors = _errors(await Schemas(api).validator(wrong), wrong)
    assert any(e.startswith("spec.size") for e in errors), errors


async def test_a_bad_cluster_role_fails_the_dry_run_and_the_schema(api: Api) -> None:
    objects = _objects()
    await _install(api, objects)
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    wrong = {**role, "rules": [{"apiGroups": "", "resources": ["pods"], "verbs": ["get"]}]}
    validator = await Schemas(api).validator(wrong)
    assert _errors(validator, role) == []
    assert any(e.startswith("rules.0.apiGroups") for e in _errors(validator, wrong))
    status, body = await _dry_run(api, {**role, "rules": [{"resources": ["pods"]}]})
    assert status == 422 and "rules[0].verbs" in body["message"], body
