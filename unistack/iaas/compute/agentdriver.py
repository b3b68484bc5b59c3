"""Instances on real hosts: the `Driver` that asks a host's agent to run a server, as
nova-conductor asks nova-compute.

`HostDrivers` is the driver the server controller holds. For a host whose Node says its
agent runs instances (annotation `unistack.io/instance-drivers`, e.g. `container,qemu`), each
call goes to that agent through the API server's node proxy,
`/api/v1/nodes/{host}/proxy/instances/{id}` (`unistack.agent.instanceroutes` answers); for any
other host — an agent without root, a scale test — the in-process `FakeDriver` keeps state
only, and the hypervisor says `fake`.

Before a boot `AgentDriver` gathers what the host needs in one `InstanceRequest`: the ports
Neutron bound for the server (MAC, addresses with their prefix, gateway, MTU), the
image (which driver it needs, and its kernel and ramdisk for a direct-boot image), the key
pair's public key and the user data, and the volumes attached to it (the agent gives them
to the guest at boot). A server booted from a volume runs the image the volume was made from
(a system container's root is the image's filesystem; the volume stays attached as data).

Interfaces attached to a server after its boot go to its agent as they are made
(`attach_interface`/`detach_interface`, `/instances/{id}/interfaces`: the `ports.GuestNics`
of the interfaces API), each as the NIC a boot request would carry for its port.

Volumes attached to a running server go to its agent too (`attach_volume`/`detach_volume`,
`/instances/{id}/volumes`: the `volumes.GuestDisks` of `volumes.Volumes`). A volume lives in
one host's pool (its Cinder host, `node@unistack-pool#pool`). For a server on another host,
the volume's host is asked to serve it (`connect`: its agent's `/volumes/{id}/connection`,
Cinder's initialize_connection, answering NBD connection info) and the server's agent gets
that connection with the volume; when the server leaves the host or the volume is detached,
the connection ends (`disconnect`: terminate_connection).

A cold migration asks the source host's agent to stop the server and stream its disk to the
destination's agent (`migrate_disk`, `unistack.agent.diskmove`), then boots it at the
destination (`arrive`) from that disk. Servers move only between hosts of one kind
(`movable`): fake to fake, or to a host offering every real driver the source does.

A live migration (`live_migrate`) goes agent to agent too: the source says where the guest's
devices sit, the destination readies a paused QEMU like it (with its own connections to the
server's volumes) listening on the destination's InternalIP, the source copies disks and
memory straight there, and the destination resumes it (`unistack.agent.instances`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from unistack import nodeagent
from unistack.agent import instancemetadata
from unistack.agent.instancemetadata import nic_of
from unistack.client.api import ApiError, Client
from unistack.iaas.compute import kinds
from unistack.iaas.compute.driver import (
    Driver,
    DriverError,
    FakeDriver,
    MigrationAborted,
    MigrationError,
    Outcome,
    PasswordError,
    Steering,
    on_host,
)
from unistack.iaas.compute.ports import Caller, NicError
from unistack.iaas.compute.volumes import VolumeError, pool_node
from unistack.iaas.records import Records, spec_of, status_of
from unistack.runtime.informer import Informer

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DRIVERS_ANNOTATION = "unistack.io/instance-drivers"
REAL_DRIVERS = ("container", "qemu")
NETWORK = "/network/v2.0"
IMAGE = "/image/v2/images"
VOLUMES = "/volume/v3/volumes"
PROGRESS_INTERVAL_S = 1.0  # how often a live migration's progress is read from its source
UNREACHABLE_S = 60.0  # a live migration's source silent this long: the migration is lost
DISK_FORMATS = ("qcow2", "raw", "ami", "vmdk", "vdi", "vhd", "vhdx", "iso")


class SourceSilent(Exception):
    """A live migration's source host does not answer: how its copy ends is unknown, so the
    destination stays as it is (it may hold the only running copy soon) for a later try."""


class AgentError(DriverError):
    """The host could not do what was asked; the message goes in the server's fault."""


def node_drivers(node: Obj | None) -> tuple[str, ...]:
    """The instance drivers a Node's agent offers (none: only the controller's fake)."""
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    listed = str(annotations.get(DRIVERS_ANNOTATION) or "")
    return tuple(name for name in listed.split(",") if name)


def hypervisor_type(node: Obj | None, default: str) -> str:
    """What a hypervisor says it is: its agent's first real driver, else `default` (fake)."""
    real = [name for name in node_drivers(node) if name in REAL_DRIVERS]
    return real[0] if real else default


