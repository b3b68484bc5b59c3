"""The agent's compute service: the instances of the servers scheduled to this host, as
nova-compute runs them.

The compute controller (`unistack.iaas.compute.controller`) decides what a server needs; it
reaches the server's host through the API server's node proxy
(`/api/v1/nodes/{host}/proxy/instances/...`, `unistack.iaas.compute.agentdriver`), as
nova-conductor calls nova-compute. The routes, served by `unistack.agent.server`:

- `PUT /instances/{id}` with an `InstanceRequest`: prepare and boot → `{"power_state": 1}`;
- `POST /instances/{id}/action` with `{"action": "stop" | "start" | "reboot" | "pause" |
  "unpause" | "suspend" | "resume", "hard": bool}` → `{"power_state": n}` (when the host
  comes back, a paused guest, or a suspended container, is booted again and held so; a
  suspended VM keeps its saved state, and its NICs and volumes are plugged again when it
  resumes); `{"action": "rescue", "image": {"image_id", "image_kind", "kernel_id",
  "ramdisk_id", "kernel_args", "device", "bus"}}` boots the rescue image with the server's
  own root as its second disk (`InstanceDriver.rescue`, also when the host comes back; a
  stable device rescue with `device` or `bus`), `{"action": "unrescue"}` the server's own
  again;
- `DELETE /instances/{id}`: the instance and its NICs go;
- `GET /instances/{id}` → `{"power_state": n}`, `GET /instances/{id}/console?lines=N` →
  `{"output": "..."}`, `GET /instances` → every instance here with its power state;
- `POST /instances/{id}/volumes` `{"volume_id", "device": "/dev/vdb", "connection": null |
  {"host", "port", "export"}}`: a volume of this host's pool, or of another host's that
  serves it over NBD, into the guest (running or not), `DELETE /instances/{id}/volumes/{volume
  id}`: out again (`unistack.agent.instancevolumes`: a loop device for a container, the file
  for a VM; a volume another host keeps that comes without a connection is a 409);
  `POST /instances/{id}/volumes/{volume id}/extend`: the guest shown the volume's new size
  after the pool grew it (Cinder's extend of an in-use volume, Nova's `volume-extended`);
- `POST /instances/{id}/interfaces` with a NIC as the request's `nics` carry it → `{"port_id",
  "device"}`: the port into the guest, running or not (a container's veth `ethN` in its
  namespace, configured there; a VM's tap, hot-plugged as virtio-net), `DELETE
  /instances/{id}/interfaces/{port id}`: out again (Nova's interface attach and detach);
- `POST /instances/{id}/password` `{"password"}`: the guest's root password (409 when it
  cannot take it now, 501 when its kind never can);
- `POST /instances/{id}/migrate` `{"target": "http://<agent>"}`: a cold migration's first
  half — the instance stopped, its disk streamed to the other host's agent
  (`unistack.agent.diskmove`), its NICs unplugged here; the instance and its request stay
  here, stopped, until the migration is confirmed (`DELETE`) or reverted (`PUT` boots it
  again). `PUT /instances/{id}/disk?driver=<name>` is the other host's half: the disk
  unpacked where that driver keeps the instance; then `PUT /instances/{id}` boots it there
  (with `"power_on": false` for a server that was stopped: recorded, booted by `start`).
- a live migration (a VM; a system container cannot be checkpointed here), Nova's
  pre_live_migration / live_migration / post_live_migration_at_destination:
  `GET /instances/{id}/slots` on the source → `{"slots": {device id: PCI slot}}`;
  `PUT /instances/{id}/incoming` on the destination with the `InstanceRequest` plus
  `"slots"` and `"listen"` (its address on the hosts' network) → where its QEMU waits
  (`{"host", "nbd_port", "migration_port", "exports"}`); `POST /instances/{id}/live-migrate`
  on the source with that answer → 202: the disks and memory are copied in the background,
  the guest left paused there; `GET /instances/{id}/live-migrate` on the source says how it
  goes, answering at its end or after `?wait=S` seconds (`{"state": "running", "progress":
  {memory_* and disk_* bytes}}`, then `"completed"` with the `"console"` it printed there,
  or `"failed"` with the `"error"`);
  `POST /instances/{id}/incoming/finish` `{"console", "paused"}` on the destination → the
  guest resumed there (kept paused when it was paused before). The source's paused copy
  goes by `DELETE`. Meanwhile `POST /instances/{id}/live-migrate/abort` or
  `/force-complete` steer it (409 when none is under way).

Preparing a boot: the image from the registry (`openstack/images:<id>`, the artifact Glance
keeps; unpacked once for a system container, the disk file for a VM), then the NICs — a
network namespace `unistack-server-<id>` with a veth per port for a container, a tap per port
for a VM — on their networks' bridges (`unistack.dataplane.tenantnet`), then the driver
(`unistack.dataplane.instances`), with the server's volumes as its disks. Every request and
every attachment is kept on disk, so when the host comes back (`unistack up` after `down`)
`resume` boots again what was running with its volumes, and an agent restart finds the
running instances where the drivers keep them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from unistack.agent import diskmove, jsonhttp
from unistack.agent.instancerequests import (
    InstanceRequest,
    NicRequest,
    RequestError,
    RescueImage,
    nic_request,
    parse_request,
    rescue_image,
    volume_request,
)
from unistack.agent.instancevolumes import (
    AttachedVolumes,
    VolumeFiles,
    VolumeRequest,
    device_target,
    with_volume,
)
from unistack.dataplane import iproute, loopdev, nbd, netns, tenantnames
from unistack.dataplane.instances import (
    Incoming,
    InstanceDriver,
    InstanceError,
    InstanceSpec,
    LiveMigration,
    Nic,
    NotSupported,
    PowerState,
    RescueBoot,
)
from unistack.dataplane.tenantnet import NetworkWiring, PortWiring
from unistack.images.pull import ImageCache, ImagePullError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
ARTIFACTS = "openstack/images"
# what each action leaves the guest held in (no entry: running, or stopped by `stop`)
HOLDS = {"pause": "paused", "unpause": "", "suspend": "suspended", "resume": ""}
ACTIONS = ("stop", "start", "reboot", *HOLDS, "rescue", "unrescue")
STEERING = {"abort": "abort", "force-complete": "force_complete"}
HOLDING = {held: action for action, held in HOLDS.items() if held}
# nothing to boot again: the guest is there (a suspended VM's state is on disk)
HELD_OR_RUNNING = (PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED)
MAX_STATE_WAIT_S = 30.0  # a live migration's state is waited for at most this long


class Wiring(Protocol):
    """What instances need of the L2 side (`tenantnet.L2`); blocking calls, run in a thread."""

    def plug_veth(self, port: PortWiring, netns_path: str, ifname: str) -> None: ...
    def plug_tap(self, port: PortWiring) -> None: ...
    def unplug(self, port_id: str) -> None: ...


class InstanceService:
    """Boots, drives and removes this host's instances; one lock per server."""

    def __init__(
        self,
        root: Path,
        drivers: Mapping[str, InstanceDriver],
        wiring: Wiring,
        images: ImageCache,
        *,
        ensure_network: Callable[[NetworkWiring], Awaitable[None]],
        registry: str,
        namespaces: netns.Namespaces,
        volumes: VolumeFiles | None = None,
        loops: loopdev.LoopDevices | None = None,
        connections: nbd.NbdConnections | None = None,
        token: str = "",
    ) -> None:
        self.root = root
        self.token = token  # the node-proxy token: other hosts' agents take it too
        self.drivers = drivers
        self.wiring = wiring
        self.ensure_network = ensure_network  # `networking.TenantNetworking.ensure_network`
        self.images = images
        self.registry = registry
        self.namespaces = namespaces
        self.records = root / "requests"
        self.records.mkdir(parents=True, exist_ok=True)
        loops = loops or loopdev.KernelLoopDevices()
        self.volumes = AttachedVolumes(self.records / "volumes", volumes, loops, connections)
        self._locks: dict[str, asyncio.Lock] = {}
        # live migrations sent from here, kept until the instance goes or is sent again:
        # each one's console for the destination when it went, its error when it did not
        self._sending: dict[str, asyncio.Task[str]] = {}

    def lock(self, server_id: str) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    def driver(self, name: str) -> InstanceDriver:
        try:
            return self.drivers[name]
        except KeyError:
            raise RequestError(f"this host has no {name} driver ({sorted(self.drivers)})") from None

    def recorded(self, server_id: str) -> InstanceRequest | None:
        path = self.records / f"{server_id}.json"
        if not path.exists():
            return None
        return parse_request(server_id, orjson.loads(path.read_bytes()))

    # --- boot -------------------------------------------------------------------------------

    async def spawn(self, request: InstanceRequest, power_on: bool = True) -> PowerState:
        """Boot the instance (`power_on`), or only record it, stopped, for a later `start`
        (a cold-migrated server that was stopped)."""
        driver = self.driver(request.driver)
        async with self.lock(request.server_id):
            self._record(request)
            self._want_running(request.server_id, power_on)
            if await driver.state(request.server_id) == PowerState.RUNNING:
                return PowerState.RUNNING
            await self.volumes.release_all(request.server_id)
            located = [self.volumes.locate(volume) for volume in request.volumes]
            self.volumes.save(request.server_id, located)
            if not power_on:
                return PowerState.SHUTDOWN
            spec = await self.prepare(request)
            await driver.spawn(spec)
            return await driver.state(request.server_id)

    def _want_running(self, server_id: str, running: bool, held: str = "") -> None:
        """Whether the instance should run when the host comes back, and whether it is
        `held` there ("paused" or "suspended"): the `.running` marker and what it says."""
        marker = self.records / f"{server_id}.running"
        if running:
            marker.write_text(held)
        else:
            marker.unlink(missing_ok=True)

    def _held(self, server_id: str) -> str:
        try:
            return (self.records / f"{server_id}.running").read_text().strip()
        except FileNotFoundError:
            return ""

    async def prepare(self, request: InstanceRequest) -> InstanceSpec:
        """The image on disk and the NICs plugged: the `InstanceSpec` the driver boots."""
        boot = await self.image_files(RescueImage(
            request.image_id, request.image_kind, request.kernel_id, request.ramdisk_id,
            request.kernel_args,
        ))  # fmt: skip
        netns_path, nics = await self.plug(request)
        disks = await self.volumes.disks(request.server_id, _is_container(request))
        return InstanceSpec(
            server_id=request.server_id,
            hostname=request.hostname,
            vcpus=request.vcpus,
            memory_mb=request.memory_mb,
            image_layers=boot.image_layers,
            image_file=boot.image_file,
            kernel=boot.kernel,
            initrd=boot.initrd,
            kernel_args=request.kernel_args,
            root_gb=request.root_gb,
            ephemeral_gb=request.ephemeral_gb,
            netns_path=netns_path,
            nics=nics,
            disks=disks,
            metadata=request.metadata,
            user_data=base64.b64decode(request.user_data),
            public_keys=request.public_keys,
            config_drive=_decoded(request.config_drive),
            personality=_decoded(request.personality),
        )

    async def image_files(self, image: RescueImage) -> RescueBoot:
        """An image on disk from the registry: a filesystem's layers unpacked, or a disk
        with its kernel and ramdisk."""
        pull = self.images.pull_artifact
        try:
            if image.image_kind == "filesystem":
                layer = await self.images.unpack_artifact(self._artifact(image.image_id))
                return RescueBoot(image_layers=(layer,))
            return RescueBoot(
                image_file=await pull(self._artifact(image.image_id)),
                kernel=await pull(self._artifact(image.kernel_id)) if image.kernel_id else None,
                initrd=await pull(self._artifact(image.ramdisk_id)) if image.ramdisk_id else None,
                kernel_args=image.kernel_args,
            )
        except ImagePullError as error:
            raise InstanceError(f"image {image.image_id}: {error.message}") from None

    def _artifact(self, image_id: str) -> str:
        return f"{self.registry}/{ARTIFACTS}:{image_id}"

    async def plug(self, request: InstanceRequest) -> tuple[str | None, tuple[Nic, ...]]:
        """Each port on its network's bridge: veths into the server's namespace (container) or
        taps (VM). Returns the namespace's path (container) and the NICs as the guest sees them."""
        path = None
        if _is_container(request):
            name = tenantnames.server_netns(request.server_id)
            path = await asyncio.to_thread(self.namespaces.create, name)
        nics = []
        for nic in _named(request):
            nics.append(_guest_nic(nic, await self._plug_one(request, nic)))
        return path, tuple(nics)

    # --- interfaces -------------------------------------------------------------------------

    async def attach_interface(self, server_id: str, nic: NicRequest) -> str:
        """The port into the guest, running or not (Nova's interface attach): its device on
        the network's bridge, then the driver's NIC; recorded first, so a restart plugs it
        again and a detach finds it. The device's name (the guest's ethN for a container, the
        tap for a VM); the same again for a port attached already."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            known = _named(request)
            for attached in known:
                if attached.port_id == nic.port_id:
                    return attached.device or tenantnames.port_device(attached.port_id)
            if _is_container(request):
                taken = {attached.device for attached in known}
                nic = replace(
                    nic, device=next(f"eth{i}" for i in count() if f"eth{i}" not in taken)
                )
            self._record(replace(request, nics=(*known, nic)))
            try:
                device = await self._plug_one(request, nic)
                if server_id in await driver.list():
                    await driver.attach_nic(server_id, _guest_nic(nic, device))
            except (InstanceError, OSError, iproute.CommandError) as error:
                with contextlib.suppress(OSError, iproute.CommandError):
                    await asyncio.to_thread(self.wiring.unplug, nic.port_id)
                self._record(replace(request, nics=known))
                raise InstanceError(f"attaching port {nic.port_id}: {error}") from None
            return device

    async def _plug_one(self, request: InstanceRequest, nic: NicRequest) -> str:
        """One NIC (named, `_named`) on its network's bridge now: a container's veth only
        when its namespace exists (else its next boot plugs it), a VM's tap always. The
        device's name."""
        # the networking side adds the VXLAN id and peers once another host shares it
        await self.ensure_network(NetworkWiring(nic.network_id, mtu=nic.mtu))
        port = PortWiring(nic.port_id, nic.network_id, nic.mac, nic.mtu)
        if not _is_container(request):
            await asyncio.to_thread(self.wiring.plug_tap, port)
            return tenantnames.port_device(nic.port_id)
        name = tenantnames.server_netns(request.server_id)
        if await asyncio.to_thread(self.namespaces.exists, name):
            path = netns.path_of(name)
            await asyncio.to_thread(self.wiring.plug_veth, port, path, nic.device)
        return nic.device

    async def detach_interface(self, server_id: str, port_id: str) -> None:
        """The port's NIC out of the guest and its device gone; nothing when it is not
        attached here."""
        request = self.recorded(server_id)
        if request is None:
            return
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            known = _named(request)
            if not any(attached.port_id == port_id for attached in known):
                return
            if server_id in await driver.list():
                await driver.detach_nic(server_id, port_id)
            await asyncio.to_thread(self.wiring.unplug, port_id)
            self._record(replace(request, nics=tuple(n for n in known if n.port_id != port_id)))

    def _record(self, request: InstanceRequest) -> None:
        path = self.records / f"{request.server_id}.json"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(request.to_json())
        os.replace(temporary, path)

    # --- actions ----------------------------------------------------------------------------

    async def act(self, server_id: str, action: str, hard: bool) -> PowerState:
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            booted = server_id in await driver.list()
            if action in ("resume", "reboot") and (
                await driver.state(server_id) == PowerState.SUSPENDED
            ):  # a VM saved to disk starts again: its NICs and volumes may be gone since
                await self.plug(request)
                await self.reattach(request)
            if action == "stop" and booted:
                await driver.stop(server_id)
            elif action == "start" and booted:
                await self.plug(request)  # again: after a host restart the NICs are gone
                await self.reattach(request)
                await driver.start(server_id)
            elif action == "start":  # recorded, never booted here (it arrived stopped)
                await driver.spawn(await self.prepare(request))
            elif action == "reboot":
                await driver.reboot(server_id, hard)
            elif action in HOLDS:
                await getattr(driver, action)(server_id)
            self._want_running(server_id, action != "stop", HOLDS.get(action, ""))
            return await driver.state(server_id)

    async def rescue(self, server_id: str, image: RescueImage) -> PowerState:
        """Nova's rescue: the rescue image on disk and the guest's NICs plugged (a stopped
        guest's may be gone), then the driver boots the image with the server's own root
        as its second disk; it stays rescued across boots until `unrescue`."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        if (image.image_kind == "filesystem") != _is_container(request):
            raise InstanceError(
                f"rescue image {image.image_id} is a {image.image_kind} image, which a "
                f"{request.driver} server cannot boot"
            )
        async with self.lock(server_id):
            boot = replace(await self.image_files(image), device=image.device, bus=image.bus)
            await self._ready_to_boot(request)
            await driver.rescue(server_id, boot)
            self._want_running(server_id, True)
            return await driver.state(server_id)

    async def unrescue(self, server_id: str) -> PowerState:
        """The rescue guest gone and the server booted from its own disks, running."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            await self._ready_to_boot(request)
            await driver.unrescue(server_id)
            self._want_running(server_id, True)
            return await driver.state(server_id)

    async def _ready_to_boot(self, request: InstanceRequest) -> None:
        """Before a driver boots the guest again: its NICs plugged, and for a guest that is
        not there (stopped, or the host came back) its volumes' devices anew, as `start`."""
        await self.plug(request)
        if await self.driver(request.driver).state(request.server_id) not in HELD_OR_RUNNING:
            await self.reattach(request)

    # --- volumes ----------------------------------------------------------------------------

    async def attach_volume(self, server_id: str, volume: VolumeRequest) -> None:
        """The volume (of this host's pool) into the guest as `volume.device`; recorded
        first, so a restart attaches it again and a detach finds it."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            item = self.volumes.locate(volume)
            before = self.volumes.listed(server_id)
            self.volumes.save(server_id, with_volume(before, item))
            try:
                disk = await self.volumes.disk(item, _is_container(request))
                await driver.attach_disk(server_id, disk)
            except InstanceError:
                if item.volume_id not in {known.volume_id for known in before}:
                    self.volumes.save(server_id, before)
                    await self.volumes.release(server_id, item)
                raise

    async def detach_volume(self, server_id: str, volume_id: str) -> None:
        """The volume out of the guest and its loop device freed; nothing when it is not
        attached here."""
        request = self.recorded(server_id)
        async with self.lock(server_id):
            attached = self.volumes.listed(server_id)
            if request is not None:
                driver = self.driver(request.driver)
                if await driver.state(server_id) != PowerState.NOSTATE:
                    await driver.detach_disk(server_id, volume_id)
            self.volumes.save(server_id, [i for i in attached if i.volume_id != volume_id])
            for item in attached:
                if item.volume_id == volume_id:
                    await self.volumes.release(server_id, item)

    async def extend_volume(self, server_id: str, volume_id: str) -> None:
        """The guest shown an attached volume's new size (the pool grew its file);
        InstanceError when the volume is not attached to it here."""
        request = self.recorded(server_id)
        if request is None:
            raise InstanceError(f"no instance {server_id} on this host")
        async with self.lock(server_id):
            item = next(
                (i for i in self.volumes.listed(server_id) if i.volume_id == volume_id), None
            )
            if item is None:
                raise InstanceError(f"volume {volume_id} is not attached to {server_id}")
            if item.connection is not None:  # NBD tells a client its size only at connecting
                raise InstanceError(
                    f"volume {volume_id} is served by another host: the guest sees its new "
                    "size when it is attached again"
                )
            driver = self.driver(request.driver)
            if await driver.state(server_id) != PowerState.NOSTATE:
                await driver.resize_disk(server_id, volume_id)

    async def set_password(self, server_id: str, password: str) -> None:
        """The guest's root password; InstanceError (NotSupported) when it cannot take one."""
        request = self.recorded(server_id)
        if request is None:
            raise InstanceError(f"no instance {server_id} on this host")
        async with self.lock(server_id):
            await self.driver(request.driver).set_password(server_id, password)

    # --- cold migration -------------------------------------------------------------------

    async def migrate_out(self, server_id: str, target: str) -> int:
        """Stop the instance and stream its disk to the agent at `target`; then its NICs
        are unplugged here, and it is kept, stopped, for a revert. The bytes sent. On a
        failed transfer a running instance runs on, here."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self.driver(request.driver)
        async with self.lock(server_id):
            running = await driver.state(server_id) == PowerState.RUNNING
            if running:
                await driver.stop(server_id)
            url = f"{target.rstrip('/')}/instances/{server_id}/disk?driver={request.driver}"
            try:
                sent = await diskmove.send_disk(driver.disk_files(server_id), url, self.token)
            except diskmove.TransferError as error:
                if running:
                    await self.reattach(request)
                    await driver.start(server_id)
                raise InstanceError(f"migrating {server_id}: {error}") from None
            await self._unplug(request)
            await self.volumes.release_all(server_id)
            self._want_running(server_id, False)
            return sent

    async def migrate_in(
        self, server_id: str, driver_name: str, chunks: AsyncIterator[bytes]
    ) -> None:
        """Take an instance's disk from another host: unpacked where `driver_name` keeps the
        instance; InstanceError when the instance is already here."""
        driver = self.driver(driver_name)
        async with self.lock(server_id):
            if self.recorded(server_id) is not None or server_id in await driver.list():
                raise InstanceError(f"instance {server_id} is already on this host")
            directory = driver.disk_files(server_id).directory
            try:
                await diskmove.receive_disk(directory, chunks)
            except (diskmove.TransferError, FileExistsError) as error:
                raise InstanceError(f"receiving {server_id}: {error}") from None

    # --- live migration -------------------------------------------------------------------

    def _live(self, driver_name: str) -> LiveMigration:
        driver = self.driver(driver_name)
        if not isinstance(driver, LiveMigration):
            raise NotSupported(
                f"a {driver_name} instance cannot move live (no checkpoint of a running "
                "system container here): migrate it cold"
            )
        return driver

    async def live_slots(self, server_id: str) -> dict[str, int]:
        """Where the running guest's devices sit, for its destination to match."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        return await self._live(request.driver).slots(server_id)

    async def receive_live(
        self, request: InstanceRequest, slots: Mapping[str, int], listen: str
    ) -> Incoming:
        """A live migration's destination: the image here, the NICs plugged, the volumes
        reached, and the guest readied to take its state on `listen` (this host's address on
        the hosts' network). Recorded running, as `spawn` records it; undone on failure."""
        driver = self._live(request.driver)
        server_id = request.server_id
        async with self.lock(server_id):
            if self.recorded(server_id) is not None:
                raise InstanceError(f"instance {server_id} is already on this host")
            self._record(request)
            self._want_running(server_id, True)
            try:
                located = [self.volumes.locate(volume) for volume in request.volumes]
                self.volumes.save(server_id, located)
                return await driver.receive_live(await self.prepare(request), slots, listen)
            except (InstanceError, OSError, iproute.CommandError) as error:
                await self._forget(request)
                if isinstance(error, InstanceError):
                    raise
                raise InstanceError(f"readying {server_id}: {error}") from None

    def send_live(self, server_id: str, incoming: Incoming) -> None:
        """A live migration's source: the guest's disks and memory copied to `incoming`
        while it runs, and left paused here, in the background (it takes as long as the
        guest's memory takes to converge); `live_state` says how it goes."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self._live(request.driver)
        sending = self._sending.get(server_id)
        if sending is not None and not sending.done():
            raise InstanceError(f"a live migration of {server_id} is already under way")
        self._sending[server_id] = asyncio.create_task(
            self._send(server_id, request.driver, driver, incoming)
        )

    async def _send(
        self, server_id: str, name: str, driver: LiveMigration, incoming: Incoming
    ) -> str:
        async with self.lock(server_id):
            if await driver.departed(server_id):
                raise InstanceError(f"instance {server_id} has already left this host")
            await driver.send_live(server_id, incoming)
            return "\n".join(await self.driver(name).console_log(server_id))

    async def live_state(self, server_id: str, wait: float = 0.0) -> Obj:
        """How the live migration from here goes: `{"state": "running", "progress": {memory_*
        and disk_* bytes}}`, `{"state": "completed", "console"}` (the guest paused here, its
        state on the destination), `{"state": "failed", "error"}` (the guest runs on here), or
        `{"state": "none"}` when none was sent (an agent that restarted knows a completed one
        by its paused guest). A running one is waited for up to `wait` seconds, so its end
        is heard at once. It does not wait for the instance's lock, which a migration
        holds."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        driver = self._live(request.driver)
        sending = self._sending.get(server_id)
        if sending is None:
            if not await driver.departed(server_id):
                return {"state": "none"}
            console = await self.driver(request.driver).console_log(server_id)
            return {"state": "completed", "console": "\n".join(console)}
        if not sending.done() and wait > 0:
            await asyncio.wait({sending}, timeout=wait)
        if not sending.done():
            return {"state": "running", "progress": driver.progress(server_id) or {}}
        error = None if sending.cancelled() else sending.exception()
        if sending.cancelled() or error is not None:
            if error is not None and not isinstance(error, InstanceError):
                log.error("live migration of %s failed", server_id, exc_info=error)
            return {"state": "failed", "error": str(error or "stopped with its agent")}
        return {"state": "completed", "console": sending.result()}

    async def finish_live(self, server_id: str, console: str, paused: bool) -> PowerState:
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        async with self.lock(server_id):
            await self._live(request.driver).finish_live(server_id, console, paused)
            self._want_running(server_id, True, HOLDS["pause"] if paused else "")
            return await self.driver(request.driver).state(server_id)

    def steer_live(self, server_id: str, wish: str) -> None:
        """`abort` or `force_complete` the live migration from here; InstanceError when
        none is under way."""
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        if not self._live(request.driver).steer(server_id, wish):
            raise InstanceError(f"no live migration of {server_id} is under way here")

    async def _forget(self, request: InstanceRequest) -> None:
        """What `receive_live` made for an instance that never came: NICs, volume
        connections, records."""
        with contextlib.suppress(OSError, iproute.CommandError):
            await self._unplug(request)
        await self.volumes.release_all(request.server_id)
        self.volumes.forget(request.server_id)
        (self.records / f"{request.server_id}.json").unlink(missing_ok=True)
        self._want_running(request.server_id, False)

    async def _unplug(self, request: InstanceRequest) -> None:
        for nic in request.nics:
            await asyncio.to_thread(self.wiring.unplug, nic.port_id)
        name = tenantnames.server_netns(request.server_id)
        await asyncio.to_thread(self.namespaces.delete, name)

    async def reattach(self, request: InstanceRequest) -> None:
        """Before a boot from what the driver kept: each recorded volume's device again (a
        loop device does not outlive `unistack down`)."""
        driver = self.driver(request.driver)
        for item in self.volumes.listed(request.server_id):
            disk = await self.volumes.disk(item, _is_container(request))
            await driver.attach_disk(request.server_id, disk)

    async def destroy(self, server_id: str) -> None:
        request = self.recorded(server_id)
        sending = self._sending.pop(server_id, None)
        if sending is not None:
            sending.cancel()  # a migration under way stops with its guest
        async with self.lock(server_id):
            for driver in self.drivers.values():
                await driver.destroy(server_id)
            if request is not None:
                await self._unplug(request)
            else:
                await asyncio.to_thread(self.namespaces.delete, tenantnames.server_netns(server_id))
            await self.volumes.release_all(server_id)
            self.volumes.forget(server_id)
            (self.records / f"{server_id}.json").unlink(missing_ok=True)
            self._want_running(server_id, False)
        self._locks.pop(server_id, None)

    async def state(self, server_id: str) -> PowerState:
        request = self.recorded(server_id)
        if request is None:
            return PowerState.NOSTATE
        return await self.driver(request.driver).state(server_id)

    async def console(self, server_id: str, lines: int | None) -> str:
        request = self.recorded(server_id)
        if request is None:
            raise LookupError(server_id)
        output = await self.driver(request.driver).console_log(server_id, lines)
        return "\n".join(output)

    async def resume(self) -> list[str]:
        """Boot again each instance that should run and does not (the host came back after
        `unistack down`, which stops instances but keeps their disks); the ids booted."""
        booted = []
        for marker in sorted(self.records.glob("*.running")):
            request = self.recorded(marker.stem)
            if request is None or request.driver not in self.drivers:
                continue
            driver = self.drivers[request.driver]
            await self._abandon_stray(request.server_id, driver)
            if await driver.state(request.server_id) in HELD_OR_RUNNING:
                continue  # there; a paused one may be between hosts in a live migration
            try:
                async with self.lock(request.server_id):
                    if request.server_id in await driver.list():
                        await self.plug(request)
                        await self.reattach(request)
                        await driver.start(request.server_id)
                    else:
                        await driver.spawn(await self.prepare(request))
                    held = HOLDING.get(self._held(request.server_id))
                    if held:  # booted again, held as it was
                        await getattr(driver, held)(request.server_id)
                booted.append(request.server_id)
            except (InstanceError, OSError) as error:
                log.warning("could not resume instance %s: %s", request.server_id, error)
        return booted

    async def _abandon_stray(self, server_id: str, driver: InstanceDriver) -> None:
        """A live migration from here that this agent's predecessor was following when it
        stopped: undone, so the guest runs on here (its controller, which hears of no
        migration under way here, gives up on it and removes the destination), as Nova marks
        a migration its compute service restarted in the middle of failed."""
        if not isinstance(driver, LiveMigration):
            return
        try:
            running = self._held(server_id) == ""
            if await driver.abandon_stray(server_id, running):
                log.warning(
                    "abandoned a live migration or save of %s left by the agent before", server_id
                )
        except InstanceError as error:
            log.warning("could not tell whether %s is migrating: %s", server_id, error)

    async def stop_all(self) -> list[str]:
        """Stop every instance here and unplug it, keeping disks and the wish to run (for
        `unistack down`: the next `up` resumes them)."""
        stopped = []
        for server_id in [path.stem for path in self.records.glob("*.json")]:
            request = self.recorded(server_id)
            if request is None:
                continue
            with contextlib.suppress(InstanceError, OSError, RequestError):
                await self.driver(request.driver).stop(server_id, timeout=2.0)
                stopped.append(server_id)
            for nic in request.nics:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self.wiring.unplug, nic.port_id)
            name = tenantnames.server_netns(server_id)
            await asyncio.to_thread(self.namespaces.delete, name)
            with contextlib.suppress(OSError):  # the loop devices go; the next up remakes them
                await self.volumes.release_all(server_id, shared=True)
        return stopped

    # --- HTTP -------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/instances", self.http_list)
        app.router.add_put("/instances/{id}", self.http_spawn)
        app.router.add_get("/instances/{id}", self.http_state)
        app.router.add_delete("/instances/{id}", self.http_destroy)
        app.router.add_post("/instances/{id}/action", self.http_action)
        app.router.add_get("/instances/{id}/console", self.http_console)
        app.router.add_post("/instances/{id}/volumes", self.http_attach_volume)
        app.router.add_delete("/instances/{id}/volumes/{volume_id}", self.http_detach_volume)
        app.router.add_post("/instances/{id}/volumes/{volume_id}/extend", self.http_extend_volume)
        app.router.add_post("/instances/{id}/interfaces", self.http_attach_interface)
        app.router.add_delete("/instances/{id}/interfaces/{port_id}", self.http_detach_interface)
        app.router.add_post("/instances/{id}/password", self.http_set_password)
        app.router.add_post("/instances/{id}/migrate", self.http_migrate)
        app.router.add_put("/instances/{id}/disk", self.http_receive_disk)
        app.router.add_get("/instances/{id}/slots", self.http_slots)
        app.router.add_put("/instances/{id}/incoming", self.http_receive_live)
        app.router.add_post("/instances/{id}/incoming/finish", self.http_finish_live)
        app.router.add_post("/instances/{id}/live-migrate", self.http_send_live)
        app.router.add_get("/instances/{id}/live-migrate", self.http_live_state)
        app.router.add_post("/instances/{id}/live-migrate/{wish}", self.http_steer_live)

    async def http_list(self, request: web.Request) -> web.Response:
        found = []
        for name, driver in self.drivers.items():
            for server_id in await driver.list():
                state = await driver.state(server_id)
                found.append({"id": server_id, "driver": name, "power_state": int(state)})
        return _json(200, {"instances": found})

    async def http_spawn(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            wanted = parse_request(server_id, body)
            power_on = body.get("power_on", True) is not False
            return {"power_state": int(await self.spawn(wanted, power_on=power_on))}

        return await _answer(server_id, work())

    async def http_state(self, request: web.Request) -> web.Response:
        state = await self.state(request.match_info["id"])
        if state == PowerState.NOSTATE and self.recorded(request.match_info["id"]) is None:
            return _error(404, f"no instance {request.match_info['id']} on this host")
        return _json(200, {"power_state": int(state)})

    async def http_destroy(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await self.destroy(server_id)
            return {}

        return await _answer(server_id, work())

    async def http_action(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            action = body.get("action") if isinstance(body, dict) else None
            if action not in ACTIONS:
                raise RequestError(f"action must be one of {', '.join(ACTIONS)}")
            if action == "rescue":
                state = await self.rescue(server_id, rescue_image(body.get("image")))
            elif action == "unrescue":
                state = await self.unrescue(server_id)
            else:
                state = await self.act(server_id, str(action), bool(body.get("hard")))
            return {"power_state": int(state)}

        return await _answer(server_id, work())

    async def http_console(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            lines = request.query.get("lines")
            if lines and not lines.lstrip("-").isdigit():
                raise RequestError("lines must be an integer")
            return {"output": await self.console(server_id, int(lines) if lines else None)}

        return await _answer(server_id, work())

    async def http_attach_volume(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            volume = volume_request(await _body(request))
            await self.attach_volume(server_id, volume)
            return {"volume_id": volume.volume_id, "device": f"/dev/{device_target(volume.device)}"}

        return await _answer(server_id, work())

    async def http_detach_volume(self, request: web.Request) -> web.Response:
        return await self._on_volume(self.detach_volume, request)

    async def http_extend_volume(self, request: web.Request) -> web.Response:
        return await self._on_volume(self.extend_volume, request)

    async def _on_volume(
        self, act: Callable[[str, str], Awaitable[None]], request: web.Request
    ) -> web.Response:
        """One server's volume acted on (`{id}`, `{volume_id}`)."""
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await act(server_id, request.match_info["volume_id"])
            return {}

        return await _answer(server_id, work())

    async def http_attach_interface(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            nic = nic_request(await _body(request))
            return {"port_id": nic.port_id, "device": await self.attach_interface(server_id, nic)}

        return await _answer(server_id, work())

    async def http_detach_interface(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await self.detach_interface(server_id, request.match_info["port_id"])
            return {}

        return await _answer(server_id, work())

    async def http_set_password(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            password = body.get("password") if isinstance(body, dict) else None
            if not isinstance(password, str):
                raise RequestError("password must be a string")
            await self.set_password(server_id, password)
            return {}

        return await _answer(server_id, work())

    async def http_migrate(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            target = body.get("target") if isinstance(body, dict) else None
            if not isinstance(target, str) or not target.startswith(("http://", "https://")):
                raise RequestError("target must be the other agent's http(s) URL")
            return {"bytes": await self.migrate_out(server_id, target)}

        return await _answer(server_id, work())

    async def http_receive_disk(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            chunks = request.content.iter_chunked(diskmove.CHUNK)
            await self.migrate_in(server_id, request.query.get("driver", ""), chunks)
            return {}

        return await _answer(server_id, work())

    async def http_slots(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            return {"slots": await self.live_slots(server_id)}

        return await _answer(server_id, work())

    async def http_receive_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            wanted = parse_request(server_id, body)
            slots, listen = body.get("slots") or {}, body.get("listen")
            if not isinstance(slots, dict) or not all(
                isinstance(slot, int) for slot in slots.values()
            ):
                raise RequestError("slots must map device ids to PCI slot numbers")
            if not isinstance(listen, str) or not listen:
                raise RequestError("listen must be this host's address for the migration")
            incoming = await self.receive_live(wanted, slots, listen)
            return {
                "host": incoming.host,
                "nbd_port": incoming.nbd_port,
                "migration_port": incoming.migration_port,
                "exports": list(incoming.exports),
            }

        return await _answer(server_id, work())

    async def http_send_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            self.send_live(server_id, incoming_of(await _body(request)))
            return {"state": "running"}

        return await _answer(server_id, work(), status=202)

    async def http_live_state(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            try:
                wait = float(request.query.get("wait", "0"))
            except ValueError:
                raise RequestError("wait must be a number of seconds") from None
            if not 0 <= wait <= MAX_STATE_WAIT_S:
                raise RequestError(f"wait must be 0 to {MAX_STATE_WAIT_S:.0f} seconds")
            return await self.live_state(server_id, wait)

        return await _answer(server_id, work())

    async def http_steer_live(self, request: web.Request) -> web.Response:
        server_id, wish = request.match_info["id"], request.match_info["wish"]

        async def work() -> Obj:
            if wish not in STEERING:
                raise RequestError(f"a live migration can be asked to {' or '.join(STEERING)}")
            self.steer_live(server_id, STEERING[wish])
            return {}

        return await _answer(server_id, work())

    async def http_finish_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            console = body.get("console", "") if isinstance(body, dict) else None
            if not isinstance(console, str):
                raise RequestError("console must be a string")
            paused = body.get("paused", False)
            if not isinstance(paused, bool):
                raise RequestError("paused must be true or false")
            return {"power_state": int(await self.finish_live(server_id, console, paused))}

        return await _answer(server_id, work())


def incoming_of(body: Any) -> Incoming:
    """Where a destination waits (`http_receive_live`'s answer), or RequestError."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    host, exports = body.get("host"), body.get("exports") or []
    if not isinstance(host, str) or not host:
        raise RequestError("host must be the destination's address")
    if not isinstance(exports, list) or not all(isinstance(name, str) for name in exports):
        raise RequestError("exports must be a list of names")
    return Incoming(host, _port(body, "nbd_port"), _port(body, "migration_port"), tuple(exports))


def _port(body: Obj, key: str) -> int:
    port = body.get(key)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RequestError(f"{key} must be a TCP port")
    return port


async def _answer(server_id: str, work: Awaitable[Obj], status: int = 200) -> web.Response:
    """A route's answer: `work`'s document (`status`), or its refusal as the status that says
    why — 400 a malformed request, 404 no such instance here, 501 never for this kind of
    instance, 409 not now."""
    try:
        return _json(status, await work)
    except RequestError as error:
        return _error(400, str(error))
    except LookupError:
        return _error(404, f"no instance {server_id} on this host")
    except NotSupported as error:
        return _error(501, str(error))
    except InstanceError as error:
        return _error(409, str(error))


def _decoded(files: Mapping[str, str]) -> dict[str, bytes]:
    return {path: base64.b64decode(content) for path, content in files.items()}


def _guest_nic(nic: NicRequest, device: str) -> Nic:
    return Nic(
        nic.port_id, nic.mac, device, nic.fixed_ips, nic.gateway, nic.mtu, nic.dns_nameservers
    )


def _named(request: InstanceRequest) -> tuple[NicRequest, ...]:
    """The request's NICs, a container's each with the name the guest knows it by: by place
    (eth0, eth1...) until one is attached or detached, and kept from then on. A VM's are
    left unnamed: each is its port's tap (`tenantnames.port_device`)."""
    if not _is_container(request):
        return request.nics
    return tuple(
        replace(nic, device=nic.device or f"eth{index}") for index, nic in enumerate(request.nics)
    )


def _is_container(request: InstanceRequest) -> bool:
    """A system container gets block devices; a VM opens the volume's file itself."""
    return request.image_kind == "filesystem"


async def _body(request: web.Request) -> Any:
    try:
        return await jsonhttp.read_json(request)
    except jsonhttp.BadJson as error:
        raise RequestError(str(error)) from None


_json, _error = jsonhttp.json_response, jsonhttp.error_response
