"""The agent's compute service: the instances of the servers scheduled to this host, as
nova-compute runs them.

The compute controller (`unistack.iaas.compute.controller`) decides what a server needs; it
reaches the server's host through the API server's node proxy
(`/api/v1/nodes/{host}/proxy/instances/...`, `unistack.iaas.compute.agentdriver`), as
nova-conductor calls nova-compute. Its routes (what each takes and answers) are in
`unistack.agent.instanceroutes`.

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

from unistack.agent import diskmove
from unistack.agent.instancerequests import (
    InstanceRequest,
    NicRequest,
    RequestError,
    RescueImage,
    parse_request,
)
from unistack.agent.instancevolumes import (
    AttachedVolumes,
    VolumeFiles,
    VolumeRequest,
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
HOLDING = {held: action for action, held in HOLDS.items() if held}
# nothing to boot again: the guest is there (a suspended VM's state is on disk)
HELD_OR_RUNNING = (PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED)


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
        a migration its compute service restarted in the middle of failed. A suspend's save
        it was writing is undone the same way (the controller asks for the suspend again);
        a suspend or resume stopped after its last QMP step is finished instead."""
        if not isinstance(driver, LiveMigration):
            return
        try:
            running = self._held(server_id) == ""
            if await driver.abandon_stray(server_id, running):
                log.warning(
                    "undid or finished a migration, suspend or resume of %s the agent before"
                    " left unended",
                    server_id,
                )
        except InstanceError as error:
            log.warning("could not tell whether %s is migrating or saving: %s", server_id, error)

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