def choose_driver(image: Obj, offered: tuple[str, ...]) -> str:
    """The driver an image needs: its `hypervisor_type` property when set, else a system
    container for a filesystem archive (`docker` container format) and a VM for a disk."""
    wanted = image.get("hypervisor_type") or image.get("img_hv_type")
    if not wanted:
        is_disk = (
            image.get("container_format") in ("bare", "ami", "ovf", "ova")
            and image.get("disk_format") in DISK_FORMATS
        )
        wanted = "qemu" if is_disk else "container"
    if wanted not in offered:
        raise AgentError(f"image {image.get('id')} needs the {wanted} driver, host has {offered}")
    return str(wanted)


def volume_node(volume: Obj, host: str) -> str:
    """The host whose pool keeps `volume` (its Cinder host `node@unistack-pool#pool`);
    VolumeError when no host's pool has it (the fake backend keeps no data)."""
    node = pool_node(volume)
    if node is None:
        where = str(volume.get("os-vol-host-attr:host") or "")
        raise VolumeError(
            400, f"Volume {volume.get('id')} has no data on any host (backend {where or 'none'}), "
            f"so it cannot be attached to a server running on {host}."
        )  # fmt: skip
    return node


class AgentDriver:
    """`Driver` calls carried out by the agent of the server's host."""

    hypervisor_type = "container"

    def __init__(self, client: Client, caller: Caller, records: Records) -> None:
        self.client = client
        self.caller = caller
        self.records = records

    async def _ask(
        self,
        method: str,
        host: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Obj:
        try:
            return await self.client.request_json(
                method, f"/api/v1/nodes/{host}/proxy/instances/{path}", body=body, params=params
            )
        except ApiError as error:
            raise AgentError(f"host {host}: {error.message}") from None

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        status, body = await self.caller.call("GET", path, params=params)
        if status != 200:
            raise AgentError(f"GET {path} answered {status}")
        return body

    async def request(self, server: Obj, driver: str, image: Obj) -> Obj:
        """The `InstanceRequest` the host's agent boots from."""
        name, spec = server["metadata"]["name"], spec_of(server)
        flavor = spec.get("flavor") or {}
        nics = await self.nics(name, status_of(server).get("ports") or [])
        request = {
            "driver": driver,
            "hostname": _hostname(str(spec.get("name") or name)),
            "vcpus": int(flavor.get("vcpus") or 1),
            "memory_mb": int(flavor.get("ram") or 64),
            "root_gb": int(flavor.get("disk") or 0),
            "ephemeral_gb": int(flavor.get("ephemeral") or 0),
            "image_id": image["id"],
            "image_kind": "filesystem" if driver == "container" else "disk",
            "kernel_id": image.get("kernel_id"),
            "ramdisk_id": image.get("ramdisk_id"),
            "kernel_args": str(image.get("os_command_line") or ""),
            "nics": nics,
            "public_keys": self.public_keys(spec),
            "user_data": spec.get("user_data") or "",
            "metadata": {str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
            "volumes": attached_volumes(server),
        }
        files = spec.get("personality") or []
        if files:  # the last of a path wins, as when Nova wrote them in order
            request["personality"] = {str(f["path"]): str(f.get("contents", "")) for f in files}
        if wants_config_drive(spec, image):
            request["config_drive"] = self.config_drive(server, nics)
        return request

    def config_drive(self, server: Obj, nics: list[Obj]) -> dict[str, str]:
        """The config drive's files (path → base64): the metadata service's documents as
        they stand at boot (Nova builds the drive then too, and never updates it)."""
        spec = spec_of(server)
        owner = f"{spec.get('user_id')}/{spec.get('key_name')}"
        keys = instancemetadata.public_keys(
            server, self.records.indexed(kinds.KEYPAIRS, "owner", owner)
        )
        v4 = [
            address.split("/")[0]
            for nic in nics
            for address in nic["fixed_ips"]
            if ipaddress.ip_interface(address).version == 4
        ]
        instance = instancemetadata.describe(
            server,
            local_ipv4=v4[0] if v4 else "",
            keys=keys,
            devices=instancemetadata.tagged_devices(
                server, {nic["port_id"]: nic["mac"] for nic in nics}
            ),
            nics=tuple(nics),
        )
        files = instancemetadata.drive_files(instance)
        return {path: base64.b64encode(body).decode() for path, body in files.items()}

    async def nics(self, server_id: str, order: Sequence[str] = ()) -> list[Obj]:
        """The server's ports as NICs: eth0, eth1... in `order` (the order the server asked
        for them, as Nova gives them to the guest: the first is the one with the default
        route), then any other by creation."""
        ports = (await self._get(f"{NETWORK}/ports", {"device_id": server_id}))["ports"]
        rank = {port_id: index for index, port_id in enumerate(order)}

        def position(port: Obj) -> tuple[int, str]:
            return rank.get(str(port.get("id")), len(rank)), str(port.get("created_at") or "")

        return [await self._nic(port) for port in sorted(ports, key=position)]

    async def _nic(self, port: Obj) -> Obj:
        """One port as the guest's NIC (`instancemetadata.nic_of`), with its network's MTU
        and its subnets' prefixes, gateway and DNS servers."""
        network = (await self._get(f"{NETWORK}/networks/{port['network_id']}"))["network"]
        listed = await self._get(f"{NETWORK}/subnets", {"network_id": port["network_id"]})
        return nic_of(port, {subnet["id"]: subnet for subnet in listed["subnets"]}, network)

    async def attach_interface(self, server_id: str, host: str, port_id: str) -> None:
        """The port, bound to `host`, into the server's guest there (NicError: why not)."""
        try:
            nic = await self._nic((await self._get(f"{NETWORK}/ports/{port_id}"))["port"])
            await self._ask("POST", host, f"{server_id}/interfaces", nic)
        except AgentError as error:
            raise NicError(str(error)) from None

    async def detach_interface(self, server_id: str, host: str, port_id: str) -> None:
        try:
            await self._ask("DELETE", host, f"{server_id}/interfaces/{port_id}")
        except AgentError as error:
            raise NicError(str(error)) from None

    def public_keys(self, spec: Obj) -> list[str]:
        key_name = spec.get("key_name")
        if not key_name:
            return []
        owned = self.records.indexed(kinds.KEYPAIRS, "owner", f"{spec.get('user_id')}/{key_name}")
        return [str(spec_of(pair).get("public_key") or "") for pair in owned]

    async def boot_image(self, spec: Obj) -> str:
        """The image a server boots: its own, or for a server booted from a volume, the image
        the volume was made from (Cinder's `volume_image_metadata`)."""
        if spec.get("image_ref"):
            return str(spec["image_ref"])
        for device in spec.get("block_device_mapping_v2") or []:
            if str(device.get("boot_index", "")) != "0":
                continue
            if device.get("source_type") == "image":
                return str(device.get("uuid"))
            if device.get("source_type") == "volume":
                volume = (await self._get(f"{VOLUMES}/{device.get('uuid')}"))["volume"]
                source = (volume.get("volume_image_metadata") or {}).get("image_id")
                if source:
                    return str(source)
        raise AgentError("the boot volume was not made from an image: nothing to boot here")

    async def spawn_with(
        self, server: Obj, host: str, offered: tuple[str, ...], power_on: bool = True
    ) -> Outcome:
        body = await self.request_on(server, host, offered)
        if not power_on:  # recorded there, booted by a later start
            body["power_on"] = False
        try:
            answer = await self._ask("PUT", host, server["metadata"]["name"], body)
        except AgentError:
            await self.disconnect_all(body, host)  # the boot failed: no connection stays
            raise
        return Outcome(int(answer.get("power_state", kinds.NOSTATE)))

    async def request_on(self, server: Obj, host: str, offered: tuple[str, ...]) -> Obj:
        """The `InstanceRequest` for the server on `host`, each volume another host keeps
        with the connection serving it there (connected now; AgentError: none stays)."""
        image = await self._get(f"{IMAGE}/{await self.boot_image(spec_of(server))}")
        body = await self.request(server, choose_driver(image, offered), image)
        try:
            for item in body["volumes"]:
                connection = await self.connect(await self._volume(item["volume_id"]), host)
                if connection is not None:
                    item["connection"] = connection
        except VolumeError as error:
            await self.disconnect_all(body, host)
            raise AgentError(error.message) from None
        return body

    async def disconnect_all(self, body: Obj, host: str) -> None:
        for item in body["volumes"]:
            if item.get("connection") is not None:
                await self.disconnect(item["volume_id"], host)

    async def live_migrate(
        self, server: Obj, dest: str, listen: str, offered: tuple[str, ...], steering: Steering
    ) -> Outcome:
        """Nova's live migration with block migration, agent to agent: the destination
        readied with the guest's devices where the source has them (`slots`), its own volume
        connections, and a QEMU waiting on `listen`; the source copies disks and memory
        straight to it in the background (`live-migrate`), followed here until it is done;
        the destination resumes the guest (a paused one stays paused) with the console it
        printed so far. A destination that is never resumed goes again. Taken up where a
        controller before left it: a switched guest is resumed, a copy under way followed,
        one that never began started."""
        name, source = server["metadata"]["name"], str(status_of(server).get("host") or "")
        if steering.switched:  # its console from the source, which may be gone by now
            sent: Obj = {}
            with contextlib.suppress(AgentError):
                sent = await self._ask("GET", source, f"{name}/live-migrate")
        else:
            sent = await self._carry(server, dest, listen, offered, steering)
        await steering.switch()
        paused = status_of(server).get("vm_state") == kinds.PAUSED  # it stays so there
        finish = {"console": sent.get("console") or "", "paused": paused}
        answer = await self._ask("POST", dest, f"{name}/incoming/finish", finish)
        return Outcome(int(answer.get("power_state", kinds.NOSTATE)))

    async def _carry(
        self, server: Obj, dest: str, listen: str, offered: tuple[str, ...], steering: Steering
    ) -> Obj:
        """The guest's disks and memory on `dest`, paused on both hosts: the source's last
        word (`{"state": "completed", "console"}`). On failure the destination goes (the
        guest runs on at the source)."""
        name, source = server["metadata"]["name"], str(status_of(server).get("host") or "")
        begun = False
        if steering.started:  # by a controller before this one: did the copy begin?
            try:
                state = await self._ask("GET", source, f"{name}/live-migrate")
            except AgentError as error:
                raise SourceSilent(str(error)) from None
            begun = state.get("state") != "none"
            if not begun:  # readied, never sent to: readied again
                await self.destroy(on_host(server, dest))
        if not begun:
            incoming = await self._ready(server, dest, listen, offered)
        try:
            if not begun:
                await self._ask("POST", source, f"{name}/live-migrate", incoming)
            return await self._follow(source, name, steering)
        except (AgentError, MigrationError):  # the source said it failed: the guest is there
            try:
                await self.destroy(on_host(server, dest))
            except AgentError:
                log.exception("the destination of %s on %s did not go", name, dest)
            raise

    async def _ready(self, server: Obj, dest: str, listen: str, offered: tuple[str, ...]) -> Obj:
        """The destination's QEMU paused, waiting on `listen` with the guest's devices where
        the source has them: where it waits (`Incoming`)."""
        name, source = server["metadata"]["name"], str(status_of(server).get("host") or "")
        slots = (await self._ask("GET", source, f"{name}/slots"))["slots"]
        body = await self.request_on(server, dest, offered)
        try:
            return await self._ask(
                "PUT", dest, f"{name}/incoming", {**body, "slots": slots, "listen": listen}
            )
        except AgentError:
            await self.disconnect_all(body, dest)
            raise

    async def _follow(self, source: str, name: str, steering: Steering) -> Obj:
        """The source's copy followed until it ends (each read waits up to
        PROGRESS_INTERVAL_S for the end): its progress reported, the admin's wish passed on
        once; its last word, or AgentError (MigrationAborted when it was asked to stop);
        SourceSilent when its host does not answer for UNREACHABLE_S."""
        asked, heard = None, asyncio.get_running_loop().time()
        waiting = {"wait": str(PROGRESS_INTERVAL_S)}
        while True:
            wish = steering.wish()
            if wish is not None and wish != asked:
                with contextlib.suppress(AgentError):  # it ended meanwhile: nothing to steer
                    await self._ask("POST", source, f"{name}/live-migrate/{_dashed(wish)}")
                    asked = wish
            try:  # answered as soon as it ends: the guest waits paused meanwhile
                state = await self._ask("GET", source, f"{name}/live-migrate", params=waiting)
            except AgentError as error:
                if asyncio.get_running_loop().time() - heard > UNREACHABLE_S:
                    raise SourceSilent(str(error)) from None
                await asyncio.sleep(PROGRESS_INTERVAL_S)
                continue
            heard = asyncio.get_running_loop().time()
            if state.get("state") == "completed":
                return state
            if state.get("state") == "failed":
                message = f"host {source}: {state.get('error') or 'the copy failed'}"
                if "abort" in (asked, wish):
                    raise MigrationAborted(f"aborted on request ({message})")
                raise AgentError(message)
            if state.get("state") != "running":
                raise AgentError(f"host {source} has no live migration of {name} under way")
            if state.get("progress"):
                await steering.report(state["progress"])

    async def migrate_disk(self, server: Obj, target: str) -> None:
        """The server's host stops it and streams its disk to the agent at `target`."""
        host = str(status_of(server).get("host") or "")
        await self._ask("POST", host, f"{server['metadata']['name']}/migrate", {"target": target})

    async def action(self, server: Obj, action: str, hard: bool = False) -> Outcome:
        host = str(status_of(server).get("host") or "")
        name = server["metadata"]["name"]
        body = {"action": action, "hard": hard}
        answer = await self._ask("POST", host, f"{name}/action", body)
        return Outcome(int(answer.get("power_state", kinds.NOSTATE)))

    async def rescue(self, server: Obj, image_id: str, offered: tuple[str, ...]) -> Outcome:
        """The host boots image `image_id` as the server's rescue (the agent refuses, 409,
        an image of another kind than the server's)."""
        image = await self._get(f"{IMAGE}/{image_id}")
        kind = "filesystem" if choose_driver(image, offered) == "container" else "disk"
        rescue = {
            "image_id": image_id,
            "image_kind": kind,
            "kernel_id": image.get("kernel_id"),
            "ramdisk_id": image.get("ramdisk_id"),
            "kernel_args": str(image.get("os_command_line") or ""),
            "device": str(image.get("hw_rescue_device") or ""),
            "bus": str(image.get("hw_rescue_bus") or ""),
        }
        host, name = str(status_of(server).get("host") or ""), server["metadata"]["name"]
        answer = await self._ask(
            "POST", host, f"{name}/action", {"action": "rescue", "image": rescue}
        )
        return Outcome(int(answer.get("power_state", kinds.NOSTATE)))

    async def destroy(self, server: Obj) -> None:
        """The instance gone from its host, and its connections to other hosts' volumes."""
        host = str(status_of(server).get("host") or "")
        if host:
            await self._ask("DELETE", host, server["metadata"]["name"])
            for item in attached_volumes(server):
                await self.disconnect(item["volume_id"], host)

    async def connect(self, volume: Obj, host: str) -> Obj | None:
        """How a server on `host` reaches `volume`: None when `host` keeps it; otherwise the
        connection its host serves (Cinder's initialize_connection), or VolumeError."""
        node, volume_id = volume_node(volume, host), volume.get("id")
        if node == host:
            return None
        try:
            answer = await self.client.request_json(
                "POST", f"/api/v1/nodes/{node}/proxy/volumes/{volume_id}/connection",
                body={"host": host},
            )  # fmt: skip
        except ApiError as error:
            raise VolumeError(
                500, f"Volume {volume_id} on host {node} cannot be served to host {host}: "
                f"{error.message}"
            ) from None  # fmt: skip
        if not isinstance(answer, dict) or answer.get("driver_volume_type") != "nbd":
            raise VolumeError(500, f"host {node} answered no NBD connection for {volume_id}")
        data: Obj = answer.get("data") or {}
        return data

    async def disconnect(self, volume_id: str, host: str) -> None:
        """`host` no longer reaches the volume (terminate_connection); nothing when its pool
        keeps it, the volume is gone, or its host is away (the export ends with the volume)."""
        try:
            node = pool_node(await self._volume(volume_id))
        except AgentError:
            return
        if node is None or node == host:
            return
        try:
            await self.client.request_json(
                "DELETE", f"/api/v1/nodes/{node}/proxy/volumes/{volume_id}/connection/{host}"
            )
        except ApiError as error:
            log.warning("volume %s: host %s keeps serving %s: %s", volume_id, node, host, error)

    async def _volume(self, volume_id: str) -> Obj:
        volume: Obj = (await self._get(f"{VOLUMES}/{volume_id}"))["volume"]
        return volume

    async def attach_volume(self, server_id: str, host: str, volume_id: str, device: str) -> None:
        """The volume into the running (or stopped) server on `host`: from its pool, or
        connected to the host that keeps it."""
        try:
            volume = await self._volume(volume_id)
        except AgentError as error:
            raise VolumeError(404, f"Volume {volume_id} could not be found: {error}") from None
        body: Obj = {"volume_id": volume_id, "device": device}
        connection = await self.connect(volume, host)
        if connection is not None:
            body["connection"] = connection
        try:
            await self._volume_call("POST", host, f"{server_id}/volumes", body)
        except VolumeError:
            if connection is not None:
                await self.disconnect(volume_id, host)
            raise

    async def detach_volume(self, server_id: str, host: str, volume_id: str) -> None:
        await self._volume_call("DELETE", host, f"{server_id}/volumes/{volume_id}")
        await self.disconnect(volume_id, host)

    async def extend_volume(self, server_id: str, host: str, volume_id: str) -> None:
        await self._volume_call("POST", host, f"{server_id}/volumes/{volume_id}/extend")

    async def set_password(self, server_id: str, host: str, password: str) -> None:
        """The guest's root password, set by the host's agent (409: this guest cannot)."""
        try:
            await self.client.request_json(
                "POST",
                f"/api/v1/nodes/{host}/proxy/instances/{server_id}/password",
                body={"password": password},
            )
        except ApiError as error:
            raise PasswordError(f"host {host}: {error.message}", error.status == 501) from None

    async def _volume_call(self, method: str, host: str, path: str, body: Any = None) -> None:
        """An agent call for a volume: its refusal as a VolumeError (4xx: the request's)."""
        try:
            await self.client.request_json(
                method, f"/api/v1/nodes/{host}/proxy/instances/{path}", body=body
            )
        except ApiError as error:
            status = 400 if 400 <= error.status < 500 else 500
            raise VolumeError(status, f"host {host}: {error.message}") from None

    async def console(self, server: Obj, lines: int | None) -> str:
        host = str(status_of(server).get("host") or "")
        path = server["metadata"]["name"] + "/console" + (f"?lines={lines}" if lines else "")
        return str((await self._ask("GET", host, path)).get("output") or "")


def _dashed(wish: str) -> str:
    return wish.replace("_", "-")


def wants_config_drive(spec: Obj, image: Obj) -> bool:
    """Whether the server gets a config drive: asked for at boot, or its image requires one
    (`img_config_drive=mandatory`, as Nova honours it)."""
    return bool(spec.get("config_drive")) or image.get("img_config_drive") == "mandatory"


def attached_volumes(server: Obj) -> list[Obj]:
    """The server's volumes as the agent attaches them: `{"volume_id", "device"}`."""
    return [
        {"volume_id": str(item["volume_id"]), "device": str(item.get("device") or "")}
        for item in status_of(server).get("volumes_attached") or []
        if isinstance(item, dict) and item.get("volume_id")
    ]


def _hostname(name: str) -> str:
    """A display name as a hostname (Nova's sanitisation: letters, digits and dashes)."""
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return (cleaned or "server")[:63]


class HostDrivers:
    """The server controller's `Driver`: the host's agent when it runs instances, else the
    in-process fake."""

    hypervisor_type = "fake"

    def __init__(self, nodes: Informer, agent: AgentDriver, fake: Driver | None = None) -> None:
        self.nodes = nodes
        self.agent = agent
        self.fake: Driver = fake or FakeDriver()

    def offered(self, host: str) -> tuple[str, ...]:
        drivers = node_drivers(self.nodes.cache.get(host))
        return tuple(name for name in drivers if name in REAL_DRIVERS)

    def _real(self, server: Obj) -> bool:
        return bool(self.offered(str(status_of(server).get("host") or "")))

    async def spawn(self, server: Obj, host: str) -> Outcome:
        offered = self.offered(host)
        if not offered:
            return await self.fake.spawn(server, host)
        return await self.agent.spawn_with(server, host, offered)

    async def reboot(self, server: Obj, hard: bool) -> Outcome:
        if not self._real(server):
            return await self.fake.reboot(server, hard)
        return await self.agent.action(server, "reboot", hard)

    async def power_off(self, server: Obj) -> Outcome:
        if not self._real(server):
            return await self.fake.power_off(server)
        return await self.agent.action(server, "stop")

    async def power_on(self, server: Obj) -> Outcome:
        if not self._real(server):
            return await self.fake.power_on(server)
        return await self.agent.action(server, "start")

    async def pause(self, server: Obj) -> Outcome:
        return await self._hold(server, "pause")

    async def unpause(self, server: Obj) -> Outcome:
        return await self._hold(server, "unpause")

    async def suspend(self, server: Obj) -> Outcome:
        return await self._hold(server, "suspend")

    async def resume(self, server: Obj) -> Outcome:
        return await self._hold(server, "resume")

    async def _hold(self, server: Obj, action: str) -> Outcome:
        if not self._real(server):
            held: Outcome = await getattr(self.fake, action)(server)
            return held
        return await self.agent.action(server, action)

    async def rescue(self, server: Obj, image_id: str) -> Outcome:
        if not self._real(server):
            return await self.fake.rescue(server, image_id)
        offered = self.offered(str(status_of(server).get("host") or ""))
        return await self.agent.rescue(server, image_id, offered)

    async def unrescue(self, server: Obj) -> Outcome:
        if not self._real(server):
            return await self.fake.unrescue(server)
        return await self.agent.action(server, "unrescue")

    async def destroy(self, server: Obj) -> None:
        if not self._real(server):
            return await self.fake.destroy(server)
        return await self.agent.destroy(server)

    def movable(self, source: str, dest: str) -> bool:
        """Both hosts fake, or `dest` offers every real driver `source` does."""
        here, there = set(self.offered(source)), set(self.offered(dest))
        return here <= there and bool(here) == bool(there)

    async def migrate(self, server: Obj, dest: str) -> None:
        """`driver.Driver.migrate`: the source's agent sends the disk to `dest`'s agent."""
        if not self._real(server):
            return await self.fake.migrate(server, dest)
        target = nodeagent.agent_url(self.nodes.cache.get(dest))
        if target is None:
            raise MigrationError(f"host {dest} has no agent endpoint")
        try:
            await self.agent.migrate_disk(server, target)
        except AgentError as error:
            raise MigrationError(str(error)) from None

    async def arrive(self, server: Obj, host: str, power_on: bool) -> Outcome:
        offered = self.offered(host)
        if not offered:
            return await self.fake.arrive(server, host, power_on)
        return await self.agent.spawn_with(server, host, offered, power_on)

    async def live_migrate(self, server: Obj, dest: str, steering: Steering) -> Outcome:
        """`driver.Driver.live_migrate`: the destination's QEMU listens on the address its
        agent is reached at, on the hosts' own network."""
        if not self._real(server):
            return await self.fake.live_migrate(server, dest, steering)
        address = nodeagent.agent_address(self.nodes.cache.get(dest))
        if address is None:
            raise MigrationError(f"host {dest} has no agent endpoint")
        try:
            return await self.agent.live_migrate(
                server, dest, address, self.offered(dest), steering
            )
        except AgentError as error:
            raise MigrationError(str(error)) from None

    async def attach_volume(self, server_id: str, host: str, volume_id: str, device: str) -> None:
        """`volumes.GuestDisks`: the host's agent attaches it; a fake host has no guest."""
        if self.offered(host):
            await self.agent.attach_volume(server_id, host, volume_id, device)

    async def detach_volume(self, server_id: str, volume_id: str) -> None:
        host = self._host_of(server_id)
        if self.offered(host):
            await self.agent.detach_volume(server_id, host, volume_id)

    async def attach_interface(self, server_id: str, host: str, port_id: str) -> None:
        """`ports.GuestNics`: the host's agent plugs it into the guest; a fake host has none."""
        if self.offered(host):
            await self.agent.attach_interface(server_id, host, port_id)

    async def detach_interface(self, server_id: str, port_id: str) -> None:
        host = self._host_of(server_id)
        if self.offered(host):
            await self.agent.detach_interface(server_id, host, port_id)

    def _host_of(self, server_id: str) -> str:
        return str(status_of(self.agent.records.get(kinds.SERVERS, server_id)).get("host") or "")

    async def set_password(self, server_id: str, password: str) -> None:
        """`driver.GuestPasswords`: a real host's agent sets it; the fake has no guest."""
        host = self._host_of(server_id)
        if self.offered(host):
            await self.agent.set_password(server_id, host, password)

    async def extend_volume(self, server_id: str, volume_id: str) -> None:
        """`volumes.GuestDisks`: the guest on a real host sees the volume's new size."""
        host = self._host_of(server_id)
        if self.offered(host):
            await self.agent.extend_volume(server_id, host, volume_id)

    async def console(self, server: Obj, lines: int | None) -> str | None:
        """The guest's console from its host, or None when the server's console is the one
        the fake recorded on it."""
        if not self._real(server):
            return None
        return await self.agent.console(server, lines)
