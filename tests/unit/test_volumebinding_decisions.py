"""The volume binder's decisions (`decide_claim`, `decide_volume` and matching), without I/O."""

from __future__ import annotations

from typing import Any

from unistack.kube.volumebinding import (
    NO_VOLUMES,
    BindClaim,
    DeleteVolume,
    ReportPending,
    SetVolumePhase,
    claim_ref,
    decide_claim,
    decide_volume,
)

Obj = dict[str, Any]


def volume(name: str, size: str = "1Gi", **spec: Any) -> Obj:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Filesystem",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/data/{name}"},
            **spec,
        },
        "status": {"phase": "Available"},
    }


def claim(size: str = "1Gi", **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default", "uid": "claim-uid"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "volumeMode": "Filesystem",
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def by_name(*volumes: Obj) -> dict[str, Obj]:
    return {v["metadata"]["name"]: v for v in volumes}


def test_the_smallest_volume_that_fits_is_chosen() -> None:
    volumes = by_name(volume("small", "1Gi"), volume("big", "10Gi"), volume("mid", "5Gi"))
    assert decide_claim(claim("2Gi"), volumes) == [BindClaim("mid")]


def test_nothing_fits_a_claim_too_big() -> None:
    assert decide_claim(claim("20Gi"), by_name(volume("small"))) == [ReportPending(NO_VOLUMES)]


def test_storage_class_must_match_and_unset_matches_empty() -> None:
    volumes = by_name(volume("fast", storageClassName="fast"), volume("plain"))
    assert decide_claim(claim(), volumes) == [BindClaim("plain")]
    assert decide_claim(claim(storageClassName="fast"), volumes) == [BindClaim("fast")]
    assert decide_claim(claim(storageClassName="slow"), volumes) == [ReportPending(NO_VOLUMES)]


def test_volume_mode_must_match() -> None:
    volumes = by_name(volume("block", volumeMode="Block"))
    assert decide_claim(claim(), volumes) == [ReportPending(NO_VOLUMES)]
    assert decide_claim(claim(volumeMode="Block"), volumes) == [BindClaim("block")]


def test_access_modes_must_be_a_superset_of_the_claims() -> None:
    volumes = by_name(volume("rwo"), volume("rwx", accessModes=["ReadWriteOnce", "ReadWriteMany"]))
    assert decide_claim(claim(accessModes=["ReadWriteMany"]), volumes) == [BindClaim("rwx")]
    only_rwo = by_name(volume("rwo"))
    wanted = claim(accessModes=["ReadWriteMany"])
    assert decide_claim(wanted, only_rwo) == [ReportPending(NO_VOLUMES)]


def test_the_selector_must_match_the_volume_labels() -> None:
    volumes = by_name(volume("a", "1Gi"), volume("b", "5Gi", labels={"tier": "gold"}))
    selector = {"matchLabels": {"tier": "gold"}}
    assert decide_claim(claim(selector=selector), volumes) == [BindClaim("b")]
    expression = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}]}
    assert decide_claim(claim(selector=expression), volumes) == [ReportPending(NO_VOLUMES)]


def test_a_volume_pre_bound_to_another_claim_is_skipped() -> None:
    other = {"namespace": "default", "name": "other"}
    volumes = by_name(volume("taken", claimRef=other), volume("free", "5Gi"))
    assert decide_claim(claim(), volumes) == [BindClaim("free")]


def test_a_volume_pre_bound_to_the_claim_is_preferred() -> None:
    mine = {"namespace": "default", "name": "data"}
    volumes = by_name(volume("mine", "5Gi", claimRef=mine), volume("free", "1Gi"))
    assert decide_claim(claim(), volumes) == [BindClaim("mine")]


def test_a_claim_naming_its_volume_binds_to_it_when_it_fits() -> None:
    volumes = by_name(volume("small"), volume("named", "5Gi"))
    assert decide_claim(claim(volumeName="named"), volumes) == [BindClaim("named")]
    too_small = decide_claim(claim("2Gi", volumeName="small"), volumes)
    assert too_small == [ReportPending("volume 'small' does not satisfy the claim")]
    missing = decide_claim(claim(volumeName="gone"), volumes)
    assert missing == [ReportPending("volume 'gone' not found")]


def test_a_claim_naming_a_volume_bound_elsewhere_waits() -> None:
    other = {"namespace": "default", "name": "other", "uid": "other-uid"}
    volumes = by_name(volume("named", claimRef=other))
    actions = decide_claim(claim(volumeName="named"), volumes)
    assert actions == [ReportPending("volume 'named' already bound to a different claim")]


def test_a_claim_bound_both_ways_needs_nothing() -> None:
    pvc = claim(volumeName="pv")
    pvc["metadata"]["annotations"] = {"pv.kubernetes.io/bind-completed": "yes"}
    pvc["status"] = {"phase": "Bound"}
    pv = volume("pv", claimRef=claim_ref(pvc))
    pv["status"] = {"phase": "Bound"}
    assert decide_claim(pvc, by_name(pv)) == []


def test_a_new_volume_becomes_available() -> None:
    pv = volume("pv")
    pv["status"] = {"phase": "Pending"}
    assert decide_volume(pv, {}) == [SetVolumePhase("Available")]
    assert decide_volume(volume("pv"), {}) == []


def test_a_volume_whose_claim_is_gone_is_released_when_retained() -> None:
    pv = volume("pv", claimRef=claim_ref(claim()))
    pv["status"] = {"phase": "Bound"}
    assert decide_volume(pv, {"default/data": claim()}) == []
    assert decide_volume(pv, {}) == [SetVolumePhase("Released")]
    pv["status"] = {"phase": "Released"}
    assert decide_volume(pv, {}) == []


def test_a_volume_whose_claim_is_gone_is_deleted_when_its_policy_says_so() -> None:
    pv = volume("pv", claimRef=claim_ref(claim()), persistentVolumeReclaimPolicy="Delete")
    assert decide_volume(pv, {}) == [DeleteVolume()]


def test_a_claim_recreated_under_the_same_name_does_not_keep_the_volume() -> None:
    pv = volume("pv", claimRef=claim_ref(claim()))
    recreated = claim()
    recreated["metadata"]["uid"] = "new-uid"
    assert decide_volume(pv, {"default/data": recreated}) == [SetVolumePhase("Released")]
