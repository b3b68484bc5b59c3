"""CustomResourceDefinitions: turn a CRD into served resource types, and keep them served.

`CrdHooks` plugs into the generic handlers: before a CRD is stored it gets the conditions a
served CRD shows (NamesAccepted, Established) and its accepted names; once stored its kinds
are added to the registry, so custom objects are served the moment the create returns. When
a CRD is deleted its kinds stop being served and `cleanup` removes the custom objects.
At start-up `load` serves every CRD already in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from unistack import store as storage
from unistack.apiserver import codec
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.resources import Column, Registry, ResourceType, Scale

Obj = dict[str, Any]

log = logging.getLogger(__name__)

CRD_GROUP = "apiextensions.k8s.io"


def is_crd(rt: ResourceType) -> bool:
    return rt.group == CRD_GROUP and rt.kind == "CustomResourceDefinition"


def types_for(crd: Obj) -> list[ResourceType]:
    """One ResourceType per served version of the CRD."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        types.append(_version_type(spec, names, version))
    return types


def _version_type(spec: Obj, names: Obj, version: Obj) -> ResourceType:
    subresources = version.get("subresources") or {}
    scale = subresources.get("scale")
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    return ResourceType(
        group=spec["group"],
        version=version["name"],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status_subresource="status" in subresources,
        scale=_scale(scale) if scale is not None else None,
        columns=_columns(version.get("additionalPrinterColumns") or []),
        schema=schema,
        custom=True,
        tracks_generation=True,
        storage_version=bool(version.get("storage")),
    )


def _scale(scale: Obj) -> Scale:
    return Scale(
        scale.get("specReplicasPath", ".spec.replicas"),
        scale.get("statusReplicasPath", ".status.replicas"),
        scale.get("labelSelectorPath"),
    )


def _columns(printer_columns: list[Obj]) -> tuple[Column, ...]:
    columns = [
        Column(
            name=c["name"],
            path=c["jsonPath"],
            type=c.get("type", "string"),
            format=c.get("format", ""),
            description=c.get("description", ""),
            priority=int(c.get("priority", 0)),
        )
        for c in printer_columns
    ]
    if not any(c.path == ".metadata.creationTimestamp" for c in columns):
        columns.append(Column("Age", ".metadata.creationTimestamp", type="date"))
    return tuple(columns)


def served_status(crd: Obj, now: str) -> Obj:
    """The status of a CRD whose names were accepted and whose kinds are being served."""
    spec = crd.get("spec", {})
    storage_versions = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    conditions = [
        _condition("NamesAccepted", "NoConflicts", "no conflicts found", now),
        _condition(
            "Established", "InitialNamesAccepted", "the initial names have been accepted", now
        ),
    ]
    status = crd.get("status")
    previous = status.get("storedVersions") if isinstance(status, dict) else None
    stored = [v for v in previous if isinstance(v, str)] if isinstance(previous, list) else []
    for version in storage_versions:
        if version not in stored:
            stored.append(version)
    return {
        "conditions": conditions,
        "acceptedNames": spec.get("names", {}),
        "storedVersions": stored,
    }


def _condition(kind: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": kind,
        "status": "True",
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def names_builtin(registry: Registry, crd: Obj) -> bool:
    """A CRD for a built-in resource (`leases.coordination.k8s.io`) is stored but never
    served: the built-in keeps serving, and deleting the CRD leaves its objects alone."""
    spec = crd.get("spec", {})
    plural = spec.get("names", {}).get("plural", "")
    return any(not rt.custom for rt in registry.versions_of(spec.get("group", ""), plural))


class CrdHooks(WriteHooks):
    """Keep the registry in step with the CRDs written through the API."""

    def __init__(
        self, registry: Registry, store: storage.ObjectStore, clock_stamp: Callable[[], str]
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock_stamp = clock_stamp
        self._cleanups: set[asyncio.Task[None]] = set()

    def prepare(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if is_crd(rt):
            previous = (old or {}).get("status", {}).get("conditions") or []
            status = served_status(new, self.clock_stamp())
            if previous:
                status["conditions"] = previous
            new["status"] = status

    def committed(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        if not is_crd(rt) or names_builtin(self.registry, new or old or {}):
            return
        if old is not None:
            spec = old.get("spec", {})
            self.registry.remove_group_resource(
                spec.get("group", ""), spec.get("names", {}).get("plural", "")
            )
        if new is not None and not new["metadata"].get("deletionTimestamp"):
            for served in types_for(new):
                self.registry.add(served)
        elif new is None and old is not None:
            task = asyncio.get_running_loop().create_task(cleanup(self.store, old))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)


async def load(store: storage.ObjectStore, registry: Registry) -> None:
    """Serve the kinds of every CRD already stored."""
    listed = await store.list(f"/{CRD_GROUP}/customresourcedefinitions/")
    for item in listed.items:
        crd = codec.load(item.value)
        if crd["metadata"].get("deletionTimestamp") or names_builtin(registry, crd):
            continue
        for served in types_for(crd):
            registry.add(served)


async def cleanup(store: storage.ObjectStore, crd: Obj) -> None:
    """Remove every custom object of a deleted CRD (the customresourcecleanup finalizer)."""
    spec = crd.get("spec", {})
    prefix = f"/{spec.get('group')}/{spec.get('names', {}).get('plural')}/"
    listed = await store.list(prefix)
    for item in listed.items:
        try:
            await store.delete(item.key)
        except storage.NotFound:
            continue
    log.info("removed %d objects of deleted CRD %s", len(listed.items), crd["metadata"]["name"])
