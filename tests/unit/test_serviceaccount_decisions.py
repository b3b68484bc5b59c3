"""The ServiceAccount controller's and root CA publisher's decisions, without I/O."""

from __future__ import annotations

from typing import Any

from unistack.kube.serviceaccounts import (
    DESCRIPTION,
    DESCRIPTION_ANNOTATION,
    CreateConfigMap,
    ReplaceConfigMap,
    decide_root_ca,
    missing_service_account,
)

Obj = dict[str, Any]
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def namespace(*, deleting: bool = False, phase: str = "Active") -> Obj:
    meta: Obj = {"name": "team"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


def published(data: Obj, annotations: Obj | None = None) -> Obj:
    meta = {"name": "kube-root-ca.crt", "namespace": "team", "resourceVersion": "7"}
    return {"metadata": {**meta, "annotations": annotations}, "data": data}


def test_an_open_namespace_without_default_gets_one() -> None:
    assert missing_service_account(namespace(), None) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "team"},
    }


def test_no_service_account_where_one_exists_or_the_namespace_is_closing() -> None:
    existing = {"metadata": {"name": "default", "namespace": "team"}}
    assert missing_service_account(namespace(), existing) is None
    assert missing_service_account(namespace(deleting=True), None) is None
    assert missing_service_account(namespace(phase="Terminating"), None) is None
    assert missing_service_account(None, None) is None


def test_a_missing_root_ca_is_created_with_its_description() -> None:
    action = decide_root_ca(namespace(), None, CA)
    assert action == CreateConfigMap(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "kube-root-ca.crt",
                "namespace": "team",
                "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
            },
            "data": {"ca.crt": CA},
        }
    )


def test_a_correct_root_ca_is_left_alone() -> None:
    current = published({"ca.crt": CA}, {DESCRIPTION_ANNOTATION: DESCRIPTION})
    assert decide_root_ca(namespace(), current, CA) is None


def test_edited_data_is_put_back_keeping_other_annotations() -> None:
    edited = published(
        {"ca.crt": "mine", "extra": "x"}, {"owner": "me", DESCRIPTION_ANNOTATION: "changed"}
    )
    action = decide_root_ca(namespace(), edited, CA)
    assert isinstance(action, ReplaceConfigMap)
    assert action.config_map["data"] == {"ca.crt": CA}
    assert action.config_map["metadata"]["annotations"] == {
        "owner": "me",
        DESCRIPTION_ANNOTATION: DESCRIPTION,  # rewritten with the data, as upstream
    }
    assert action.config_map["metadata"]["resourceVersion"] == "7"  # the PUT is guarded
    assert edited["data"] == {"ca.crt": "mine", "extra": "x"}  # the cached object is untouched


def test_a_missing_description_is_put_back() -> None:
    action = decide_root_ca(namespace(), published({"ca.crt": CA}), CA)
    assert isinstance(action, ReplaceConfigMap)
    assert action.config_map["metadata"]["annotations"] == {DESCRIPTION_ANNOTATION: DESCRIPTION}


def test_nothing_is_published_into_a_closing_namespace() -> None:
    assert decide_root_ca(namespace(deleting=True), None, CA) is None
    assert decide_root_ca(None, None, CA) is None
