"""A server's volumes, through the Block Storage attachments API as Nova does it (3.44).

`Volumes.attach` reserves the volume for the server with the host's connector
(`POST /volume/v3/attachments`), then completes it (`os-complete`): the volume goes
`in-use`. `detach` deletes the attachment: the volume is `available` again. The answers
are what the server records (`status.volumes_attached`: volume, attachment, device). A
Cinder error comes back as `VolumeError` with Cinder's status and message, for the API to
pass on in Nova's words.
"""

from __future__ import annotations

from typing import Any

from unistack.iaas.compute.ports import Caller

Obj = dict[str, Any]
VOLUME = "/volume/v3"
VERSION_HEADER = {"OpenStack-API-Version": "volume 3.44"}


class VolumeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
    return str(body)[:200]


def next_device(attached: list[Obj]) -> str:
    """The next free `/dev/vdX` after the root disk (vda)."""
    used = {str(item.get("device")) for item in attached}
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"/dev/vd{letter}" not in used:
            return f"/dev/vd{letter}"
    raise VolumeError(400, "No free device name left.")


class Volumes:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def show(self, volume_id: str) -> Obj:
        status, body = await self.caller.call(
            "GET", f"{VOLUME}/volumes/{volume_id}", headers=VERSION_HEADER
        )
        if status != 200:
            raise VolumeError(404, f"Volume {volume_id} could not be found.")
        volume: Obj = body["volume"]
        return volume

    async def attach(self, server_id: str, volume_id: str, host: str, device: str) -> Obj:
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
        status, answer = await self.caller.call(
            "POST",
            f"{VOLUME}/attachments/{attachment_id}/action",
            {"os-complete": None},
            headers=VERSION_HEADER,
        )
        if status != 204:
            await self.detach(attachment_id)
            raise VolumeError(500, _message(answer))
        return {"volume_id": volume_id, "attachment_id": attachment_id, "device": device}

    async def detach(self, attachment_id: str) -> None:
        status, answer = await self.caller.call(
            "DELETE", f"{VOLUME}/attachments/{attachment_id}", headers=VERSION_HEADER
        )
        if status not in (200, 204, 404):
            raise VolumeError(status, _message(answer))

    async def delete(self, volume_id: str) -> None:
        """Delete a volume the server was to take with it (`delete_on_termination`)."""
        await self.caller.call("DELETE", f"{VOLUME}/volumes/{volume_id}", headers=VERSION_HEADER)
