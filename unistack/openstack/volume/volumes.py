"""Volumes: create (empty, from an image, a snapshot or another volume), list and detail
with filters, show, update, delete (with `cascade`), and the 3.12 summary.

Create records intent only (status `creating`, our finalizer); the controller provisions.
What Cinder checks at once is checked here: the size, the type and zone, the source (its
status and size), the image (active, not bigger than the volume), and the quota (413).
"""

from __future__ import annotations

import ast
import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.decisions import size_gb
from unistack.iaas.volume.kinds import FINALIZER
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume import views
from unistack.openstack.volume.quotas import Quotas
from unistack.openstack.volume.service import (
    ZONE,
    VolumeService,
    as_bool,
    as_size,
    check_metadata,
    described,
    link,
    microversion,
    new_id,
    next_links,
    now,
    page,
    read_member,
    renamed,
)
from unistack.openstack.volume.snapshots import Snapshots
from unistack.openstack.volume.types import VolumeTypes
from unistack.openstack.web import bad_request, empty, json_response

Obj = dict[str, Any]
DELETABLE = frozenset(
    {"available", "error", "error_restoring", "error_extending", "error_managing"}
)
NOT_DELETABLE = (
    "Invalid volume: Volume status must be available or error or error_restoring or "
    "error_extending or error_managing and must not be migrating, attached, belong to a group, "
    "have snapshots, awaiting a transfer, or be disassociated from snapshots after volume "
    "transfer."
)
FILTERS = ("name", "status", "availability_zone", "bootable", "metadata", "volume_type")


