"""ServiceAccount admission through the real API server, in-process: a new Pod gets the
`kube-api-access-*` volume and its mounts unless it or its ServiceAccount opts out or it is
a mirror pod; a Pod naming a ServiceAccount that does not exist is refused, except
`default`; the system namespaces start with their `default` ServiceAccount."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.conftest import Api
from unistack.apiserver.serviceaccount_admission import MOUNT_PATH, token_volume

Obj = dict[str, Any]
VOLUME_NAME = re.compile(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}")


def pod(name: str, spec: Obj | None = None, annotations: Obj | None = None) -> Obj:
    meta: Obj = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    containers = [{"name": "app", "image": "busybox"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": containers, **(spec or {})}}  # fmt: skip


async def create_pod(api: Api, body: Obj, namespace: str = "default") -> tuple[int, Obj]:
    status, created = await api.call("POST", f"/api/v1/namespaces/{namespace}/pods", body)
    return status, created


async def create_account(api: Api, name: str, namespace: str = "default", **fields: Any) -> None:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}, **fields}
    status, _ = await api.call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body)
    assert status == 201


def token_volumes(created: Obj) -> list[Obj]:
    return [v for v in created["spec"].get("volumes") or [] if "projected" in v]


async def test_a_pod_gets_the_api_access_volume_in_every_container(api: Api) -> None:
    body = pod("web", {"initContainers": [{"name": "setup", "image": "busybox"}]})
    status, created = await create_pod(api, body)
    assert status == 201
    spec = created["spec"]
    assert spec["serviceAccountName"] == "default"
    [volume] = spec["volumes"]
    assert VOLUME_NAME.fullmatch(volume["name"])
    assert volume == token_volume(volume["name"])
    mount = {"name": volume["name"], "readOnly": True, "mountPath": MOUNT_PATH}
    assert spec["containers"][0]["volumeMounts"] == [mount]
    assert spec["initContainers"][0]["volumeMounts"] == [mount]

    patch = {"metadata": {"labels": {"tier": "web"}}}
    status, patched = await api.call(
        "PATCH", "/api/v1/namespaces/default/pods/web", patch,
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert status == 200 and patched["spec"]["volumes"] == [volume]  # injected once, on create


async def test_a_missing_service_account_is_forbidden_but_default_is_not(api: Api) -> None:
    status, error = await create_pod(api, pod("robot-pod", {"serviceAccountName": "robot"}))
    assert status == 403
    assert error["reason"] == "Forbidden"
    assert error["message"] == (
        'pods "robot-pod" is forbidden: error looking up service account default/robot: '
        'serviceaccount "robot" not found'
    )
    status, _ = await api.call("GET", "/api/v1/namespaces/default/pods/robot-pod")
    assert status == 404

    await create_account(api, "robot")
    status, created = await create_pod(api, pod("robot-pod", {"serviceAccountName": "robot"}))
    assert status == 201 and len(token_volumes(created)) == 1

    # a namespace just made, before any controller gave it its `default`: admitted
    status, _ = await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "fresh"}})
    assert status == 201
    status, created = await create_pod(api, pod("early"), namespace="fresh")
    assert status == 201 and len(token_volumes(created)) == 1


async def test_automounting_is_the_pods_choice_then_its_service_accounts(api: Api) -> None:
    await create_account(api, "quiet", automountServiceAccountToken=False)
    status, created = await create_pod(api, pod("quiet-pod", {"serviceAccountName": "quiet"}))
    assert status == 201 and not token_volumes(created)
    assert "volumeMounts" not in created["spec"]["containers"][0]

    wants = {"serviceAccountName": "quiet", "automountServiceAccountToken": True}
    status, created = await create_pod(api, pod("wants-it", wants))
    assert status == 201 and len(token_volumes(created)) == 1

    status, created = await create_pod(
        api, pod("opted-out", {"automountServiceAccountToken": False})
    )
    assert status == 201 and not token_volumes(created)


async def test_mirror_pods_and_pods_mounting_the_path_themselves_get_nothing(api: Api) -> None:
    mirror = pod("static-web", annotations={"kubernetes.io/config.mirror": "hash"})
    status, created = await create_pod(api, mirror)
    assert status == 201 and not token_volumes(created)

    own = {
        "volumes": [{"name": "creds", "emptyDir": {}}],
        "containers": [
            {"name": "app", "image": "busybox",
             "volumeMounts": [{"name": "creds", "mountPath": MOUNT_PATH}]}
        ],
    }  # fmt: skip
    status, created = await create_pod(api, pod("own-creds", own))
    assert status == 201
    assert [v["name"] for v in created["spec"]["volumes"]] == ["creds"]


async def test_the_system_namespaces_start_with_their_default_service_account(api: Api) -> None:
    for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
        status, account = await api.call(
            "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
        )
        assert status == 200, namespace
        assert account["metadata"]["namespace"] == namespace
