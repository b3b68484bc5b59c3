"""Volume transfers (`os-volume-transfer`): a project offers an available volume (it waits
`awaiting-transfer`), another project accepts it with the auth key, and the volume — with
its snapshots — becomes the acceptor's.

Accepting moves the objects into the acceptor's namespace (one project, one namespace): each
is let go of where it was (finalizer dropped first, so the controller never frees the data)
and recreated, same id, in the new namespace with its state. The key is kept only as a
salted hash.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.crds import Kind
from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.kinds import FINALIZER
from unistack.openstack.auth import AuthContext, may_see
from unistack.openstack.volume.quotas import Quotas
from unistack.openstack.volume.service import (
    VolumeService,
    check_text,
    link,
    new_id,
    now,
    page,
    read_member,
)
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

Obj = dict[str, Any]


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}{key}".encode()).hexdigest()


class Transfers:
    def __init__(self, service: VolumeService, quotas: Quotas) -> None:
        self.service = service
        self.quotas = quotas

    def routes(self) -> list[Route]:
        base = "/os-volume-transfer"
        return [
            Route(base, self.create_transfer, methods=["POST"]),
            Route(base, self.list_transfers, methods=["GET"]),
            Route(f"{base}/detail", self.list_transfers_detail, methods=["GET"]),
            Route(f"{base}/{{transfer_id}}", self.show_transfer, methods=["GET"]),
            Route(f"{base}/{{transfer_id}}", self.delete_transfer, methods=["DELETE"]),
            Route(f"{base}/{{transfer_id}}/accept", self.accept_transfer, methods=["POST"]),
        ]

    def view(self, transfer: Obj, request: Request, detail: bool = True) -> Obj:
        spec, transfer_id = spec_of(transfer), transfer["metadata"]["name"]
        shown = {
            "id": transfer_id,
            "name": spec.get("name"),
            "volume_id": spec.get("volume_id"),
            "links": link(request, "os-volume-transfer", transfer_id),
        }
        if detail:
            shown["created_at"] = spec.get("created_at")
        return shown

    def _find(self, transfer_id: str, context: AuthContext | None) -> Obj:
        found = self.service.records.get(kinds.TRANSFERS, transfer_id)
        if found is None or (
            context is not None and not may_see(context, spec_of(found).get("project_id"))
        ):
            raise not_found(f"Transfer {transfer_id} could not be found.")
        return found

    async def create_transfer(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:create_transfer")
        body = await read_member(request, "transfer")
        if "volume_id" not in body:
            raise bad_request("Missing required element 'transfer' in request body.")
        volume = self.service.visible(kinds.VOLUMES, str(body["volume_id"]), context)
        volume_id = volume["metadata"]["name"]
        if status_of(volume).get("status") != "available":
            raise bad_request(f"Invalid volume: Status of volume {volume_id} must be available.")
        key, salt = secrets.token_hex(8), secrets.token_hex(8)
        spec = {
            "project_id": spec_of(volume).get("project_id"),
            "volume_id": volume_id,
            "name": check_text(body, "name"),
            "salt": salt,
            "key_hash": _digest(salt, key),
            "created_at": now(),
        }
        created = await self.service.records.create(kinds.TRANSFERS, new_id(), spec)
        await self._set_volume_status(volume_id, "awaiting-transfer")
        shown = {**self.view(created, request), "auth_key": key}
        return json_response({"transfer": shown}, 202)

    async def _set_volume_status(self, volume_id: str, status: str) -> None:
        await self.service.merge(kinds.VOLUMES, volume_id, {"status": status}, status=True)

    def _listed(self, request: Request) -> list[Obj]:
        context = self.service.reader(request)
        found = self.service.listed(kinds.TRANSFERS, request, context)
        for key in ("name", "volume_id"):
            if key in request.query_params:
                found = [t for t in found if spec_of(t).get(key) == request.query_params[key]]
        return page(found, request, lambda obj, key: spec_of(obj).get(key))

    async def list_transfers(self, request: Request) -> Response:
        shown = [self.view(t, request, detail=False) for t in self._listed(request)]
        return json_response({"transfers": shown})

    async def list_transfers_detail(self, request: Request) -> Response:
        return json_response({"transfers": [self.view(t, request) for t in self._listed(request)]})

    async def show_transfer(self, request: Request) -> Response:
        context = self.service.reader(request)
        transfer = self._find(request.path_params["transfer_id"], context)
        return json_response({"transfer": self.view(transfer, request)})

    async def delete_transfer(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:delete_transfer")
        transfer = self._find(request.path_params["transfer_id"], context)
        volume_id = str(spec_of(transfer).get("volume_id"))
        await self.service.records.delete(kinds.TRANSFERS, transfer["metadata"]["name"])
        volume = self.service.records.get(kinds.VOLUMES, volume_id)
        if status_of(volume).get("status") == "awaiting-transfer":
            await self._set_volume_status(volume_id, "available")
        return empty(202)

    async def accept_transfer(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:accept_transfer")
        transfer = self._find(request.path_params["transfer_id"], None)
        body = (await read_json(request)).get("accept")
        key = body.get("auth_key") if isinstance(body, dict) else None
        if not isinstance(key, str):
            raise bad_request("Missing required element 'auth_key' in request body.")
        spec = spec_of(transfer)
        if not hmac.compare_digest(_digest(str(spec.get("salt")), key), str(spec.get("key_hash"))):
            raise bad_request(
                f"Invalid auth key: Attempt to transfer {transfer['metadata']['name']} with "
                "invalid auth key."
            )
        volume = self.service.records.require(kinds.VOLUMES, str(spec.get("volume_id")))
        project_id = str(context.project_id)
        self.quotas.check_volume(project_id, int(spec_of(volume).get("size") or 0))
        await self.service.records.delete(kinds.TRANSFERS, transfer["metadata"]["name"])
        await self._move_volume(volume, project_id, context.user_id)
        return json_response({"transfer": self.view(transfer, request, detail=False)}, 202)

    async def _move_volume(self, volume: Obj, project_id: str, user_id: str) -> None:
        volume_id = volume["metadata"]["name"]
        for snapshot in self.service.records.indexed(kinds.SNAPSHOTS, "volume", volume_id):
            await self._move(kinds.SNAPSHOTS, snapshot, project_id, {})
        status = {**status_of(volume), "status": "available"}
        await self._move(kinds.VOLUMES, volume, project_id, {"user_id": user_id}, status)

    async def _move(
        self, kind: Kind, obj: Obj, project_id: str, changes: Obj, status: Obj | None = None
    ) -> None:
        """Recreate `obj` in `project_id`'s namespace; let go of the old one first (same
        name: the two never coexist, so every lookup by id stays unambiguous)."""
        object_id, records = obj["metadata"]["name"], self.service.records
        await records.remove_finalizer(kind, object_id, FINALIZER)
        await records.delete(kind, object_id)
        spec = {**copy.deepcopy(spec_of(obj)), **changes, "project_id": project_id}
        await records.create(
            kind, object_id, spec, status or dict(status_of(obj)), finalizers=(FINALIZER,)
        )
