"""The Kubernetes API as Python calls: `Client` over a `Transport`, objects as plain dicts.

Every verb of the Kubernetes REST API a controller needs: get, list, create, update (and
`update_status`, `replace_subresource`), patch (merge, JSON, strategic merge, server-side
apply), delete with DeleteOptions, deletecollection, and watch as an async iterator of
`WatchEvent`s. A failed request raises an `ApiError` built from the server's `Status`: its
subclasses `NotFound`, `Conflict`, `AlreadyExists`, `Gone` (410, resourceVersion compacted) and
`Invalid` are the ones callers branch on. URLs come from `unistack.client.resources`; the bytes
go through `unistack.client.transport`. The informers in `unistack.runtime` build on this.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from unistack.client import freshness
from unistack.client.resources import ResourceRef
from unistack.client.transport import Params, Transport

Obj = dict[str, Any]

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A request the server refused; `body` is its `Status` object."""

    def __init__(self, status: int, reason: str, body: Obj) -> None:
        super().__init__(f"{status} {reason}: {body.get('message', '')}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server's history."""


class Invalid(ApiError):
    pass


def error_from_status(status: int, body: Obj) -> ApiError:
    """The `ApiError` subclass for an HTTP code and the `Status` body that came with it."""
    reason = str(body.get("reason") or "")
    if status == 404:
        return NotFound(status, reason or "NotFound", body)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, body)
    if status == 409:
        return Conflict(status, reason or "Conflict", body)
    if status == 410:
        return Gone(status, reason or "Expired", body)
    if status == 422:
        return Invalid(status, reason or "Invalid", body)
    return ApiError(status, reason or "Unknown", body)


def _decode_error(status: int, data: bytes) -> ApiError:
    try:
        body = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    body.setdefault("message", data.decode(errors="replace")[:500])
    return error_from_status(status, body)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


def _query(**values: Any) -> dict[str, str]:
    """Query parameters, leaving out the ones not given."""
    params: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return params


def delete_options(
    propagation_policy: str | None = None,
    preconditions: Obj | None = None,
    grace_period: int | None = None,
) -> Obj:
    options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation_policy is not None:
        options["propagationPolicy"] = propagation_policy
    if preconditions is not None:
        options["preconditions"] = preconditions
    if grace_period is not None:
        options["gracePeriodSeconds"] = grace_period
    return options


class Client:
    """Typed-by-ResourceRef access to the Kubernetes API; objects are plain dicts."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def close(self) -> None:
        await self.transport.close()

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """One request; the decoded JSON response, or `ApiError` for a status of 300 and up."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if method != "GET":
            freshness.note_write()
        response = await self.transport.request(
            method, path, params=params, body=data, headers=headers
        )
        if response.status >= 300:
            raise _decode_error(response.status, response.body)
        return orjson.loads(response.body) if response.body else {}

    async def get_path(self, path: str) -> Obj:
        """GET any path (discovery documents, `/version`)."""
        return await self.request_json("GET", path)

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> Obj:
        return await self.request_json("GET", ref.path(namespace, name))

    async def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        """One page of a list: the `*List` object with `items` and `metadata.continue`."""
        params = _query(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=limit,
            resourceVersion=resource_version,
            **{"continue": continue_},
        )
        return await self.request_json("GET", ref.path(namespace), params=params)

    async def list_all(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Obj:
        """Every page of a list joined: the first page's object (and resourceVersion, the
        snapshot the pages were read at) with all the items."""
        first = await self.list(
            ref,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=page_size,
        )
        page = first
        while page.get("metadata", {}).get("continue"):
            page = await self.list(
                ref,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page_size,
                continue_=page["metadata"]["continue"],
            )
            first["items"].extend(page.get("items") or [])
        first.get("metadata", {}).pop("continue", None)
        return first

    async def create(
        self,
        ref: ResourceRef,
        obj: Obj,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> Obj:
        namespace = namespace or obj.get("metadata", {}).get("namespace")
        params = _query(fieldManager=field_manager)
        return await self.request_json("POST", ref.path(namespace), params=params, body=obj)

    async def update(self, ref: ResourceRef, obj: Obj, *, field_manager: str | None = None) -> Obj:
        """PUT the whole object; its `metadata.resourceVersion` makes it compare-and-swap."""
        return await self.replace_subresource(ref, obj, None, field_manager=field_manager)

    async def update_status(
        self, ref: ResourceRef, obj: Obj, *, field_manager: str | None = None
    ) -> Obj:
        return await self.replace_subresource(ref, obj, "status", field_manager=field_manager)

    async def replace_subresource(
        self,
        ref: ResourceRef,
        obj: Obj,
        subresource: str | None,
        *,
        field_manager: str | None = None,
    ) -> Obj:
        """PUT an object to itself or a subresource (`status`, `finalize`, `scale`)."""
        meta = obj.get("metadata", {})
        path = ref.path(meta.get("namespace"), meta["name"], subresource)
        params = _query(fieldManager=field_manager)
        return await self.request_json("PUT", path, params=params, body=obj)

    async def patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        field_manager: str | None = None,
        force: bool | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        params = _query(fieldManager=field_manager, force=force)
        return await self.request_json(
            "PATCH",
            ref.path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )

    async def delete(
        self,
        ref: ResourceRef,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: Obj | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        """DELETE one object: the object still being deleted (finalizers), or a `Status`."""
        options = delete_options(propagation_policy, preconditions, grace_period)
        return await self.request_json("DELETE", ref.path(namespace, name), body=options)

    async def delete_collection(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: str | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        params = _query(labelSelector=label_selector, fieldSelector=field_selector)
        options = delete_options(propagation_policy, None, grace_period)
        return await self.request_json("DELETE", ref.path(namespace), params=params, body=options)

    async def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version`, as they happen, until the server ends the stream.

        An ERROR event raises the `ApiError` its `Status` describes (`Gone` for 410). The
        stream is closed when the iterator is; use `contextlib.aclosing` to close it promptly.
        """
        params = _query(
            watch=True,
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            allowWatchBookmarks=allow_bookmarks or None,
            timeoutSeconds=timeout_seconds,
        )
        async with self.transport.stream("GET", ref.path(namespace), params=params) as stream:
            if stream.status >= 300:
                raise _decode_error(stream.status, await stream.read())
            async for line in stream:
                if line.strip():
                    yield _watch_event(orjson.loads(line))


def _watch_event(event: Obj) -> WatchEvent:
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise error_from_status(int(status.get("code") or 500), status)
    return WatchEvent(event["type"], event["object"])
