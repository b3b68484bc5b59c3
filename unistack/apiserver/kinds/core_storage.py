"""PersistentVolume and PersistentVolumeClaim: columns, defaulting and validation.

Columns follow upstream's `printPersistentVolume` and `printPersistentVolumeClaim` (access
modes abbreviated to RWO/ROX/RWX/RWOP, the storage class read from the beta annotation first).
`default_claim` and `check_claim_spec` are also used for a StatefulSet's
`volumeClaimTemplates` (see `apps`).
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver.errors import (
    FieldError,
    forbidden_field,
    invalid_field,
    required_field,
    unsupported_field,
)
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_enum, check_immutable, problems_at
from unistack.apiserver.kinds.objects import Obj, dict_of, dig, ensure_dict, list_of, set_default
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import dns1123_subdomain_errors, validate_label_selector_spec
from unistack.quantity import FORMAT_ERROR, QuantityError, parse_quantity

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
_ABBREVIATIONS = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)
_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
PV_SOURCES = frozenset(
    {
        "gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd",
        "iscsi", "cinder", "cephfs", "fc", "flocker", "flexVolume", "azureFile",
        "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume",
        "scaleIO", "local", "storageos", "csi",
    }
)  # fmt: skip
_REQUIRED_SOURCE_FIELDS = {
    "hostPath": ("path",),
    "local": ("path",),
    "nfs": ("server", "path"),
    "csi": ("driver", "volumeHandle"),
}
CLAIM_UPDATE_FORBIDDEN = (
    "spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)


def access_modes_text(modes: Any) -> str:
    present = set(m for m in list_of(modes) if isinstance(m, str))
    return ",".join(short for mode, short in _ABBREVIATIONS if mode in present)


def _storage_class(obj: Obj) -> str:
    annotation = dig(obj, "metadata", "annotations", _CLASS_ANNOTATION)
    if isinstance(annotation, str):
        return annotation
    return str(dig(obj, "spec", "storageClassName") or "")


def _phase_or_terminating(obj: Obj) -> str:
    if dig(obj, "metadata", "deletionTimestamp") is not None:
        return "Terminating"
    return str(dig(obj, "status", "phase") or "")


def _claim_ref(volume: Obj) -> str:
    ref = dig(volume, "spec", "claimRef")
    if not isinstance(ref, dict):
        return ""
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}"


def _claim_capacity(claim: Obj) -> str:
    if not dig(claim, "spec", "volumeName"):
        return ""
    return str(dig(claim, "status", "capacity", "storage") or "")


def _claim_access_modes(claim: Obj) -> str:
    if not dig(claim, "spec", "volumeName"):
        return ""
    return access_modes_text(dig(claim, "status", "accessModes"))


_UNSET = "<unset>"
_ATTRIBUTES_CLASS = Column(
    "VolumeAttributesClass",
    cells.text_at("spec", "volumeAttributesClassName", default=_UNSET),
    description="VolumeAttributesClass of the volume.",
)
_VOLUME_MODE = Column(
    "VolumeMode",
    cells.text_at("spec", "volumeMode", default=_UNSET),
    priority=1,
    description="Whether the volume is a filesystem or a raw block device.",
)

PV_COLUMNS = (
    Column("Capacity", cells.text_at("spec", "capacity", "storage"), description="The size."),
    Column(
        "Access Modes",
        lambda pv: access_modes_text(dig(pv, "spec", "accessModes")),
        description="The ways the volume can be mounted.",
    ),
    Column(
        "Reclaim Policy",
        cells.text_at("spec", "persistentVolumeReclaimPolicy"),
        description="What happens to the volume when its claim is released.",
    ),
    Column("Status", _phase_or_terminating, description="The phase of the volume."),
    Column("Claim", _claim_ref, description="The claim bound to the volume."),
    Column("StorageClass", _storage_class, description="StorageClass of the pv."),
    _ATTRIBUTES_CLASS,
    Column("Reason", cells.text_at("status", "reason"), description="Why the volume failed."),
    cells.AGE_COLUMN,
    _VOLUME_MODE,
)

PVC_COLUMNS = (
    Column("Status", _phase_or_terminating, description="The phase of the claim."),
    Column("Volume", cells.text_at("spec", "volumeName"), description="The bound volume."),
    Column("Capacity", _claim_capacity, description="The size of the bound volume."),
    Column("Access Modes", _claim_access_modes, description="The bound volume's access modes."),
    Column("StorageClass", _storage_class, description="StorageClass of the pvc."),
    _ATTRIBUTES_CLASS,
    cells.AGE_COLUMN,
    _VOLUME_MODE,
)


def default_volume(volume: Obj) -> None:
    spec = ensure_dict(volume, "spec")
    if spec is not None:
        set_default(spec, "persistentVolumeReclaimPolicy", "Retain")
        set_default(spec, "volumeMode", "Filesystem")
        host_path = spec.get("hostPath")
        if isinstance(host_path, dict) and host_path.get("type") is None:
            host_path["type"] = ""
    status = ensure_dict(volume, "status")
    if status is not None:
        set_default(status, "phase", "Pending")


def default_claim(claim: Obj) -> None:
    spec = ensure_dict(claim, "spec")
    if spec is not None:
        set_default(spec, "volumeMode", "Filesystem")
    status = ensure_dict(claim, "status")
    if status is not None:
        set_default(status, "phase", "Pending")


def check_access_modes(modes: Any, field: str, *, required_detail: str = "") -> list[FieldError]:
    if not modes:
        return [required_field(field, required_detail)]
    errs: list[FieldError] = []
    for mode in list_of(modes):
        if mode not in ACCESS_MODES:
            errs.append(unsupported_field(field, mode, list(ACCESS_MODES)))
    if "ReadWriteOncePod" in list_of(modes) and len(list_of(modes)) > 1:
        errs.append(forbidden_field(field, "may not use ReadWriteOncePod with other access modes"))
    return errs


def check_positive_quantity(field: str, value: Any) -> list[FieldError]:
    try:
        amount = parse_quantity(value)
    except QuantityError:
        return [invalid_field(field, value, FORMAT_ERROR)]
    if amount <= 0:
        return [invalid_field(field, value, "must be greater than zero")]
    return []


def validate_volume(volume: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(volume.get("spec"))
    errs = check_access_modes(spec.get("accessModes"), "spec.accessModes")
    errs += _check_capacity(spec.get("capacity"), "spec.capacity")
    policy = spec.get("persistentVolumeReclaimPolicy")
    errs += check_enum("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES)
    errs += check_enum("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES, required=False)
    errs += _check_volume_source(spec)
    if old is not None:
        errs += _check_volume_update(spec, dict_of(old.get("spec")))
    return errs


def _check_capacity(capacity: Any, field: str) -> list[FieldError]:
    if not capacity:
        return [required_field(field)]
    capacity = dict_of(capacity)
    if "storage" not in capacity or len(capacity) > 1:
        return [unsupported_field(field, capacity, ["storage"])]
    return check_positive_quantity(f"{field}[storage]", capacity["storage"])


def _check_volume_source(spec: Obj) -> list[FieldError]:
    sources = [key for key in spec if key in PV_SOURCES]
    if not sources:
        return [required_field("spec", "must specify a volume type")]
    errs = [
        forbidden_field(f"spec.{key}", "may not specify more than 1 volume type")
        for key in sources[1:]
    ]
    source = dict_of(spec[sources[0]])
    for name in _REQUIRED_SOURCE_FIELDS.get(sources[0], ()):
        if source.get(name) in (None, ""):
            errs.append(required_field(f"spec.{sources[0]}.{name}"))
    if sources[0] == "local" and not spec.get("nodeAffinity"):
        errs.append(required_field("spec.nodeAffinity", "Local volume requires node affinity"))
    return errs


def _check_volume_update(new: Obj, old: Obj) -> list[FieldError]:
    new_source = {k: v for k, v in new.items() if k in PV_SOURCES}
    old_source = {k: v for k, v in old.items() if k in PV_SOURCES}
    errs: list[FieldError] = []
    if new_source != old_source:
        detail = "spec.persistentvolumesource is immutable after creation"
        errs.append(forbidden_field("spec.persistentvolumesource", detail))
    return errs + check_immutable("volumeMode", new.get("volumeMode"), old.get("volumeMode"))


def check_claim_spec(spec: Any, path: str) -> list[FieldError]:
    spec = dict_of(spec)
    detail = "at least 1 access mode is required"
    errs = check_access_modes(
        spec.get("accessModes"), f"{path}.accessModes", required_detail=detail
    )
    if spec.get("selector") is not None:
        errs += validate_label_selector_spec(spec["selector"], f"{path}.selector")
    storage = dig(spec, "resources", "requests", "storage")
    if storage is None:
        errs.append(required_field(f"{path}.resources[storage]"))
    else:
        errs += check_positive_quantity(f"{path}.resources[storage]", storage)
    class_name = spec.get("storageClassName")
    if isinstance(class_name, str) and class_name:
        field = f"{path}.storageClassName"
        errs += problems_at(field, class_name, dns1123_subdomain_errors(class_name))
    return errs + check_enum(
        f"{path}.volumeMode", spec.get("volumeMode"), VOLUME_MODES, required=False
    )


def validate_claim(claim: Obj, old: Obj | None) -> list[FieldError]:
    errs = check_claim_spec(claim.get("spec"), "spec")
    if old is not None and not errs:
        errs += _check_claim_update(claim, old)
    return errs


def _check_claim_update(new: Obj, old: Obj) -> list[FieldError]:
    """The spec is frozen except a first volumeName, a first storageClassName (kube lets the
    default class be set on a claim created without one) and, once bound, the requests."""
    new_spec, old_spec = dict(dict_of(new.get("spec"))), dict(dict_of(old.get("spec")))
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
    if old_spec.get("storageClassName") is None:
        old_spec["storageClassName"] = new_spec.get("storageClassName")
    if dig(new, "status", "phase") == "Bound":
        for key in ("resources", "volumeAttributesClassName"):
            new_spec.pop(key, None)
            old_spec.pop(key, None)
    errs: list[FieldError] = []
    if _without_unset(new_spec) != _without_unset(old_spec):
        errs.append(forbidden_field("spec", CLAIM_UPDATE_FORBIDDEN))
    return errs + _check_no_shrink(new, old)


def _without_unset(spec: Obj) -> Obj:
    return {k: v for k, v in spec.items() if v is not None}


def _check_no_shrink(new: Obj, old: Obj) -> list[FieldError]:
    new_size = dig(new, "spec", "resources", "requests", "storage")
    old_size = dig(old, "spec", "resources", "requests", "storage")
    try:
        shrunk = parse_quantity(new_size) < parse_quantity(old_size)
    except QuantityError:
        return []
    if not shrunk:
        return []
    field = "spec.resources.requests.storage"
    return [forbidden_field(field, "field can not be less than previous value")]


PERSISTENT_VOLUME = ResourceType(
    group="",
    version="v1",
    kind="PersistentVolume",
    plural="persistentvolumes",
    singular="persistentvolume",
    namespaced=False,
    short_names=("pv",),
    status_subresource=True,
    columns=PV_COLUMNS,
    defaulter=default_volume,
    validator=validate_volume,
)

PERSISTENT_VOLUME_CLAIM = ResourceType(
    group="",
    version="v1",
    kind="PersistentVolumeClaim",
    plural="persistentvolumeclaims",
    singular="persistentvolumeclaim",
    namespaced=True,
    short_names=("pvc",),
    status_subresource=True,
    columns=PVC_COLUMNS,
    defaulter=default_claim,
    validator=validate_claim,
)
