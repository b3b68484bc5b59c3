"""`POST /volumes/{id}/action`: Cinder's volume actions, one handler per action name.

The classic attach flow Nova used (`os-reserve`, `os-initialize_connection`, `os-attach`,
`os-begin_detaching`, `os-roll_detaching`, `os-detach`, `os-terminate_connection`,
`os-unreserve`), `os-extend`, `os-set_bootable`, `os-update_readonly_flag`, the image
metadata actions, `os-volume_upload_image` (the image is made here with the caller's token,
the volume goes `uploading` and the controller has its backend copy the bytes into it), and
the admin ones (`os-reset_status`, `os-force_delete`, `os-force_detach`). Invalid state
moves are 400s worded as Cinder words them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume import views
from unistack.openstack.volume.attachments import AttachmentState, connection_info
from unistack.openstack.volume.quotas import Quotas
from unistack.openstack.volume.service import (
    VolumeService,
    as_bool,
    as_size,
    check_metadata,
    microversion,
    now,
)
from unistack.openstack.volume.volumes import Volumes, multiattach_type
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
Handler = Callable[[Obj, Any, AuthContext, Request], Awaitable[Response]]
VOLUME_STATUSES = frozenset(
    {
        "available",
        "in-use",
        "error",
        "creating",
        "deleting",
        "attaching",
        "detaching",
        "reserved",
        "extending",
        "error_deleting",
        "error_extending",
        "maintenance",
    }
)
ADMIN_ACTIONS = frozenset({"os-reset_status", "os-force_delete", "os-force_detach"})
DATA_BACKEND = "unistack-pool"  # the backend that keeps volume data (iaas.volume.agentbackend)
UPLOAD_FORMATS = ("raw", "qcow2")


class VolumeActions:
    def __init__(
        self, service: VolumeService, state: AttachmentState, quotas: Quotas, volumes: Volumes
    ) -> None:
        self.service = service
        self.state = state
        self.quotas = quotas
        self.volumes = volumes
        self.handlers: dict[str, Handler] = {
            "os-reserve": self.reserve,
            "os-unreserve": self.unreserve,
            "os-initialize_connection": self.initialize_connection,
            "os-terminate_connection": self.terminate_connection,
            "os-attach": self.attach,
            "os-begin_detaching": self.begin_detaching,
            "os-roll_detaching": self.roll_detaching,
            "os-detach": self.detach,
            "os-force_detach": self.detach,
            "os-extend": self.extend,
            "os-set_bootable": self.set_bootable,
            "os-update_readonly_flag": self.update_readonly_flag,
            "os-reset_status": self.reset_status,
            "os-force_delete": self.force_delete,
            "os-retype": self.retype,
            "os-set_image_metadata": self.set_image_metadata,
            "os-unset_image_metadata": self.unset_image_metadata,
            "os-show_image_metadata": self.show_image_metadata,
            "os-volume_upload_image": self.upload_image,
        }

    def routes(self) -> list[Route]:
        return [Route("/volumes/{volume_id}/action", self.volume_action, methods=["POST"])]

    async def volume_action(self, request: Request) -> Response:
        body = await read_json(request)
        names = [name for name in body if name in self.handlers]
        if len(names) != 1:
            raise bad_request("Invalid request body: exactly one known volume action is needed.")
        name = names[0]
        if name in ADMIN_ACTIONS:
            context = self.service.admin(
                request, f"volume_extension:volume_admin_actions:{name[3:]}"
            )
        else:
            context = self.service.writer(request, f"volume_extension:volume_actions:{name[3:]}")
        volume = self.service.visible(kinds.VOLUMES, request.path_params["volume_id"], context)
        return await self.handlers[name](volume, body[name], context, request)

    # --- the classic attach flow ----------------------------------------------------------

    async def reserve(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        status = status_of(volume).get("status")
        if status != "available" and not (
            spec_of(volume).get("multiattach") and status == "in-use"
        ):
            raise bad_request(
                f"Invalid volume: Volume status must be available to reserve, but the status "
                f"is {status}."
            )
        await self.state.set_volume(volume["metadata"]["name"], status="attaching")
        return empty(202)

    async def unreserve(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if status_of(volume).get("status") == "attaching":
            await self.state.settle_volume(volume["metadata"]["name"])
        return empty(202)

    async def initialize_connection(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("connector"), dict):
            raise bad_request("Must specify 'connector'")
        mode = "ro" if spec_of(volume).get("readonly") else "rw"
        info = connection_info(volume["metadata"]["name"], "", mode)
        return json_response({"connection_info": info})

    async def terminate_connection(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("connector"), dict):
            raise bad_request("Must specify 'connector'")
        return empty(202)

    async def attach(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        if not body.get("instance_uuid") and not body.get("host_name"):
            raise bad_request("Invalid request to attach volume to an invalid target")
        mode = str(body.get("mode") or "rw")
        if mode not in ("rw", "ro"):
            raise bad_request("Invalid request to attach volume with an invalid mode.")
        if spec_of(volume).get("readonly") and mode == "rw":
            raise bad_request(f"Invalid volume: Volume {volume['metadata']['name']} is read-only.")
        if status_of(volume).get("status") != "attaching":
            self.state.require_attachable(volume)
        spec = {
            "instance_uuid": body.get("instance_uuid"),
            "host_name": body.get("host_name"),
            "mountpoint": body.get("mountpoint"),
            "attach_mode": mode,
            "status": "attached",
            "attached_at": now(),
        }
        await self.state.create(volume, spec)
        await self.state.settle_volume(volume["metadata"]["name"])
        return empty(202)

    async def begin_detaching(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        status = status_of(volume).get("status")
        if status != "in-use":
            raise bad_request(
                f"Invalid volume: Unable to detach volume. Volume status must be 'in-use' and "
                f"attach_status must be 'attached' to detach (it is {status})."
            )
        await self.state.set_volume(volume["metadata"]["name"], status="detaching")
        return empty(202)

    async def roll_detaching(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if status_of(volume).get("status") == "detaching":
            await self.state.settle_volume(volume["metadata"]["name"])
        return empty(202)

    async def detach(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        volume_id = volume["metadata"]["name"]
        held = self.service.records.indexed(kinds.ATTACHMENTS, "volume", volume_id)
        wanted = body.get("attachment_id") if isinstance(body, dict) else None
        if wanted:
            held = [a for a in held if a["metadata"]["name"] == wanted]
            if not held:
                raise not_found(f"Attachment {wanted} could not be found.")
        elif len(held) > 1:
            raise bad_request("Invalid volume: Volume has multiple attachments; name one.")
        for attachment in held:
            await self.state.remove(attachment["metadata"]["name"])
        await self.state.settle_volume(volume_id)
        return empty(202)

    # --- size, flags and status -----------------------------------------------------------

    async def extend(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if not isinstance(body, dict) or "new_size" not in body:
            raise bad_request("Missing required element 'new_size' in request body.")
        new_size = as_size(body["new_size"], "new_size")
        size, status = int(spec_of(volume).get("size") or 0), status_of(volume).get("status")
        in_use_ok = status == "in-use" and microversion(request).at_least("3.42")
        if status != "available" and not in_use_ok:
            raise bad_request(
                f"Invalid volume: Volume status must be 'available' or 'in-use' (3.42) to "
                f"extend, but the status is {status}."
            )
        if new_size <= size:
            raise bad_request(
                f"Invalid input received: New size for extend must be greater than current "
                f"size. (current: {size}, extended: {new_size})."
            )
        self.quotas.check_volume(str(spec_of(volume).get("project_id")), new_size - size, count=0)
        await self._set_spec(volume, size=new_size)
        await self.state.set_volume(volume["metadata"]["name"], status="extending")
        return empty(202)

    async def set_bootable(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if not isinstance(body, dict) or "bootable" not in body:
            raise bad_request("Must specify bootable in request.")
        flag = as_bool(body["bootable"], "bootable")
        await self._set_spec(volume, bootable=flag)
        return empty(200)

    async def update_readonly_flag(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        if not isinstance(body, dict) or "readonly" not in body:
            raise bad_request("Must specify readonly in request.")
        flag = as_bool(body["readonly"], "readonly")
        metadata = {**(spec_of(volume).get("metadata") or {}), "readonly": str(flag)}
        await self._set_spec(volume, readonly=flag, metadata=metadata)
        return empty(202)

    async def _set_spec(self, volume: Obj, **values: Any) -> None:
        changes = {**values, "updated_at": now()}
        await self.service.merge(kinds.VOLUMES, volume["metadata"]["name"], changes)

    async def retype(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        """A new type for the volume. One backend serves every type, so no data moves
        (Cinder's retype without migration) and the volume stays where it is; the type
        decides whether it is multiattach (not to be changed while it is in use)."""
        if not isinstance(body, dict) or not body.get("new_type"):
            raise bad_request("New volume type must be specified.")
        if status_of(volume).get("status") not in ("available", "in-use"):
            raise bad_request("Invalid volume: Volume status must be available or in-use.")
        new_type = self.volumes.types.type_for_volume(body["new_type"], context)
        type_id = new_type["metadata"]["name"]
        if type_id == spec_of(volume).get("volume_type"):
            raise bad_request("Invalid input received: Retype cannot change to the same type.")
        multiattach = multiattach_type(new_type)
        in_use = status_of(volume).get("status") == "in-use"
        if in_use and multiattach != bool(spec_of(volume).get("multiattach")):
            raise bad_request(
                "Invalid input received: Retyping an in-use volume cannot change multiattach."
            )
        await self._set_spec(volume, volume_type=type_id, multiattach=multiattach)
        return empty(202)

    async def reset_status(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        values: Obj = {}
        if "status" in body:
            if body["status"] not in VOLUME_STATUSES:
                raise bad_request(
                    f"Invalid input received: invalid volume status {body['status']}."
                )
            values["status"] = body["status"]
        if "attach_status" in body:
            if body["attach_status"] not in ("attached", "detached"):
                raise bad_request(
                    f"Invalid input received: invalid attach status {body['attach_status']}."
                )
            values["attach_status"] = body["attach_status"]
        if not values and "migration_status" not in body:
            raise bad_request(
                "Must specify 'status', 'attach_status' or 'migration_status' for update."
            )
        if values:
            await self.state.set_volume(volume["metadata"]["name"], **values)
        return empty(202)

    async def force_delete(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        await self.volumes.delete(volume, force=True)
        return empty(202)

    # --- image metadata -------------------------------------------------------------------

    async def set_image_metadata(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        given = check_metadata((body or {}).get("metadata") if isinstance(body, dict) else None)
        merged = {**self._image_metadata(volume), **given}
        await self._set_spec(volume, volume_image_metadata=merged)
        await self._drop_status_image_metadata(volume)
        return json_response({"metadata": merged})

    async def unset_image_metadata(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        key = body.get("key") if isinstance(body, dict) else None
        current = self._image_metadata(volume)
        if key not in current:
            raise not_found(
                f"Glance metadata for volume {volume['metadata']['name']} with key {key} could "
                "not be found."
            )
        current.pop(str(key))
        await self._set_spec(volume, volume_image_metadata=current)
        await self._drop_status_image_metadata(volume)
        return empty(200)

    async def show_image_metadata(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        return json_response({"metadata": self._image_metadata(volume)})

    @staticmethod
    def _image_metadata(volume: Obj) -> dict[str, str]:
        return dict(views.image_metadata(volume) or {})

    async def _drop_status_image_metadata(self, volume: Obj) -> None:
        def change(obj: Obj) -> None:
            obj["status"].pop("volume_image_metadata", None)

        await self.service.records.update(
            kinds.VOLUMES, volume["metadata"]["name"], change, status=True
        )

    # --- upload to an image -----------------------------------------------------------------

    async def upload_image(
        self, volume: Obj, body: Any, context: AuthContext, request: Request
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        volume_id, status = volume["metadata"]["name"], status_of(volume).get("status")
        force = as_bool(body.get("force", False), "force")
        if status != "available" and not (status == "in-use" and force):
            raise bad_request(
                f"Invalid volume: Volume {volume_id} status must be available or in-use with "
                f"force, but current status is: {status}."
            )
        if status_of(volume).get("backend") != DATA_BACKEND:
            raise bad_request(
                f"Invalid volume: Volume {volume_id} is on a backend that keeps no data to upload."
            )
        image = await self._create_image(volume, body, context)
        upload = {"image_id": image["id"], "disk_format": image["disk_format"]}
        await self.state.set_volume(volume_id, status="uploading", upload=upload)
        shown = {
            "id": volume_id,
            "updated_at": now(),
            "status": "uploading",
            "display_description": spec_of(volume).get("description"),
            "size": int(spec_of(volume).get("size") or 0),
            "volume_type": None,
            "image_id": image["id"],
            "container_format": image["container_format"],
            "disk_format": image["disk_format"],
            "image_name": image["name"],
            "protected": bool(image.get("protected")),
            "visibility": image.get("visibility"),
        }
        return json_response({"os-volume_upload_image": shown}, 202)

    async def _create_image(self, volume: Obj, body: Obj, context: AuthContext) -> Obj:
        """The Glance image the volume's bytes go into, owned by the caller's project."""
        name = body.get("image_name")
        if not isinstance(name, str) or not name:
            raise bad_request("No image_name was specified in request.")
        disk_format = body.get("disk_format") or "raw"
        if disk_format not in UPLOAD_FORMATS:
            raise bad_request(
                f"Invalid disk-format '{disk_format}' is specified. Allowed disk-formats are "
                f"{', '.join(UPLOAD_FORMATS)}."
            )
        wanted: Obj = {
            "name": name,
            "disk_format": disk_format,
            "container_format": body.get("container_format") or "bare",
            "min_disk": int(spec_of(volume).get("size") or 0),
        }
        if "visibility" in body:
            wanted["visibility"] = body["visibility"]
        if "protected" in body:
            wanted["protected"] = as_bool(body["protected"], "protected")
        headers = {"x-auth-token": context.token}
        status, image = await self.service.internal(
            "POST", "/image/v2/images", wanted, headers=headers
        )
        if status != 201 or not isinstance(image, dict):
            message = image.get("message") if isinstance(image, dict) else None
            raise OpenStackError(status if 400 <= status < 500 else 503, str(message or image))
        return image
