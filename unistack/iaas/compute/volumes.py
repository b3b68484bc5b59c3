"""A server's volumes, through the Block Storage attachments API as Nova does it (3.44).

`Volumes.attach` reserves the volume for the server with the host's connector
(`POST /volume/v3/attachments`), connects it to the guest (`GuestDisks`: the host's agent,
`agentdriver.HostDrivers`), then completes it (`os-complete`): the volume goes `in-use`.
`detach` takes it out of the guest, then deletes the attachment: the volume is `available`
again. At a build the guest does not exist yet: the volumes are attached with `plug=False`
and the spawn request carries them. The answers are what the server records
(`status.volumes_attached`: volume, attachment, device). A Cinder or guest error comes back
as `VolumeError` with a status and message, for the API to pass on in Nova's words.
"""

from __future__ import annotations

from typing import Any, Protocol

from unistack.iaas.compute.ports import Caller
from unistack.iaas.records import spec_of

Obj = dict[str, Any]
VOLUME = "/volume/v3"
VERSION_HEADER = {"OpenStack-API-Version": "volume 3.44"}


class VolumeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GuestDisks(Protocol):
    """Where a server's guest gets its volumes (VolumeError when the host cannot)."""

    async def attach_volume(self, server_id: str, host: str, volume_id: str, device: str) -> None:
        """The volume into the server's guest on `host` as `device`."""

    async def detach_volume(self, server_id: str, volume_id: str) -> None:
        """The volume out of the server's guest; nothing when it is not there."""

    async def extend_volume(self, server_id: str, volume_id: str) -> None:
        """The server's guest shown the attached volume's new size (VolumeError when the
        host cannot)."""


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
    return str(body)[:200]


# The Cinder backend of the hosts' pools (`iaas.volume.agentbackend`): a volume there lives on
# one host, `node@unistack-pool#pool`, and attaches only to servers on that host.
POOL_BACKEND = "unistack-pool"


def pool_node(volume: Obj) -> str | None:
    """The host whose pool holds `volume` (a Cinder volume body), or None when it is not in
    a host's pool."""
    where = str(volume.get("os-vol-host-attr:host") or "")
    node, _, backend = where.partition("@")
    return node if node and backend.partition("#")[0] == POOL_BACKEND else None


# A flavor's ephemeral disk follows the root disk, as Nova names it; volumes come after.
EPHEMERAL_DEVICE = "/dev/vdb"


def next_device(attached: list[Obj], server: Obj | None = None) -> str:
    """The next free `/dev/vdX` after the root disk (vda) and `server`'s ephemeral disk."""
    used = {str(item.get("device")) for item in attached}
    flavor = spec_of(server).get("flavor") or {}
    if int(flavor.get("ephemeral") or 0) > 0:
        used.add(EPHEMERAL_DEVICE)
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"/dev/vd{letter}" not in used:
            return f"/dev/vd{letter}"
    raise VolumeError(400, "No free device name left.")


class Volumes:
    def __init__(self, caller: Caller, guest: GuestDisks | None = None) -> None:
        self.caller = caller
        self.guest = guest

    async def show(self, volume_id: str) -> Obj:
        status, body = await self.caller.call(
            "GET", f"{VOLUME}/volumes/{volume_id}", headers=VERSION_HEADER
        )
        if status != 200:
            raise VolumeError(404, f"Volume {volume_id} could not be found.")
        volume: Obj = body["volume"]
        return volume

    async def attach(
        self, server_id: str, volume_id: str, host: str, device: str, *, plug: bool = True
    ) -> Obj:
        """Reserve, connect to the guest (when `plug`), complete; undone when a step fails."""
        connector = {"host": host, "initiator": f"iqn.unistack:{host}", "mountpoint": device}
        body = {
            "attachment": {
                "volume_uuid": volume_id,
                "instance_uuid": server_id,
                "connector": connector,
                "mode": "rw",
            }
        }
        status, answer = await self.caller.call(
            "POST", f"{VOLUME}/attachments", body, headers=VERSION_HEADER
        )
        if status != 200:
            raise VolumeError(status if status < 500 else 500, _message(answer))
        attachment_id = str(answer["attachment"]["id"])
        if plug and self.guest is not None:
            try:
                await self.guest.attach_volume(server_id, host, volume_id, device)
            except VolumeError:
                await self.detach(attachment_id, unplug=False)
                raise
        status, answer = await self.caller.call(
            "POST",
            f"{VOLUME}/attachments/{attachment_id}/action",
            {"os-complete": None},
            headers=VERSION_HEADER,
        )
        if status != 204:
            await self.detach(attachment_id, unplug=plug)
            raise VolumeError(500, _message(answer))
        return {"volume_id": volume_id, "attachment_id": attachment_id, "device": device}

    async def detach(self, attachment_id: str, *, unplug: bool = True) -> None:
        """Out of the guest (when `unplug`: the attachment names server and volume), then
        the attachment deleted; one already gone is fine."""
        if unplug and self.guest is not None:
            await self._unplug(self.guest, attachment_id)
        status, answer = await self.caller.call(
            "DELETE", f"{VOLUME}/attachments/{attachment_id}", headers=VERSION_HEADER
        )
        if status not in (200, 204, 404):
            raise VolumeError(status, _message(answer))

    async def _unplug(self, guest: GuestDisks, attachment_id: str) -> None:
        status, body = await self.caller.call(
            "GET", f"{VOLUME}/attachments/{attachment_id}", headers=VERSION_HEADER
        )
        attachment = body.get("attachment") if status == 200 and isinstance(body, dict) else None
        if attachment and attachment.get("instance") and attachment.get("volume_id"):
            await guest.detach_volume(str(attachment["instance"]), str(attachment["volume_id"]))

    async def delete(self, volume_id: str) -> None:
        """Delete a volume the server was to take with it (`delete_on_termination`)."""
        await self.caller.call("DELETE", f"{VOLUME}/volumes/{volume_id}", headers=VERSION_HEADER)
