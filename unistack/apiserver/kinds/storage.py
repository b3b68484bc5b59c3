"""storage.k8s.io/v1: StorageClass, the kind of storage a claim asks for and who provisions it.

Cluster-scoped. Defaults and checks are kube-apiserver's: `reclaimPolicy` defaults to Delete
and may be Delete or Retain, `volumeBindingMode` defaults to Immediate and may be Immediate or
WaitForFirstConsumer, `provisioner` is required and a qualified name, and none of
`provisioner`, `parameters`, `reclaimPolicy` and `volumeBindingMode` changes after create.
`kubectl get storageclass` shows the class marked default with "(default)", from the
`storageclass.kubernetes.io/is-default-class` annotation, as kubectl's own printer does.
`default_class_for` is the DefaultStorageClass admission plugin's choice for a new claim.
"""

from __future__ import annotations

from unistack.apiserver.errors import FieldError, required_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_enum, check_immutable, problems_at
from unistack.apiserver.kinds.objects import Obj, dig, set_default
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import qualified_name_errors

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"  # the class, before the field
RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
_IMMUTABLE = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")


def is_default_class(storage_class: Obj) -> bool:
    annotations = dig(storage_class, "metadata", "annotations") or {}
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def default_class_for(claim: Obj, classes: list[Obj]) -> str | None:
    """kube's DefaultStorageClass admission on a new claim: the default class when the claim
    names none (an explicit "" stays: it asks for a volume of no class); of several defaults
    the newest, then the first by name."""
    spec = claim.get("spec")
    annotations = dig(claim, "metadata", "annotations") or {}
    if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
        return None
    if BETA_CLASS_ANNOTATION in annotations:
        return None
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    by_name = sorted(defaults, key=lambda c: str(dig(c, "metadata", "name")))
    newest = max(by_name, key=lambda c: str(dig(c, "metadata", "creationTimestamp") or ""))
    return str(dig(newest, "metadata", "name"))


def _name(storage_class: Obj) -> str:
    name = str(dig(storage_class, "metadata", "name") or "")
    return f"{name} (default)" if is_default_class(storage_class) else name


def _expansion(storage_class: Obj) -> str:
    return "true" if storage_class.get("allowVolumeExpansion") else "false"


STORAGE_CLASS_COLUMNS = (
    Column("Name", _name, description="The class name; the default class says so."),
    Column("Provisioner", cells.text_at("provisioner"), description="Who provisions volumes."),
    Column("ReclaimPolicy", cells.text_at("reclaimPolicy"), description="On release."),
    Column("VolumeBindingMode", cells.text_at("volumeBindingMode"), description="When to bind."),
    Column("AllowVolumeExpansion", _expansion, description="Whether claims may grow."),
    cells.AGE_COLUMN,
)


def default_storage_class(storage_class: Obj) -> None:
    set_default(storage_class, "reclaimPolicy", "Delete")
    set_default(storage_class, "volumeBindingMode", "Immediate")


def validate_storage_class(storage_class: Obj, old: Obj | None) -> list[FieldError]:
    provisioner = storage_class.get("provisioner")
    if not provisioner:
        errs = [required_field("provisioner")]
    else:
        errs = problems_at("provisioner", provisioner, qualified_name_errors(str(provisioner)))
    errs += check_enum("reclaimPolicy", storage_class.get("reclaimPolicy"), RECLAIM_POLICIES)
    errs += check_enum("volumeBindingMode", storage_class.get("volumeBindingMode"), BINDING_MODES)
    if old is not None:
        for field in _IMMUTABLE:
            errs += check_immutable(field, storage_class.get(field), old.get(field))
    return errs


STORAGE_CLASS = ResourceType(
    group="storage.k8s.io",
    version="v1",
    kind="StorageClass",
    plural="storageclasses",
    singular="storageclass",
    namespaced=False,
    short_names=("sc",),
    columns=STORAGE_CLASS_COLUMNS,
    defaulter=default_storage_class,
    validator=validate_storage_class,
)