class Volumes:
    def __init__(
        self, service: VolumeService, quotas: Quotas, types: VolumeTypes, snapshots: Snapshots
    ) -> None:
        self.service = service
        self.quotas = quotas
        self.types = types
        self.snapshots = snapshots

    def routes(self) -> list[Route]:
        return [
            Route("/volumes", self.create_volume, methods=["POST"]),
            Route("/volumes", self.list_volumes, methods=["GET"]),
            Route("/volumes/detail", self.list_volumes_detail, methods=["GET"]),
            Route("/volumes/summary", self.show_summary, methods=["GET"]),
            Route("/volumes/{volume_id}", self.show_volume, methods=["GET"]),
            Route("/volumes/{volume_id}", self.update_volume, methods=["PUT"]),
            Route("/volumes/{volume_id}", self.delete_volume, methods=["DELETE"]),
        ]

    # --- create ---------------------------------------------------------------------------

    async def create_volume(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:create")
        body = await read_member(request, "volume")
        created = await self.create(body, context)
        shown = views.volume_view(self.service.records, created, request, microversion(request))
        return json_response({"volume": shown}, 202)

    async def create(self, body: Obj, context: AuthContext, *, extra: Obj | None = None) -> Obj:
        """Check a volume request (the `volume` of the body) and record its intent, with
        `extra` in its spec (what a restored volume is made from and keeps of its origin)."""
        spec = {**await self._new_spec(body, context), **(extra or {})}
        self.quotas.check_volume(spec["project_id"], spec["size"])
        return await self.service.records.create(
            kinds.VOLUMES,
            new_id(),
            spec,
            {"status": "creating", "attach_status": "detached"},
            finalizers=(FINALIZER,),
        )

    async def _new_spec(self, body: Obj, context: AuthContext) -> Obj:
        vtype = self.types.type_for_volume(body.get("volume_type"), context)
        spec: Obj = {
            "project_id": context.project_id,
            "user_id": context.user_id,
            **described(body),
            "metadata": check_metadata(body.get("metadata") or {}),
            "multiattach": as_bool(body.get("multiattach", False), "multiattach")
            or multiattach_type(vtype),
            "availability_zone": self._zone(body.get("availability_zone")),
            "volume_type": vtype["metadata"]["name"],
            "created_at": now(),
            "updated_at": None,
        }
        size = body.get("size")
        source = await self._source(body, context)
        if size is None and source.get("size") is None:
            raise bad_request("Invalid input for field/attribute size. Value: None.")
        spec["size"] = as_size(size) if size is not None else int(source["size"])
        if spec["size"] < int(source.get("size") or 0):
            raise bad_request(
                f"Invalid input received: Volume size '{spec['size']}'GB cannot be smaller "
                f"than the source size {source['size']}GB."
            )
        spec.update(source.get("spec") or {})
        if body.get("group_id"):
            spec["group_id"] = self._group_for(str(body["group_id"]), spec["volume_type"], context)
        return spec

    def _group_for(self, group_id: str, type_id: str, context: AuthContext) -> str:
        group = self.service.visible(kinds.GROUPS, group_id, context)
        if type_id not in (spec_of(group).get("volume_types") or []):
            raise bad_request(
                f"Invalid input received: Volume type {type_id} is not in group {group_id}."
            )
        return group_id

    @staticmethod
    def _zone(zone: Any) -> str:
        if zone is None or zone == ZONE:
            return ZONE
        raise bad_request(f"Invalid input received: Availability zone '{zone}' is invalid.")

    async def _source(self, body: Obj, context: AuthContext) -> Obj:
        """What the volume is made from: its minimum size and the spec it inherits."""
        if body.get("snapshot_id"):
            snapshot = self.service.visible(kinds.SNAPSHOTS, str(body["snapshot_id"]), context)
            self._require_status(snapshot, ("available",), "Snapshot")
            volume = self.service.records.get(kinds.VOLUMES, spec_of(snapshot).get("volume_id"))
            inherited = _inherited(volume) | {"snapshot_id": snapshot["metadata"]["name"]}
            return {"size": spec_of(snapshot).get("size"), "spec": inherited}
        if body.get("source_volid"):
            volume = self.service.visible(kinds.VOLUMES, str(body["source_volid"]), context)
            self._require_status(volume, ("available", "in-use"), "Volume")
            inherited = _inherited(volume) | {"source_volid": volume["metadata"]["name"]}
            return {"size": spec_of(volume).get("size"), "spec": inherited}
        if body.get("imageRef"):
            return await self._image_source(str(body["imageRef"]))
        return {}

    @staticmethod
    def _require_status(obj: Obj, allowed: tuple[str, ...], noun: str) -> None:
        status = status_of(obj).get("status")
        if status not in allowed:
            raise bad_request(
                f"Invalid {noun.lower()}: Originating {noun.lower()} status must be one of "
                f"{', '.join(allowed)} values (it is {status})."
            )

    async def _image_source(self, image_id: str) -> Obj:
        status, image = await self.service.internal("GET", f"/image/v2/images/{image_id}")
        if status != 200 or not isinstance(image, dict):
            raise bad_request(
                f"Invalid image identifier or unable to access requested image. ({image_id})"
            )
        if image.get("status") != "active":
            raise bad_request(f"Invalid image: Image {image_id} is not active.")
        minimum = max(int(image.get("min_disk") or 0), size_gb(image.get("size")))
        return {"size": minimum, "spec": {"imageRef": image_id}}

    # --- reads ----------------------------------------------------------------------------

    async def list_volumes(self, request: Request) -> Response:
        context = self.service.reader(request)
        found = self._filtered(request, context)
        shown = [
            {
                "id": v["metadata"]["name"],
                "name": spec_of(v).get("name"),
                "links": link(request, "volumes", v["metadata"]["name"]),
            }
            for v in found
        ]
        return json_response(self._listing(request, shown))

    async def list_volumes_detail(self, request: Request) -> Response:
        context = self.service.reader(request)
        version = microversion(request)
        records = self.service.records
        shown = [
            views.volume_detail(records, v, request, version, context)
            for v in self._filtered(request, context)
        ]
        return json_response(self._listing(request, shown))

    def _listing(self, request: Request, shown: list[Obj]) -> Obj:
        answer: Obj = {"volumes": shown}
        links = next_links(request, shown)
        if links:
            answer["volumes_links"] = links
        if microversion(request).at_least("3.45") and request.query_params.get("with_count"):
            answer["count"] = len(shown)
        return answer

    def _filtered(self, request: Request, context: AuthContext) -> list[Obj]:
        wanted = {k: request.query_params[k] for k in FILTERS if k in request.query_params}
        found = [
            v
            for v in self.service.listed(kinds.VOLUMES, request, context)
            if self._matches(v, wanted)
        ]
        return page(found, request, _sort_value)

    def _matches(self, volume: Obj, wanted: dict[str, str]) -> bool:
        spec = spec_of(volume)
        for key, value in wanted.items():
            if key == "metadata":
                expected = _parse_metadata(value)
                if any((spec.get("metadata") or {}).get(k) != v for k, v in expected.items()):
                    return False
            elif key == "bootable":
                if views.bootable(volume) != as_bool(value, "bootable"):
                    return False
            elif key == "status":
                if status_of(volume).get("status") != value:
                    return False
            elif key == "volume_type":
                type_id = spec.get("volume_type")
                if value not in (type_id, views.type_name(self.service.records, type_id)):
                    return False
            elif spec.get(key) != value:
                return False
        return True

    async def show_volume(self, request: Request) -> Response:
        context = self.service.reader(request)
        volume = self.service.visible(kinds.VOLUMES, request.path_params["volume_id"], context)
        shown = views.volume_detail(
            self.service.records, volume, request, microversion(request), context
        )
        return json_response({"volume": shown})

    async def show_summary(self, request: Request) -> Response:
        context = self.service.reader(request)
        volumes = self.service.listed(kinds.VOLUMES, request, context)
        summary: Obj = {
            "total_size": sum(int(spec_of(v).get("size") or 0) for v in volumes),
            "total_count": len(volumes),
        }
        if microversion(request).at_least("3.36"):
            keys: dict[str, list[str]] = {}
            for volume in volumes:
                for key, value in (spec_of(volume).get("metadata") or {}).items():
                    keys.setdefault(key, [])
                    if value not in keys[key]:
                        keys[key].append(value)
            summary["metadata"] = keys
        return json_response({"volume-summary": summary})

    # --- update and delete ----------------------------------------------------------------

    async def update_volume(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:update")
        volume_id = request.path_params["volume_id"]
        self.service.visible(kinds.VOLUMES, volume_id, context)
        body = await read_member(request, "volume", filled=True)
        changes = {**_updates(body), "updated_at": now()}
        updated = await self.service.merge(kinds.VOLUMES, volume_id, changes)
        shown = views.volume_view(self.service.records, updated, request, microversion(request))
        return json_response({"volume": shown})

    async def delete_volume(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:delete")
        volume = self.service.visible(kinds.VOLUMES, request.path_params["volume_id"], context)
        cascade = as_bool(request.query_params.get("cascade", "false"), "cascade")
        force = as_bool(request.query_params.get("force", "false"), "force") and context.is_admin
        await self.delete(volume, cascade=cascade, force=force)
        return empty(202)

    async def delete(
        self, volume: Obj, *, cascade: bool = False, force: bool = False, with_group: bool = False
    ) -> None:
        """Check that the volume may go, then mark it deleting and delete it (and with
        `cascade` its snapshots); the controller lets go once the backend freed it. A volume
        in a group goes only with its group (`with_group`)."""
        records, volume_id = self.service.records, volume["metadata"]["name"]
        if volume["metadata"].get("deletionTimestamp"):
            return
        if spec_of(volume).get("group_id") and not with_group:
            raise bad_request(NOT_DELETABLE)
        status = status_of(volume)
        attached = status.get("attach_status") == "attached" or views.attachments_of(
            records, volume_id
        )
        if attached or (not force and status.get("status") not in DELETABLE):
            raise bad_request(NOT_DELETABLE)
        snapshots = records.indexed(kinds.SNAPSHOTS, "volume", volume_id)
        if snapshots and not cascade:
            raise bad_request(NOT_DELETABLE)
        if any(status_of(s).get("status") == "creating" for s in snapshots):
            raise bad_request(NOT_DELETABLE)
        await self.service.merge(kinds.VOLUMES, volume_id, {"status": "deleting"}, status=True)
        await asyncio.gather(*(self.snapshots.delete(s["metadata"]["name"]) for s in snapshots))
        await records.delete(kinds.VOLUMES, volume_id)


def _inherited(volume: Obj | None) -> Obj:
    """What a copy keeps of its origin: bootability and the image it came from."""
    if volume is None:
        return {}
    found: Obj = {}
    if views.bootable(volume):
        found["bootable"] = True
    metadata = views.image_metadata(volume)
    if metadata:
        found["volume_image_metadata"] = metadata
    return found


def _updates(body: Obj) -> Obj:
    changes = renamed(body)
    if "metadata" in body:
        changes["metadata"] = check_metadata(body["metadata"])
    if not changes:
        raise bad_request("Invalid input received: no name, description or metadata to update.")
    return changes


def _parse_metadata(text: str) -> dict[str, str]:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    raise bad_request(f"Invalid input received: metadata filter {text} is not a dictionary.")


def _sort_value(volume: Obj, key: str) -> Any:
    spec = spec_of(volume)
    if key == "id":
        return volume["metadata"]["name"]
    if key == "status":
        return status_of(volume).get("status")
    if key == "display_name":
        return spec.get("name")
    return spec.get(key)


def multiattach_type(vtype: Obj) -> bool:
    """Whether volumes of the type may attach to several servers (extra spec
    `multiattach="<is> True"`, as Cinder reads it)."""
    value = str((spec_of(vtype).get("extra_specs") or {}).get("multiattach", ""))
    return value.strip().lower() in ("<is> true", "true")
