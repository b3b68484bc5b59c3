"""The verbs on resources: get, list, create, update, patch, delete, deletecollection.

One generic implementation serves every `ResourceType`. Each write follows the same path:
decode (or patch) → check it is the object the URL names → prepare (server-owned fields) →
admission (defaults, validation, then the hooks' `admit`: who may write this) →
compare-and-swap in the store → respond with the stored
bytes. Nothing is written unless every check passed; a lost compare-and-swap on a patch is
retried against the new state (kube's GuaranteedUpdate), and on a PUT carrying a
resourceVersion it is a 409.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from unistack import store as storage
from unistack.apiserver import (
    admission,
    codec,
    errors,
    identity,
    lifecycle,
    paging,
    subresources,
    tables,
)
from unistack.apiserver import apply as ssa
from unistack.apiserver import patch as patching
from unistack.apiserver.kinds import core_storage
from unistack.apiserver.kinds import storage as storage_kinds
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import PartsResponse, Response
from unistack.apiserver.routing import ResourcePath
from unistack.apiserver.selectors import Selection

Obj = dict[str, Any]
Clock = Callable[[], datetime]


class WriteHooks:
    """Kind-specific steps around a write; the default does nothing.

    `admit` runs after admission on a client's create or update and may refuse it (for who
    is asking: RBAC's escalation check, NodeRestriction; for what it refers to: a pod's
    missing ServiceAccount) or complete it from other objects (a pod's token volume); server-
    side writes (`guaranteed_update`) skip it. `admit_delete` may refuse a client's DELETE.
    `prepare` runs after admission and may add server-set fields (a CRD's conditions, a
    Service's cluster IP); `committed` runs after the store acknowledged the write (a CRD's
    kinds get served), `new` None for a deletion; `abandoned` runs instead of `committed`
    when a write that `prepare` readied is not stored (dry run, no-op, conflict, error), so
    whatever `prepare` reserved can be given back. A `prepare` that raises gets no call.
    """

    async def admit(self, req: Request, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        return None

    async def admit_delete(self, req: Request, rt: ResourceType, old: Obj) -> None:
        """A client's deletion of `old`, which it may refuse (NodeRestriction)."""
        return None

    def prepare(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        return None

    def committed(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        return None

    def abandoned(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        return None


class ChainedHooks(WriteHooks):
    """Several hooks run in order; when one's `prepare` fails, those before it are abandoned."""

    def __init__(self, *hooks: WriteHooks) -> None:
        self.hooks = hooks

    async def admit(self, req: Request, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        for hook in self.hooks:
            await hook.admit(req, rt, old, new)

    async def admit_delete(self, req: Request, rt: ResourceType, old: Obj) -> None:
        for hook in self.hooks:
            await hook.admit_delete(req, rt, old)

    def prepare(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        for done, hook in enumerate(self.hooks):
            try:
                hook.prepare(rt, old, new)
            except BaseException:
                for earlier in reversed(self.hooks[:done]):
                    earlier.abandoned(rt, old, new)
                raise

    def committed(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        for hook in self.hooks:
            hook.committed(rt, old, new)

    def abandoned(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        for hook in reversed(self.hooks):
            hook.abandoned(rt, old, new)


_PATCH_RETRIES = 8
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(status: int, obj: Any, warnings: list[str] | None = None) -> Response:
    return Response(status, orjson.dumps(obj), headers=_warning_headers(warnings or []))


class ResourceHandlers:
    """Serve the verbs of every resource type over one store."""

    def __init__(
        self, store: storage.ObjectStore, *, clock: Clock = utcnow, hooks: WriteHooks | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.hooks = hooks or WriteHooks()

    # -- reads -----------------------------------------------------------------------------

    async def get(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        stored = await self._get(rt, rp)
        if rp.subresource == "scale":
            return _json(200, subresources.to_scale(rt, codec.load(stored.value)))
        value = codec.for_version(rt, stored.value)
        if req.wants_table():
            table = tables.to_table(
                rt,
                [codec.load(value)],
                include_object=_include(req),
                list_meta={},
                now=self.clock(),
            )
            return _json(200, table)
        return Response(200, value)

    async def list(
        self, req: Request, rt: ResourceType, rp: ResourcePath
    ) -> Response | PartsResponse:
        selection = _selection(req, rt)
        limit = max(req.int_param("limit") or 0, 0) or None  # kube pages only for limit > 0
        start_after = paging.decode_continue(req.param("continue"))
        result = await self.store.list(
            rt.prefix(rp.namespace), limit=limit, start_after=start_after
        )
        items = [codec.for_version(rt, s.value) for s in result.items]
        if not selection.everything:
            items = await _filtered(items, selection)
        token = (
            paging.encode_continue(result.items[-1].key, result.revision)
            if result.remaining
            else ""
        )
        if req.wants_table():
            meta: Obj = {"resourceVersion": str(result.revision)}
            if token:
                meta["continue"] = token
            objects = [codec.load(v) for v in items]
            table = tables.to_table(
                rt, objects, include_object=_include(req), list_meta=meta, now=self.clock()
            )
            return _json(200, table)
        return PartsResponse(
            200, codec.list_parts(rt, items, result.revision, token, result.remaining)
        )

    async def _get(self, rt: ResourceType, rp: ResourcePath) -> storage.Stored:
        assert rp.name is not None
        try:
            return await self.store.get(rt.key(rp.namespace, rp.name))
        except storage.NotFound:
            raise errors.not_found(rt.plural, rt.group, rp.name) from None

    # -- create ----------------------------------------------------------------------------

    async def create(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        if rp.subresource is not None or rp.name is not None:
            raise errors.method_not_allowed()
        obj = codec.decode_object(req.body, req.content_type)
        codec.check_type(rt, obj)
        identity.check_namespace(rt, obj, rp.namespace)
        await self._check_namespace_open(rt, rp.namespace, obj["metadata"].get("name", ""))
        if rt is core_storage.PERSISTENT_VOLUME_CLAIM:
            await self._default_storage_class(obj)
        now = self.clock()
        lifecycle.prepare_create(rt, obj, now)
        manager = req.field_manager or req.default_manager()
        obj = ssa.track_update(
            None, obj, manager, "Update", rt.api_version, lifecycle.timestamp(now)
        )
        return await self._store_new(req, rt, obj)

    async def _store_new(self, req: Request, rt: ResourceType, obj: Obj) -> Response:
        obj, warnings = admission.admit(rt, obj, None, field_validation=_field_validation(req))
        name = obj["metadata"].get("name")
        if not name:
            raise errors.invalid(
                rt.kind,
                rt.group,
                "",
                [errors.required_field("metadata.name", "name or generateName is required")],
            )
        await self.hooks.admit(req, rt, None, obj)
        self.hooks.prepare(rt, None, obj)
        stored: storage.Stored | None = None
        try:
            if not req.dry_run:
                stored = await self._create_prepared(rt, obj, name)
        finally:
            if stored is None:  # a dry run, or the create failed
                self.hooks.abandoned(rt, None, obj)
        if stored is None:
            return _json(201, obj, warnings)
        self.hooks.committed(rt, None, obj)
        return Response(201, stored.value, headers=_warning_headers(warnings))

    async def _create_prepared(self, rt: ResourceType, obj: Obj, name: str) -> storage.Stored:
        try:
            return await self.store.create(rt.key(obj["metadata"].get("namespace"), name), obj)
        except storage.AlreadyExists:
            raise errors.already_exists(rt.plural, rt.group, name) from None

    async def _default_storage_class(self, claim: Obj) -> None:
        """DefaultStorageClass admission: a claim naming no class gets the default one."""
        spec = claim.get("spec")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
            return
        listed = await self.store.list(storage_kinds.STORAGE_CLASS.prefix(None))
        classes = [codec.load(item.value) for item in listed.items]
        name = storage_kinds.default_class_for(claim, classes)
        if name is not None:
            spec["storageClassName"] = name

    async def _check_namespace_open(
        self, rt: ResourceType, namespace: str | None, name: str = ""
    ) -> None:
        if not rt.namespaced or namespace is None:
            return
        try:
            stored = await self.store.get(f"/core/namespaces/{namespace}")
        except storage.NotFound:
            raise errors.not_found("namespaces", "", namespace) from None
        if codec.load(stored.value)["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{rt.plural} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated"
            )

    # -- update and patch ------------------------------------------------------------------

    async def update(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        assert rp.name is not None
        obj = codec.decode_object(req.body, req.content_type)
        if rp.subresource == "scale":
            wanted = obj.get("metadata", {}).get("resourceVersion")
            return await self._update_scale(req, rt, rp, lambda _scale: obj, wanted)
        identity.check_identity(rt, obj, rp)
        current = await self._get(rt, rp)
        wanted_rv = obj.get("metadata", {}).get("resourceVersion")
        old = codec.load(current.value)
        return await self._store_update(
            req, rt, rp, current, old, obj, wanted_rv, req.field_manager or req.default_manager()
        )

    async def patch(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        assert rp.name is not None
        if req.content_type not in _PATCH_TYPES:
            raise errors.unsupported_media_type(req.content_type)
        body = codec.decode_body(req.body, req.content_type)
        if rp.subresource == "scale":
            return await self._update_scale(
                req,
                rt,
                rp,
                lambda scale: self._patched(req, rt, scale, body, "autoscaling/Scale"),
                _patch_precondition(body),
            )
        for _ in range(_PATCH_RETRIES):
            try:
                return await self._patch_once(req, rt, rp, body)
            except storage.Conflict:
                continue
        raise errors.conflict(rt.plural, rt.group, rp.name, "too many concurrent writes, try again")

    async def _patch_once(
        self, req: Request, rt: ResourceType, rp: ResourcePath, body: Any
    ) -> Response:
        assert rp.name is not None
        now = lifecycle.timestamp(self.clock())
        if req.content_type == "application/apply-patch+yaml":
            return await self._apply(req, rt, rp, body, now)
        current = await self._get(rt, rp)
        old = codec.load(codec.for_version(rt, current.value))  # as this endpoint serves it
        new = self._patched(req, rt, old, body, _kind_key(rt))
        identity.check_identity(rt, new, rp)
        wanted_rv = _patch_precondition(body)
        manager = req.field_manager or req.default_manager()
        return await self._store_update(
            req, rt, rp, current, old, new, wanted_rv, manager, retryable=wanted_rv is None
        )

    def _patched(self, req: Request, rt: ResourceType, obj: Obj, body: Any, kind_key: str) -> Obj:
        kind = req.content_type
        if kind == "application/json-patch+json":
            if not isinstance(body, list):
                raise errors.bad_request("json patch must be a list of operations")
            return patching.apply_json_patch(obj, body)
        if not isinstance(body, dict):
            raise errors.bad_request("patch body must be a JSON object")
        if kind == "application/merge-patch+json":
            return patching.apply_merge_patch(obj, body)
        if not patching.supports_strategic_merge(kind_key):
            raise errors.unsupported_media_type(kind)
        return patching.apply_strategic_merge_patch(obj, body, kind_key)

    async def _apply(
        self, req: Request, rt: ResourceType, rp: ResourcePath, body: Any, now: str
    ) -> Response:
        assert rp.name is not None
        if not isinstance(body, dict):
            raise errors.bad_request("apply patch body must be an object")
        manager = req.field_manager
        if not manager:
            raise errors.bad_request(
                "PATCH requests with application/apply-patch+yaml must set fieldManager"
            )
        metadata = body.setdefault("metadata", {})
        if isinstance(metadata, dict):  # any other shape is refused just below
            metadata.setdefault("name", rp.name)
        identity.check_identity(rt, body, rp)
        try:
            current = await self.store.get(rt.key(rp.namespace, rp.name))
        except storage.NotFound:
            await self._check_namespace_open(rt, rp.namespace)
            new = ssa.server_side_apply(None, body, manager, req.flag("force"), _kind_key(rt), now)
            lifecycle.prepare_create(rt, new, self.clock())
            try:
                return await self._store_new(req, rt, new)
            except errors.ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
                # another apply created it first: retry as an update of what it stored
                raise storage.Conflict(rt.key(rp.namespace, rp.name), 0, 0) from None
        old = codec.load(current.value)
        new = ssa.server_side_apply(old, body, manager, req.flag("force"), _kind_key(rt), now)
        if rp.subresource == "status":
            new = lifecycle.prepare_update(rt, new, old, "status")
        wanted_rv = body.get("metadata", {}).get("resourceVersion")
        return await self._store_update(
            req, rt, rp, current, old, new, wanted_rv, None, retryable=True
        )

    async def _store_update(
        self,
        req: Request,
        rt: ResourceType,
        rp: ResourcePath,
        current: storage.Stored,
        old: Obj,
        new: Obj,
        wanted_rv: str | None,
        manager: str | None,
        *,
        retryable: bool = False,
    ) -> Response:
        """The shared tail of PUT, PATCH and apply: check, prepare, admit, compare-and-swap."""
        assert rp.name is not None
        if wanted_rv is not None and wanted_rv != str(current.revision):
            raise errors.conflict(rt.plural, rt.group, rp.name, _MODIFIED)
        new = lifecycle.prepare_update(rt, new, old, rp.subresource)
        if manager is not None:
            now = lifecycle.timestamp(self.clock())
            new = ssa.track_update(old, new, manager, "Update", rt.api_version, now)
        new, warnings = admission.admit(rt, new, old, field_validation=_field_validation(req))
        await self.hooks.admit(req, rt, old, new)
        self.hooks.prepare(rt, old, new)
        if lifecycle.is_noop(new, old) or req.dry_run:
            self.hooks.abandoned(rt, old, new)
            return Response(200, current.value if not req.dry_run else orjson.dumps(new))
        finalized = lifecycle.is_finalized(rt, new)
        try:
            stored = await self._update_prepared(rt, rp, current, new, finalized, retryable)
        except BaseException:
            self.hooks.abandoned(rt, old, new)
            raise
        if finalized:  # what only `new` held was never stored
            self.hooks.abandoned(rt, old, new)
            self.hooks.committed(rt, old, None)
            return Response(200, stored.value)
        self.hooks.committed(rt, old, new)
        return Response(200, stored.value, headers=_warning_headers(warnings))

    async def _update_prepared(
        self,
        rt: ResourceType,
        rp: ResourcePath,
        current: storage.Stored,
        new: Obj,
        finalized: bool,
        retryable: bool,
    ) -> storage.Stored:
        """Compare-and-swap a prepared update, or the deletion a finalized object becomes."""
        assert rp.name is not None
        key = rt.key(rp.namespace, rp.name)
        try:
            if finalized:
                return await self.store.delete(key, expected_revision=current.revision)
            return await self.store.update(key, new, expected_revision=current.revision)
        except storage.Conflict:
            if retryable:
                raise
            raise errors.conflict(rt.plural, rt.group, rp.name, _MODIFIED) from None
        except storage.NotFound:
            raise errors.not_found(rt.plural, rt.group, rp.name) from None

    async def guaranteed_update(
        self, req: Request, rt: ResourceType, rp: ResourcePath, change: Callable[[Obj], Obj]
    ) -> Obj:
        """Read the object at `rp`, change it and compare-and-swap it, again when another
        write won: kube's GuaranteedUpdate as its server-side writers (bindings) use it, one
        write and one watch event, without the admission and field managers a client's
        update goes through. A dry run only checks that the change applies."""
        assert rp.name is not None
        key = rt.key(rp.namespace, rp.name)
        for _ in range(_PATCH_RETRIES):
            current = await self._get(rt, rp)
            old = codec.load(current.value)
            new = change(old)
            if req.dry_run:
                return new
            self.hooks.prepare(rt, old, new)
            try:
                stored = await self.store.update(key, new, expected_revision=current.revision)
            except storage.Conflict:
                self.hooks.abandoned(rt, old, new)
                continue
            except storage.NotFound:
                self.hooks.abandoned(rt, old, new)
                raise errors.not_found(rt.plural, rt.group, rp.name) from None
            except BaseException:
                self.hooks.abandoned(rt, old, new)
                raise
            self.hooks.committed(rt, old, new)
            return codec.load(stored.value)
        raise errors.conflict(rt.plural, rt.group, rp.name, _MODIFIED)

    async def _update_scale(
        self,
        req: Request,
        rt: ResourceType,
        rp: ResourcePath,
        change: Callable[[Obj], Obj],
        wanted_rv: str | None,
    ) -> Response:
        """Write a Scale: a stale resourceVersion in it is a 409; without one, lost races
        are retried against the new state."""
        assert rp.name is not None
        if rt.scale is None:
            raise errors.not_found(rt.plural, rt.group, rp.name)
        for _ in range(_PATCH_RETRIES):
            current = await self._get(rt, rp)
            old = codec.load(current.value)
            scale = change(subresources.to_scale(rt, old))
            new = subresources.apply_scale(rt, old, scale)
            sub = ResourcePath(rp.group, rp.version, rp.resource, rp.namespace, rp.name, None)
            try:
                response = await self._store_update(
                    req,
                    rt,
                    sub,
                    current,
                    old,
                    new,
                    wanted_rv,
                    req.field_manager or req.default_manager(),
                    retryable=wanted_rv is None,
                )
            except storage.Conflict:
                continue
            return _json(response.status, subresources.to_scale(rt, codec.load(response.body)))
        raise errors.conflict(rt.plural, rt.group, rp.name, _MODIFIED)

    # -- delete ----------------------------------------------------------------------------

    async def delete(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        assert rp.name is not None
        options = self._delete_options(req)
        for _ in range(_PATCH_RETRIES):
            current = await self._get(rt, rp)
            try:
                return await self._delete_once(req, rt, rp, current, options)
            except storage.Conflict:
                continue
            except storage.NotFound:  # a concurrent DELETE removed it first
                raise errors.not_found(rt.plural, rt.group, rp.name) from None
        raise errors.conflict(rt.plural, rt.group, rp.name, _MODIFIED)

    def _delete_options(self, req: Request) -> lifecycle.DeleteOptions:
        body = codec.decode_object(req.body, req.content_type) if req.body.strip() else None
        return lifecycle.delete_options(
            body, req.param("propagationPolicy"), req.int_param("gracePeriodSeconds")
        )

    async def _delete_once(
        self,
        req: Request,
        rt: ResourceType,
        rp: ResourcePath,
        current: storage.Stored,
        options: lifecycle.DeleteOptions,
    ) -> Response:
        assert rp.name is not None
        obj = codec.load(current.value)
        lifecycle.check_preconditions(rt, obj, options)
        await self.hooks.admit_delete(req, rt, obj)
        plan = lifecycle.plan_deletion(rt, obj, options, self.clock())
        key = rt.key(rp.namespace, rp.name)
        if req.dry_run:
            return _json(200, plan.updated or obj)
        if plan.remove_now:
            stored = await self.store.delete(key, expected_revision=current.revision)
            self.hooks.committed(rt, obj, None)
            if rt.extra.get("return_deleted_object"):
                return Response(200, stored.value)
            return _json(200, _deleted_status(rt, obj))
        assert plan.updated is not None
        if plan.updated == obj:
            return Response(200, current.value)
        stored = await self.store.update(key, plan.updated, expected_revision=current.revision)
        self.hooks.committed(rt, obj, plan.updated)
        return Response(200, stored.value)

    async def delete_collection(self, req: Request, rt: ResourceType, rp: ResourcePath) -> Response:
        selection = _selection(req, rt)
        options = self._delete_options(req)
        result = await self.store.list(rt.prefix(rp.namespace))
        deleted: list[Obj] = []
        for stored in result.items:
            obj = codec.load(stored.value)
            if not selection.matches(obj):
                continue
            meta = obj["metadata"]
            target = ResourcePath(
                rp.group, rp.version, rp.resource, meta.get("namespace"), meta["name"]
            )
            try:
                await self._delete_once(req, rt, target, stored, options)
            except (storage.Conflict, storage.NotFound):
                continue
            deleted.append(obj)
        return _json(
            200,
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {}, "items": deleted},
        )


_MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def _deleted_status(rt: ResourceType, obj: Obj) -> Obj:
    details: Obj = {
        "name": obj["metadata"]["name"],
        "kind": rt.plural,
        "uid": obj["metadata"].get("uid"),
    }
    if rt.group:
        details["group"] = rt.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _warning_headers(warnings: list[str]) -> dict[str, str]:
    """RFC 7234 warnings, code 299, the text a quoted-string (kubectl prints each one)."""
    quoted = (w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings)
    return {"warning": ", ".join(f'299 - "{w}"' for w in quoted)} if warnings else {}


def _field_validation(req: Request) -> str:
    """kube's `fieldValidation` parameter; Warn when absent, as kube-apiserver defaults."""
    value = req.param("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f"fieldValidation must be one of Strict, Warn, Ignore, not {value!r}"
        )
    return value


def _include(req: Request) -> str:
    return req.param("includeObject") or "Metadata"


def _kind_key(rt: ResourceType) -> str:
    return f"{rt.group}/{rt.kind}" if rt.group else rt.kind


def _patch_precondition(body: Any) -> str | None:
    if isinstance(body, dict):
        rv = (
            body.get("metadata", {}).get("resourceVersion")
            if isinstance(body.get("metadata"), dict)
            else None
        )
        return str(rv) if rv is not None else None
    return None


def _selection(req: Request, rt: ResourceType) -> Selection:
    return Selection.parse(req.param("labelSelector"), req.param("fieldSelector"), rt.kind)


async def _filtered(items: list[bytes], selection: Selection) -> list[bytes]:
    """The items a selection matches, yielding to the loop every few hundred decodes."""
    kept: list[bytes] = []
    for start in range(0, len(items), 500):
        kept += [v for v in items[start : start + 500] if selection.matches(codec.load(v))]
        await asyncio.sleep(0)
    return kept
