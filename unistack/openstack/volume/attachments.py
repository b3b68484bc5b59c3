"""Attachments (the 3.27 attachments API, and the state both attach flows share).

`POST /attachments` reserves a volume for an instance (with a connector it goes on to
`attaching` and answers the connection info); `PUT /attachments/{id}` gives the connector;
`POST /attachments/{id}/action` `os-complete` (3.44) marks it attached (volume `in-use`);
`DELETE` detaches (the volume is `available` again when nothing else holds it). Nova calls
these with its service token. The classic actions (`os-reserve`, `os-attach`, `os-detach`
...) in `actions.py` go through `AttachmentState` too, so a volume shows the same
attachments whichever flow made them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume.service import VolumeService, new_id, now, page, require_version
from unistack.openstack.web import bad_request, empty, json_response, read_json

Obj = dict[str, Any]
ATTACHABLE = frozenset({"available", "reserved", "attaching"})


def connection_info(volume_id: str, attachment_id: str, mode: str) -> Obj:
    """What a host needs to reach the volume. The fake backend has no data path yet, so the
    driver type is `fake`; the file pool will answer its own."""
    data = {"volume_id": volume_id, "attachment_id": attachment_id, "access_mode": mode}
    return {"driver_volume_type": "fake", "data": {**data, "discard": False}}


class AttachmentState:
    """The moves of a volume's attach state and its attachment objects."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def require_attachable(self, volume: Obj) -> None:
        """400 unless the volume is free (or multiattach): no other attachment holds it."""
        status = status_of(volume).get("status")
        volume_id = volume["metadata"]["name"]
        multi = bool(spec_of(volume).get("multiattach"))
        held = self.service.records.indexed(kinds.ATTACHMENTS, "volume", volume_id)
        if (status not in ATTACHABLE or held) and not (multi and status in (*ATTACHABLE, "in-use")):
            raise bad_request(
                f"Invalid volume: Volume {volume['metadata']['name']} status must be available "
                f"or downloading to reserve, but the current status is {status}."
            )

    async def set_volume(self, volume_id: str, **values: Any) -> None:
        await self.service.merge(kinds.VOLUMES, volume_id, values, status=True)

    async def create(self, volume: Obj, spec: Obj) -> Obj:
        """A new attachment of `volume` (spec: instance_uuid, status, connector, mode...)."""
        full = {
            "project_id": spec_of(volume).get("project_id"),
            "volume_id": volume["metadata"]["name"],
        }
        full.update(
            attach_mode="rw", attached_at=None, detached_at=None, mountpoint=None, host_name=None
        )
        full.update(spec)
        return await self.service.records.create(kinds.ATTACHMENTS, new_id(), full)

    async def update(self, attachment_id: str, **values: Any) -> Obj:
        return await self.service.merge(kinds.ATTACHMENTS, attachment_id, values)

    async def settle_volume(self, volume_id: str) -> None:
        """The volume's status after its attachments changed."""
        held = self.service.records.indexed(kinds.ATTACHMENTS, "volume", volume_id)
        states = {spec_of(a).get("status") for a in held}
        if "attached" in states:
            await self.set_volume(volume_id, status="in-use", attach_status="attached")
        elif "attaching" in states:
            await self.set_volume(volume_id, status="attaching", attach_status="attaching")
        elif "reserved" in states:
            await self.set_volume(volume_id, status="reserved", attach_status="detached")
        else:
            await self.set_volume(volume_id, status="available", attach_status="detached")

    async def remove(self, attachment_id: str) -> None:
        attachment = self.service.records.get(kinds.ATTACHMENTS, attachment_id)
        if attachment is None:
            return
        await self.service.records.delete(kinds.ATTACHMENTS, attachment_id)
        await self.settle_volume(str(spec_of(attachment)["volume_id"]))


def attachment_view(attachment: Obj, detail: bool = True) -> Obj:
    spec = spec_of(attachment)
    shown: Obj = {
        "id": attachment["metadata"]["name"],
        "status": spec.get("status"),
        "instance": spec.get("instance_uuid"),
        "volume_id": spec.get("volume_id"),
    }
    if detail:
        shown.update(
            attached_at=spec.get("attached_at"),
            detached_at=spec.get("detached_at"),
            attach_mode=spec.get("attach_mode"),
            connection_info=spec.get("connection_info") or {},
        )
    return shown


