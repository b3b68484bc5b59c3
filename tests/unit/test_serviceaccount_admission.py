"""ServiceAccount admission's pure parts: which pods automount, and the volume and mounts
it adds (`unistack.apiserver.serviceaccount_admission`)."""

from __future__ import annotations

from typing import Any

from unistack.apiserver.serviceaccount_admission import (
    MOUNT_PATH,
    add_token_volume,
    automounts,
    is_mirror_pod,
    token_volume,
)

Obj = dict[str, Any]
MOUNT = {"name": "kube-api-access-x2b4z", "readOnly": True, "mountPath": MOUNT_PATH}


def spec(*containers: Obj, init: tuple[Obj, ...] = (), volumes: list[Obj] | None = None) -> Obj:
    found: Obj = {"containers": list(containers)}
    if init:
        found["initContainers"] = list(init)
    if volumes is not None:
        found["volumes"] = volumes
    return found


def test_the_volume_is_upstreams_projection_of_token_ca_and_namespace() -> None:
    assert token_volume("kube-api-access-x2b4z") == {
        "name": "kube-api-access-x2b4z",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def test_every_init_and_app_container_mounts_it_and_the_volume_is_added_once() -> None:
    data = {"name": "data", "mountPath": "/data"}
    pod = spec(
        {"name": "app", "volumeMounts": [data]},
        {"name": "side"},
        init=({"name": "setup"},),
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    add_token_volume(pod, "kube-api-access-x2b4z")
    assert pod["containers"][0]["volumeMounts"] == [data, MOUNT]
    assert pod["containers"][1]["volumeMounts"] == [MOUNT]
    assert pod["initContainers"][0]["volumeMounts"] == [MOUNT]
    assert pod["volumes"] == [{"name": "data", "emptyDir": {}}, token_volume(MOUNT["name"])]


def test_a_container_mounting_the_path_already_keeps_its_own() -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    pod = spec({"name": "app", "volumeMounts": [own]}, volumes=[{"name": "mine", "secret": {}}])
    add_token_volume(pod, "kube-api-access-x2b4z")
    assert pod["containers"][0]["volumeMounts"] == [own]
    assert pod["volumes"] == [{"name": "mine", "secret": {}}]  # nobody needs the token volume


def test_only_the_containers_without_their_own_mount_get_it() -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    pod = spec({"name": "a", "volumeMounts": [own]}, {"name": "b"})
    add_token_volume(pod, "kube-api-access-x2b4z")
    assert pod["containers"][0]["volumeMounts"] == [own]
    assert pod["containers"][1]["volumeMounts"] == [MOUNT]
    assert pod["volumes"] == [token_volume(MOUNT["name"])]


def test_an_existing_kube_api_access_volume_is_reused() -> None:
    existing = token_volume("kube-api-access-aaaaa")
    pod = spec({"name": "app"}, volumes=[existing])
    add_token_volume(pod, "kube-api-access-x2b4z")
    assert pod["containers"][0]["volumeMounts"] == [{**MOUNT, "name": "kube-api-access-aaaaa"}]
    assert pod["volumes"] == [existing]


def test_the_pod_decides_automounting_then_its_service_account_then_yes() -> None:
    opted_out = {"automountServiceAccountToken": False}
    opted_in = {"automountServiceAccountToken": True}
    assert automounts({}, None)
    assert automounts({}, {"metadata": {"name": "default"}})
    assert not automounts({}, opted_out)
    assert not automounts(opted_out, None)
    assert not automounts(opted_out, opted_in)
    assert automounts(opted_in, opted_out)


def test_mirror_pods_are_told_by_their_annotation() -> None:
    mirror = {"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}}
    assert is_mirror_pod(mirror)
    assert not is_mirror_pod({"metadata": {"annotations": {"other": "x"}}})
    assert not is_mirror_pod({"metadata": {}})
