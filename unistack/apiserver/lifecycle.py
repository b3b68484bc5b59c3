"""The parts of an object the server owns: identity, timestamps, generation, deletion.

Pure functions over object dicts. `prepare_create` stamps a new object, `prepare_update`
carries the server-owned fields across a write and bumps `generation` when the spec changes,
and `plan_deletion` decides whether a DELETE removes the object now or marks it for the
finalizers (and the garbage collector, and the node agent for a scheduled pod) to finish.
"""

from __future__ import annotations

import copy
import functools
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from unistack.apiserver import errors
from unistack.apiserver import patch as patching
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


@functools.lru_cache(maxsize=64)
def _format_second(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(now: datetime) -> str:
    """RFC 3339 at one-second precision, as metav1.Time serialises (cached per second)."""
    return _format_second(int(now.timestamp()))


def generated_name(prefix: str) -> str:
    suffix = "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
    return prefix[: 63 - 5] + suffix


def prepare_create(rt: ResourceType, obj: Obj, now: datetime) -> None:
    """Stamp identity and timestamps on a new object; drop what clients may not set."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generated_name(str(meta["generateName"]))
    for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(key, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp(now)
    if rt.tracks_generation:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if rt.status_subresource and not rt.status_on_create:
        obj.pop("status", None)


def prepare_update(rt: ResourceType, new: Obj, old: Obj, subresource: str | None) -> Obj:
    """The object to store for an update of `old` with `new` through `subresource`."""
    if subresource == "status":
        merged = copy.deepcopy(old)
        merged["status"] = new.get("status")
        if merged["status"] is None:
            merged.pop("status")
        merged["metadata"]["managedFields"] = new.get("metadata", {}).get("managedFields")
        if merged["metadata"]["managedFields"] is None:
            merged["metadata"].pop("managedFields")
        return merged
    meta = new.setdefault("metadata", {})
    old_meta = old["metadata"]
    for key in _SERVER_OWNED_META:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rt.status_subresource:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if _is_namespace(rt) and subresource is None:
        _keep_spec_finalizers(new, old)
    _bump_generation(rt, new, old)
    return new


def _is_namespace(rt: ResourceType) -> bool:
    return rt.kind == "Namespace" and rt.group == ""


def _keep_spec_finalizers(new: Obj, old: Obj) -> None:
    """A Namespace's spec.finalizers change only through its `finalize` subresource, as in
    kube; otherwise an edit could drop `kubernetes` and leave its content behind."""
    spec = new.get("spec")
    spec = dict(spec) if isinstance(spec, dict) else {}
    finalizers = (old.get("spec") or {}).get("finalizers")
    if finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = finalizers
    new["spec"] = spec


def _bump_generation(rt: ResourceType, new: Obj, old: Obj) -> None:
    meta, old_meta = new["metadata"], old["metadata"]
    if not rt.tracks_generation:
        meta.pop("generation", None)
        return
    generation = int(old_meta.get("generation", 1))
    meta["generation"] = generation + 1 if _spec_changed(new, old) else generation


def _spec_changed(new: Obj, old: Obj) -> bool:
    ignored = ("metadata", "status")
    keys = (set(new) | set(old)) - set(ignored)
    return any(new.get(k) != old.get(k) for k in keys)


def is_noop(new: Obj, old: Obj) -> bool:
    """True when storing `new` would change nothing a client can see."""
    a = {k: v for k, v in new.items() if k != "metadata"}
    b = {k: v for k, v in old.items() if k != "metadata"}
    if a != b:
        return False
    skip = ("resourceVersion", "managedFields")
    meta_a = {k: v for k, v in new.get("metadata", {}).items() if k not in skip}
    meta_b = {k: v for k, v in old.get("metadata", {}).items() if k not in skip}
    return meta_a == meta_b


def is_finalized(rt: ResourceType, obj: Obj) -> bool:
    """A deleting object with no finalizers left is ready to be removed."""
    meta = obj.get("metadata", {})
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    return not _namespace_has_spec_finalizers(rt, obj)


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    propagation: str | None = None  # Orphan | Background | Foreground
    grace_period: int | None = None
    uid: str | None = None
    resource_version: str | None = None


def delete_options(body: Obj | None, propagation: str | None, grace: int | None) -> DeleteOptions:
    body = body or {}
    _check_option_types(body)
    pre = body.get("preconditions") or {}
    policy = body.get("propagationPolicy", propagation)
    if body.get("orphanDependents") is not None and policy is None:
        policy = "Orphan" if body["orphanDependents"] else "Background"
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise errors.invalid(
            "DeleteOptions",
            "",
            "",
            [
                errors.unsupported_field(
                    "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"]
                )
            ],
        )
    grace_body = body.get("gracePeriodSeconds")
    return DeleteOptions(
        policy,
        grace_body if grace_body is not None else grace,
        pre.get("uid"),
        pre.get("resourceVersion"),
    )


def _check_option_types(body: Obj) -> None:
    """A DeleteOptions field of the wrong JSON type is a 400, as Go's decoding makes it."""
    pre = body.get("preconditions")
    checks = [
        (body.get("gracePeriodSeconds"), int, "int64"),
        (body.get("orphanDependents"), bool, "bool"),
        (body.get("propagationPolicy"), str, "string"),
        (pre, dict, "v1.Preconditions"),
    ]
    if isinstance(pre, dict):
        checks += [(pre.get(key), str, "string") for key in ("uid", "resourceVersion")]
    for value, python_type, go_type in checks:
        if value is None:
            continue
        if not isinstance(value, python_type) or isinstance(value, bool) != (python_type is bool):
            raise errors.bad_request(patching.unmarshal_error(value, go_type))


def check_preconditions(rt: ResourceType, obj: Obj, options: DeleteOptions) -> None:
    meta = obj["metadata"]
    if options.uid is not None and options.uid != meta.get("uid"):
        raise errors.conflict(
            rt.plural,
            rt.group,
            meta["name"],
            f"Precondition failed: UID in precondition: {options.uid}, "
            f"UID in object meta: {meta.get('uid')}",
        )
    if options.resource_version is not None and options.resource_version != meta.get(
        "resourceVersion"
    ):
        raise errors.conflict(
            rt.plural,
            rt.group,
            meta["name"],
            "Precondition failed: ResourceVersion in precondition: "
            f"{options.resource_version}, "
            f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
        )


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    remove_now: bool
    updated: Obj | None  # the object to store when deletion waits for finalizers


def plan_deletion(
    rt: ResourceType, obj: Obj, options: DeleteOptions, now: datetime
) -> DeletionPlan:
    """Remove now, or mark deletionTimestamp and leave the rest to finalizers."""
    new = copy.deepcopy(obj)
    meta = new["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    for name in (ORPHAN, FOREGROUND):
        wanted = options.propagation == ("Orphan" if name == ORPHAN else "Foreground")
        if wanted and name not in finalizers:
            finalizers.append(name)
        elif options.propagation and not wanted and name in finalizers:
            finalizers.remove(name)
    if finalizers:
        meta["finalizers"] = finalizers
    grace = _graceful_period(rt, obj, options)
    waits = bool(finalizers) or grace > 0 or _namespace_has_spec_finalizers(rt, obj)
    if not waits:
        return DeletionPlan(True, None)
    if not meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = timestamp(now + timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        if _is_namespace(rt):
            new.setdefault("status", {})["phase"] = "Terminating"
    return DeletionPlan(False, new)


def _graceful_period(rt: ResourceType, obj: Obj, options: DeleteOptions) -> int:
    """Scheduled, running pods get a grace period for their node agent to stop them."""
    if rt.kind != "Pod" or rt.group != "":
        return 0
    spec, status = obj.get("spec", {}), obj.get("status", {})
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    grace = options.grace_period
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return max(int(grace), 0)


def _namespace_has_spec_finalizers(rt: ResourceType, obj: Obj) -> bool:
    return _is_namespace(rt) and bool((obj.get("spec") or {}).get("finalizers"))