class Attachments:
    def __init__(self, service: VolumeService, state: AttachmentState) -> None:
        self.service = service
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/attachments", self.create_attachment, methods=["POST"]),
            Route("/attachments", self.list_attachments, methods=["GET"]),
            Route("/attachments/detail", self.list_attachments_detail, methods=["GET"]),
            Route("/attachments/{attachment_id}", self.show_attachment, methods=["GET"]),
            Route("/attachments/{attachment_id}", self.update_attachment, methods=["PUT"]),
            Route("/attachments/{attachment_id}", self.delete_attachment, methods=["DELETE"]),
            Route("/attachments/{attachment_id}/action", self.attachment_action, methods=["POST"]),
        ]

    async def create_attachment(self, request: Request) -> Response:
        require_version(request, "3.27")
        context = self.service.writer(request, "volume:attachment_create")
        body = (await read_json(request)).get("attachment")
        if not isinstance(body, dict) or not body.get("volume_uuid"):
            raise bad_request("Missing required element 'volume_uuid' in request body.")
        volume = self.service.visible(kinds.VOLUMES, str(body["volume_uuid"]), context)
        self.state.require_attachable(volume)
        mode = str(body.get("mode") or "rw")
        if mode not in ("rw", "ro"):
            raise bad_request(f"Invalid input received: invalid attach mode {mode}.")
        connector = body.get("connector")
        spec: Obj = {
            "instance_uuid": body.get("instance_uuid"),
            "attach_mode": mode,
            "status": "reserved",
        }
        created = await self.state.create(volume, spec)
        if isinstance(connector, dict) and connector:
            created = await self._connect(created, connector)
        await self.state.settle_volume(volume["metadata"]["name"])
        return json_response({"attachment": attachment_view(created)})

    async def _connect(self, attachment: Obj, connector: Obj) -> Obj:
        spec, attachment_id = spec_of(attachment), attachment["metadata"]["name"]
        info = connection_info(str(spec["volume_id"]), attachment_id, str(spec.get("attach_mode")))
        return await self.state.update(
            attachment_id,
            connector=connector,
            connection_info=info,
            host_name=connector.get("host"),
            mountpoint=connector.get("mountpoint"),
            status="attaching",
        )

    def _visible(self, request: Request, context: AuthContext) -> Obj:
        attachment_id = request.path_params["attachment_id"]
        return self.service.visible(kinds.ATTACHMENTS, attachment_id, context)

    def _listed(self, request: Request) -> list[Obj]:
        context = self.service.reader(request)
        found = self.service.listed(kinds.ATTACHMENTS, request, context)
        for key, field in (
            ("volume_id", "volume_id"),
            ("instance_id", "instance_uuid"),
            ("status", "status"),
        ):
            if key in request.query_params:
                found = [a for a in found if spec_of(a).get(field) == request.query_params[key]]
        return page(
            found,
            request,
            lambda obj, key: spec_of(obj).get(key) if key != "id" else obj["metadata"]["name"],
        )

    async def list_attachments(self, request: Request) -> Response:
        require_version(request, "3.27")
        return json_response(
            {"attachments": [attachment_view(a, False) for a in self._listed(request)]}
        )

    async def list_attachments_detail(self, request: Request) -> Response:
        require_version(request, "3.27")
        return json_response({"attachments": [attachment_view(a) for a in self._listed(request)]})

    async def show_attachment(self, request: Request) -> Response:
        require_version(request, "3.27")
        context = self.service.reader(request)
        return json_response({"attachment": attachment_view(self._visible(request, context))})

    async def update_attachment(self, request: Request) -> Response:
        require_version(request, "3.27")
        context = self.service.writer(request, "volume:attachment_update")
        attachment = self._visible(request, context)
        body = (await read_json(request)).get("attachment")
        connector = body.get("connector") if isinstance(body, dict) else None
        if not isinstance(connector, dict) or not connector:
            raise bad_request("Missing required element 'connector' in request body.")
        updated = await self._connect(attachment, connector)
        await self.state.settle_volume(str(spec_of(updated)["volume_id"]))
        return json_response({"attachment": attachment_view(updated)})

    async def attachment_action(self, request: Request) -> Response:
        require_version(request, "3.44")
        context = self.service.writer(request, "volume:attachment_complete")
        attachment = self._visible(request, context)
        body = await read_json(request)
        if "os-complete" not in body:
            raise bad_request("Invalid request body: no recognised attachment action.")
        attachment_id = attachment["metadata"]["name"]
        await self.state.update(attachment_id, status="attached", attached_at=now())
        await self.state.settle_volume(str(spec_of(attachment)["volume_id"]))
        return empty(204)

    async def delete_attachment(self, request: Request) -> Response:
        require_version(request, "3.27")
        context = self.service.writer(request, "volume:attachment_delete")
        attachment = self._visible(request, context)
        volume_id = str(spec_of(attachment)["volume_id"])
        await self.state.remove(attachment["metadata"]["name"])
        left = self.service.records.indexed(kinds.ATTACHMENTS, "volume", volume_id)
        return json_response({"attachments": [attachment_view(a, False) for a in left]})
