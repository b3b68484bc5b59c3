"""The server controller: carries out what the compute API recorded, as nova-conductor and
nova-compute do.

One reconcile per server key (client-go's pattern, `unistack.runtime.controller`):
- a server marked for deletion is torn down (ports, driver, then volumes — a guest lets go
  of its volumes before they are detached or deleted — allocation) and its finalizer
  dropped, so it disappears;
- a server `building` with no host is scheduled (`scheduler.select_host` over
  `hosts.HostView`), its allocation recorded on it, its ports made (`ports.Networking`), its
  block-device volumes attached in Cinder (`volumes.Volumes`), and spawned on the driver
  with them (the guest boots with its volumes) → `active`, power state running; any
  failure → `error` with a `fault`, what was made undone;
- a server with a `pending` action (reboot, stop, start, pause, unpause, suspend, resume,
  rescue, unrescue, rebuild, resize, confirm or revert a resize, a snapshot's data:
  `snapshots`, shelve — offloaded at once — and unshelve, scheduled again) has it carried
  out; the task state clears (a pause, suspend or rescue the host refuses leaves the server
  as it was). A resize moves its
  `Migration` record (made by the API) to `finished`, its confirmation or revert to
  `confirmed` or `reverted`. A cold migration (`migrate`) is a resize to the same flavor on
  another host: scheduled away from its host, its disk carried by the source host's agent,
  its ports bound to the new host, booted there as it was → VERIFY_RESIZE; the source keeps
  the stopped guest until the confirm (it goes) or the revert (it boots again there, and
  the copy goes). A failure on the way brings it back up where it was, the migration `error`.
  A live migration (`live-migration`) moves a running server: scheduled as a cold one,
  copied while it runs (`Driver.live_migrate`), its ports bound to the new host while it is
  paused between the two, resumed there; its migration goes `running`, `post-migrating`,
  `completed`, and the source's paused copy goes.
Each step appends an event to the server's instance action (`os-instance-actions`).
`decide` is the pure choice of what to do; `ServerController` acts on it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from typing import Any

from unistack.iaas.compute import kinds
from unistack.iaas.compute.driver import (
    Driver,
    DriverError,
    MigrationAborted,
    MigrationError,
    Outcome,
    append_console,
    on_host,
)
from unistack.iaas.compute.hosts import HostView
from unistack.iaas.compute.ports import Caller, Networking, PlugError
from unistack.iaas.compute.scheduler import (
    HostState,
    NoValidHost,
    Request,
    Resources,
    select_host,
)
from unistack.iaas.compute.snapshots import IMAGES, SnapshotError, write_snapshot
from unistack.iaas.compute.volumes import VolumeError, Volumes, next_device, pool_node
from unistack.iaas.records import Missing, Records, spec_of, status_of
from unistack.runtime.controller import Controller, enqueue_objects
from unistack.runtime.events import timestamp
from unistack.runtime.informer import split_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
log = logging.getLogger(__name__)
BACKGROUND = ("live-migration",)  # actions run beside the controller's worker
LIVE_ENDED = (kinds.MIGRATION_COMPLETED, kinds.MIGRATION_ERROR, "cancelled")
MOVING_RECHECK_S = 5.0  # a server under a background action looked at again this often


def decide(server: Obj) -> str:
    """What the server needs: teardown, build, its pending action's name, or nothing."""
    if server["metadata"].get("deletionTimestamp"):
        return "teardown"
    status = status_of(server)
    if status.get("vm_state") == kinds.BUILDING and not status.get("host"):
        return "build"
    pending = status.get("pending") or {}
    return str(pending.get("action") or "")


def wanted_resources(flavor: Obj) -> Resources:
    disk = int(flavor.get("disk", 0)) + int(flavor.get("ephemeral", 0))
    disk += -(-int(flavor.get("swap") or 0) // 1024)
    return Resources(int(flavor.get("vcpus", 0)), int(flavor.get("ram", 0)), disk)


def allocation(resources: Resources) -> Obj:
    return {
        "vcpus": resources.vcpus,
        "memory_mb": resources.memory_mb,
        "disk_gb": resources.disk_gb,
    }


def with_devices(server: Obj, ports: list[str], volumes: list[Obj]) -> Obj:
    """A copy of `server` whose status lists its `ports` (in the order it asked for them:
    its NICs') and `volumes`, what the driver boots it with."""
    status = {**status_of(server), "ports": ports, "volumes_attached": volumes}
    return {**server, "status": status}


class LiveSteering:
    """`driver.Steering` for one live migration: the admin's wish read from its `Migration`
    record (the API writes `requested`), its progress written there, and at the switch its
    ports bound to the destination."""

    def __init__(
        self,
        controller: ServerController,
        migration_id: str | None,
        ports: list[str],
        dest: str,
        begun: str | None = None,
    ) -> None:
        self.controller = controller
        self.migration_id = migration_id
        self.ports = ports
        self.dest = dest
        # `begun`: the migration's status where a controller before this one left it
        self.started = begun in (kinds.MIGRATION_RUNNING, kinds.MIGRATION_POST)
        self.switched = begun == kinds.MIGRATION_POST

    def wish(self) -> str | None:
        return self.controller.wish_of(self.migration_id)

    async def report(self, progress: Obj) -> None:
        known: Obj = {
            key: int(value) for key, value in progress.items() if key in kinds.MIGRATION_PROGRESS
        }
        await self.controller.set_migration(self.migration_id, None, **known)

    async def switch(self) -> None:
        self.switched = True
        await self.controller.set_migration(self.migration_id, kinds.MIGRATION_POST)
        await self.controller.networking.rebind(self.ports, self.dest)


def fault(code: int, message: str) -> Obj:
    return {"code": code, "message": message, "created": timestamp()}


class ServerController:
    def __init__(
        self,
        records: Records,
        hosts: HostView,
        networking: Networking,
        volumes: Volumes,
        driver: Driver,
        images: Caller,
    ) -> None:
        self.records = records
        self.hosts = hosts
        self.networking = networking
        self.volumes = volumes
        self.driver = driver
        self.images = images  # the Image API: snapshots' data, shelved images
        # live migrations under way, each in its own task so the others' work goes on; one
        # that fails unexpectedly is taken up again by the next reconcile
        self.moving: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        queue = WorkQueue("compute-servers")
        enqueue_objects(self.records.informer(kinds.SERVERS), queue)  # replays the cache
        try:
            await Controller("compute-servers", queue, self.reconcile, workers=1).run()
        finally:  # a controller that takes over (leader elected) takes them up where they are
            for moving in self.moving.values():
                moving.cancel()

    async def reconcile(self, key: str) -> float | None:
        _, name = split_key(key)
        moving = self.moving.get(name)
        if moving is not None and not moving.done():
            return MOVING_RECHECK_S  # nothing else happens to it until it is on one host
        server = self.records.get(kinds.SERVERS, name)
        if server is None:
            return None
        step = decide(server)
        if step in BACKGROUND:  # it takes as long as the guest takes to converge; its last
            # write (pending cleared) is in the cache before it ends (`Records.update` settles)
            moving = self.moving[name] = asyncio.create_task(self.act(server, step))
            moving.add_done_callback(lambda task: self._moved(name, task))
            return MOVING_RECHECK_S
        if step == "teardown":
            await self.teardown(server)
        elif step == "build":
            await self.build(server)
        elif step:
            await self.act(server, step)
        return None

    def _moved(self, name: str, task: asyncio.Task[None]) -> None:
        if self.moving.get(name) is task:
            del self.moving[name]
        if not task.cancelled() and task.exception() is not None:  # the next reconcile
            log.error("moving server %s failed", name, exc_info=task.exception())

    # --- build ----------------------------------------------------------------------------

    def request_for(self, server: Obj) -> Request:
        spec, name = spec_of(server), server["metadata"]["name"]
        group_id = spec.get("group_id")
        group = self.records.get(kinds.SERVER_GROUPS, group_id) if group_id else None
        policies = spec_of(group).get("policies") or [None]
        members = [
            other
            for other in self.records.indexed(kinds.SERVERS, "group", str(group_id or ""))
            if status_of(other).get("host") and other["metadata"]["name"] != name
        ]
        hints = spec.get("scheduler_hints") or {}
        same = hints.get("same_host")
        return Request(
            wanted_resources(spec.get("flavor") or {}),
            zone=spec.get("availability_zone") or None,
            group_id=group_id,
            group_policy=policies[0],
            group_members=len(members),
            host=spec.get("forced_host") or None,
            same_hosts=None if not same else self.hosts_of(same),
            different_hosts=self.hosts_of(hints.get("different_host") or ()),
        )

    def hosts_of(self, servers: str | list[str] | tuple[str, ...]) -> frozenset[str]:
        """The hosts the servers named in a scheduler hint (one id or a list) run on."""
        ids = [servers] if isinstance(servers, str) else list(servers)
        found = (self.records.get(kinds.SERVERS, str(server_id)) for server_id in ids)
        return frozenset(
            str(status_of(s).get("host")) for s in found if s and status_of(s).get("host")
        )

    async def build(self, server: Obj) -> None:
        name = server["metadata"]["name"]
        try:
            volume_host = await self.volume_host(server)
            request = dataclasses.replace(self.request_for(server), volume_host=volume_host)
            host = select_host(request, self.hosts.states())
        except NoValidHost as exc:
            await self.fail(name, "create", 500, str(exc))
            return
        await self.set_status(
            name, host=host.name, zone=host.zone, allocation=allocation(request.resources)
        )
        try:
            await self.place(server, host.name)
        except Exception as exc:  # any failure once placed is the build's fault, not a retry
            log.exception("building %s failed", name)
            await self.fail(name, "create", 500, f"Build of instance {name} aborted: {exc}")

    async def volume_host(self, server: Obj) -> str | None:
        """The host whose pool holds most of the existing volumes the server boots with (its
        block device mapping's, and those attached to it while shelved): the scheduler
        prefers it, since there they need no connection to another host
        (`agentdriver.AgentDriver.connect`). None when none is in a host's pool."""
        wanted = [
            str(device.get("uuid"))
            for device in spec_of(server).get("block_device_mapping_v2") or []
            if device.get("source_type") == "volume" and device.get("destination_type") == "volume"
        ]
        attached = status_of(server).get("volumes_attached") or []
        wanted += [str(item.get("volume_id")) for item in attached if isinstance(item, dict)]
        hosts: collections.Counter[str] = collections.Counter()
        for volume_id in dict.fromkeys(wanted):
            try:
                volume = await self.volumes.show(volume_id)
            except VolumeError:  # the attach says what is wrong with it
                continue
            node = pool_node(volume)
            if node is not None:
                hosts[node] += 1
        return hosts.most_common(1)[0][0] if hosts else None  # a tie: the first volume's

    async def place(self, server: Obj, host: str) -> None:
        """Ports, volumes, then the driver; what was made is undone if a later step fails."""
        name = server["metadata"]["name"]
        plugged = await self.networking.plug(server, host)
        try:
            volumes = await self.attach_devices(server, host)
        except (VolumeError, PlugError):
            await self.networking.unplug(plugged.ports, plugged.created)
            raise
        try:
            outcome = await self.driver.spawn(with_devices(server, plugged.ports, volumes), host)
        except Exception:  # the build fails (`build`): nothing it made may stay behind
            for item in volumes:
                await self.volumes.detach(str(item["attachment_id"]), unplug=False)
            await self.networking.unplug(plugged.ports, plugged.created)
            raise
        await self.finish(
            name,
            "create",
            outcome,
            vm_state=kinds.ACTIVE,
            ports=plugged.ports,
            created_ports=plugged.created,
            addresses=plugged.addresses,
            port_tags=plugged.tags,
            volumes_attached=volumes,
            launched_at=timestamp(),
        )

    async def attach_devices(self, server: Obj, host: str) -> list[Obj]:
        """Attach the volumes of the block device mapping (the boot volume as vda)."""
        attached: list[Obj] = []
        for device in spec_of(server).get("block_device_mapping_v2") or []:
            if device.get("source_type") != "volume" or device.get("destination_type") != "volume":
                continue
            boot = str(device.get("boot_index", "")) == "0"
            name = device.get("device_name") or (
                "/dev/vda" if boot else next_device(attached, server)
            )
            try:
                item = await self.volumes.attach(
                    server["metadata"]["name"],
                    str(device.get("uuid")),
                    host,
                    str(name),
                    plug=False,  # the guest is not there yet: it boots with them
                )
            except VolumeError:
                for done in attached:
                    await self.volumes.detach(str(done["attachment_id"]), unplug=False)
                raise
            item["delete_on_termination"] = bool(device.get("delete_on_termination"))
            if device.get("tag"):
                item["tag"] = str(device["tag"])
            attached.append(item)
        return attached

    async def fail(self, name: str, action: str, code: int, message: str) -> None:
        """ERROR with a fault; the allocation is freed (Nova deletes it on a failed build)."""
        await self.set_status(
            name,
            vm_state=kinds.ERROR,
            task_state=None,
            power_state=kinds.NOSTATE,
            fault=fault(code, message),
            allocation={},
            pending=None,
        )
        await self.record_event(name, action, "Error", message)

    async def finish(self, name: str, action: str, outcome: Outcome, **changes: Any) -> None:
        server = self.records.require(kinds.SERVERS, name)
        console = append_console(status_of(server).get("console") or [], outcome.console)
        await self.set_status(
            name,
            task_state=None,
            power_state=outcome.power_state,
            console=console,
            pending=None,
            **changes,
        )
        await self.record_event(name, action, "Success")

    # --- actions ----------------------------------------------------------------------------

    async def act(self, server: Obj, action: str) -> None:
        name = server["metadata"]["name"]
        pending = status_of(server).get("pending") or {}
        handler = getattr(self, f"do_{action.replace('-', '_')}", None)
        if handler is None:
            await self.set_status(name, pending=None, task_state=None)
            return
        await handler(server, pending)

    async def do_reboot(self, server: Obj, pending: Obj) -> None:
        outcome = await self.driver.reboot(server, pending.get("type") == "HARD")
        await self.finish(server["metadata"]["name"], "reboot", outcome, vm_state=kinds.ACTIVE)

    async def do_stop(self, server: Obj, pending: Obj) -> None:
        outcome = await self.driver.power_off(server)
        await self.finish(server["metadata"]["name"], "stop", outcome, vm_state=kinds.STOPPED)

    async def do_start(self, server: Obj, pending: Obj) -> None:
        outcome = await self.driver.power_on(server)
        await self.finish(server["metadata"]["name"], "start", outcome, vm_state=kinds.ACTIVE)

    async def do_pause(self, server: Obj, pending: Obj) -> None:
        await self._hold(server, "pause", kinds.PAUSED)

    async def do_unpause(self, server: Obj, pending: Obj) -> None:
        await self._hold(server, "unpause", kinds.ACTIVE)

    async def do_suspend(self, server: Obj, pending: Obj) -> None:
        await self._hold(server, "suspend", kinds.SUSPENDED)

    async def do_resume(self, server: Obj, pending: Obj) -> None:
        await self._hold(server, "resume", kinds.ACTIVE)

    async def do_rescue(self, server: Obj, pending: Obj) -> None:
        """The guest booted from the rescue image (the one asked for, else its own)."""
        image_id = str(pending.get("image_ref") or spec_of(server).get("image_ref") or "")
        await self._hold(server, "rescue", kinds.RESCUED, image_id)

    async def do_unrescue(self, server: Obj, pending: Obj) -> None:
        await self._hold(server, "unrescue", kinds.ACTIVE)

    async def _hold(self, server: Obj, action: str, vm_state: str, *args: Any) -> None:
        """Pause, suspend, rescue or their reverses; one the host refuses leaves the server
        as it was, its task cleared and the refusal on its instance action (Nova's
        `reverts_task_state`)."""
        name = server["metadata"]["name"]
        try:
            outcome = await getattr(self.driver, action)(server, *args)
        except DriverError as exc:
            await self.set_status(name, task_state=None, pending=None)
            await self.record_event(name, action, "Error", str(exc))
            return
        await self.finish(name, action, outcome, vm_state=vm_state)

    async def do_rebuild(self, server: Obj, pending: Obj) -> None:
        """A new root disk; a stopped server stays stopped, others come back running."""
        before = status_of(server).get("vm_state")
        state = kinds.STOPPED if before == kinds.STOPPED else kinds.ACTIVE
        outcome = await self._power_as(server, state)
        await self.finish(server["metadata"]["name"], "rebuild", outcome, vm_state=state)

    async def do_resize(self, server: Obj, pending: Obj) -> None:
        """Resize in place (one host is enough for the fake driver): the allocation grows to
        the new flavor now; VERIFY_RESIZE until confirmed or reverted."""
        name, status = server["metadata"]["name"], status_of(server)
        resources = wanted_resources(spec_of(server).get("flavor") or {})
        before = str(status.get("vm_state") or kinds.ACTIVE)
        outcome = await self._power_as(server, before)
        # the migration is finished before the server shows VERIFY_RESIZE, as in Nova
        await self.set_migration(pending.get("migration_id"), kinds.MIGRATION_FINISHED)
        await self.finish(
            name,
            "resize",
            outcome,
            vm_state=kinds.RESIZED,
            allocation=allocation(resources),
            pre_resize_vm_state=before,
        )

    async def do_migrate(self, server: Obj, pending: Obj) -> None:
        name, status = server["metadata"]["name"], status_of(server)
        source, zone = str(status.get("host") or ""), status.get("zone")
        before = str(status.get("vm_state") or kinds.ACTIVE)
        migration_id = pending.get("migration_id")
        try:
            host = await self.destination(server, source, pending.get("host"))
        except NoValidHost as exc:
            await self.migration_failed(name, migration_id, str(exc))
            return
        await self.set_status(name, task_state="resize_migrating")
        await self.set_migration(migration_id, kinds.MIGRATION_MIGRATING, dest=host.name)
        try:
            await self.driver.migrate(server, host.name)
        except MigrationError as exc:  # the source's agent runs it on where it was
            await self.migration_failed(name, migration_id, str(exc))
            return
        ports = status.get("ports") or []
        await self.networking.rebind(ports, host.name)
        await self.set_status(name, task_state="resize_finish")
        try:
            outcome = await self.driver.arrive(
                on_host(server, host.name), host.name, before != kinds.STOPPED
            )
        except Exception as exc:  # back where it was: the copy goes, the source boots
            log.exception("migrated server %s did not boot on %s", name, host.name)
            await self.move_back(server, host.name, source, before)
            await self.migration_failed(name, migration_id, f"{host.name}: {exc}")
            return
        await self.set_migration(migration_id, kinds.MIGRATION_FINISHED)
        await self.finish(
            name,
            "migrate",
            outcome,
            vm_state=kinds.RESIZED,
            host=host.name,
            zone=host.zone,
            pre_resize_vm_state=before,
            source_host=source,
            source_zone=zone,
        )

    async def do_live_migration(self, server: Obj, pending: Obj) -> None:
        """Nova's live migration: scheduled away from its host (or to the admin's), copied
        there while it runs, its ports bound there while it is paused between the two, resumed
        there; the source's copy goes. A failure before the switch leaves it running where it
        was (the migration `error`); one after it leaves the server in ERROR."""
        name, status = server["metadata"]["name"], status_of(server)
        source, migration_id = str(status.get("host") or ""), pending.get("migration_id")
        migration = status_of(self.records.get(kinds.MIGRATIONS, migration_id or "") or {})
        if migration.get("status") in LIVE_ENDED:  # it ended; the server was not told
            if migration["status"] == kinds.MIGRATION_COMPLETED:
                dest = str(migration.get("dest_compute"))
                there = self.known_host(dest)
                await self.set_status(name, host=dest, **({"zone": there.zone} if there else {}))
            await self.set_status(name, task_state=None, pending=None)
            return
        begun = migration.get("status")
        recorded = str(migration.get("dest_compute") or "")
        if begun in (kinds.MIGRATION_RUNNING, kinds.MIGRATION_POST) and recorded:
            host = self.known_host(recorded)
            if host is None:  # never another: the guest may be there already
                raise LookupError(f"host {recorded} of migration {migration_id} is not known yet")
        else:
            begun = None  # queued: it starts now
            try:
                host = await self.destination(server, source, pending.get("host"))
            except NoValidHost as exc:
                await self.live_migration_failed(name, migration_id, str(exc))
                return
            if self.wish_of(migration_id) == "abort":  # aborted while queued (2.65)
                await self.live_migration_failed(name, migration_id, "aborted", "cancelled")
                return
            await self.set_migration(migration_id, kinds.MIGRATION_RUNNING, dest=host.name)
        ports = status.get("ports") or []
        steering = LiveSteering(self, migration_id, ports, host.name, begun)
        try:
            outcome = await self.driver.live_migrate(server, host.name, steering)
        except MigrationError as exc:
            if not steering.switched:
                aborted = isinstance(exc, MigrationAborted)
                await self.live_migration_failed(
                    name, migration_id, str(exc), "cancelled" if aborted else kinds.MIGRATION_ERROR
                )
                return
            await self.set_status(name, host=host.name, zone=host.zone)
            await self.fail(name, "live-migration", 500, f"{host.name}: {exc}")
            await self.set_migration(migration_id, kinds.MIGRATION_ERROR)
            return
        try:
            await self.driver.destroy(on_host(server, source))
        except Exception:  # the guest runs on its new host; the paused copy is only waste
            log.exception("the source copy of %s on %s did not go", name, source)
        await self.set_migration(migration_id, kinds.MIGRATION_COMPLETED)
        vm_state = status.get("vm_state") or kinds.ACTIVE  # a paused guest stays paused there
        await self.finish(
            name, "live-migration", outcome, vm_state=vm_state, host=host.name, zone=host.zone
        )

    async def live_migration_failed(
        self, name: str, migration_id: str | None, message: str, state: str = kinds.MIGRATION_ERROR
    ) -> None:
        """The server runs on where it was; its migration `error` (or `cancelled`)."""
        await self.set_migration(migration_id, state)
        await self.set_status(name, task_state=None, pending=None)
        await self.record_event(name, "live-migration", "Error", message)

    def known_host(self, name: str) -> HostState | None:
        return next((state for state in self.hosts.states() if state.name == name), None)

    def wish_of(self, migration_id: str | None) -> str | None:
        """What the admin asked of a live migration under way (`abort`, `force_complete`)."""
        migration = self.records.get(kinds.MIGRATIONS, migration_id) if migration_id else None
        return status_of(migration).get("requested") if migration else None

    async def destination(self, server: Obj, source: str, forced: str | None) -> HostState:
        """Where a cold migration goes: any host but `source` of its kind that the scheduler
        takes for the server (the admin's `forced` host, when given)."""
        volume_host = await self.volume_host(server)
        request = dataclasses.replace(
            self.request_for(server), host=forced or None, volume_host=volume_host
        )
        others = [
            state
            for state in self.hosts.states()
            if state.name != source and self.driver.movable(source, state.name)
        ]
        return select_host(request, others)

    async def move_back(self, server: Obj, dest: str, source: str, vm_state: str) -> Outcome:
        """A migrated server back on its `source` host: the copy on `dest` goes, its ports
        are bound to the source again, and its guest there boots as it was (`vm_state`)."""
        await self.driver.destroy(on_host(server, dest))
        await self.networking.rebind(status_of(server).get("ports") or [], source)
        return await self.driver.arrive(on_host(server, source), source, vm_state != kinds.STOPPED)

    async def migration_failed(self, name: str, migration_id: str | None, message: str) -> None:
        await self.set_migration(migration_id, kinds.MIGRATION_ERROR)
        await self.set_status(name, task_state=None, pending=None, old_flavor=None)
        await self.record_event(name, "migrate", "Error", message)

    async def _power_as(self, server: Obj, vm_state: str) -> Outcome:
        """A resized guest comes back as it was: running, or still powered off."""
        if vm_state == kinds.STOPPED:
            return Outcome(kinds.SHUTDOWN)
        return await self.driver.spawn(server, status_of(server).get("host") or "")

    async def do_confirmResize(self, server: Obj, pending: Obj) -> None:
        """A migrated server's old copy goes from its source host."""
        name, status = server["metadata"]["name"], status_of(server)
        outcome = Outcome(status.get("power_state", kinds.RUNNING))
        before = status.get("pre_resize_vm_state") or kinds.ACTIVE
        if status.get("source_host"):
            await self.driver.destroy(on_host(server, str(status["source_host"])))
        await self.set_migration(status.get("migration_id"), kinds.MIGRATION_CONFIRMED)
        await self.finish(
            name,
            "confirmResize",
            outcome,
            vm_state=before,
            old_flavor=None,
            source_host=None,
            source_zone=None,
        )

    async def do_revertResize(self, server: Obj, pending: Obj) -> None:
        """A resize comes back to its old flavor; a migrated server to its source host, where
        its stopped guest boots again (the copy goes)."""
        name, status = server["metadata"]["name"], status_of(server)
        resources = wanted_resources(spec_of(server).get("flavor") or {})
        before = str(status.get("pre_resize_vm_state") or kinds.ACTIVE)
        source = str(status.get("source_host") or "")
        moved: Obj = {}
        if source:
            outcome = await self.move_back(server, str(status.get("host") or ""), source, before)
            moved = {"host": source, "zone": status.get("source_zone"), "source_host": None}
        else:
            outcome = await self._power_as(server, before)
        await self.set_migration(status.get("migration_id"), kinds.MIGRATION_REVERTED)
        await self.finish(
            name,
            "revertResize",
            outcome,
            vm_state=before,
            allocation=allocation(resources),
            old_flavor=None,
            **moved,
        )

    async def do_createImage(self, server: Obj, pending: Obj) -> None:
        name = server["metadata"]["name"]
        source = spec_of(server).get("image_ref") or None
        outcome = Outcome(status_of(server).get("power_state", kinds.RUNNING))
        try:
            await write_snapshot(self.images, source, str(pending.get("image_id")))
        except SnapshotError as exc:
            await self.set_status(name, task_state=None, pending=None)
            await self.record_event(name, "createImage", "Error", str(exc))
            return
        await self.finish(name, "createImage", outcome)

    async def do_shelve(self, server: Obj, pending: Obj) -> None:
        """Keep the disk (the shelved image's data), power off, and offload: the host and
        the allocation are released; the ports stay the server's, unbound."""
        name = server["metadata"]["name"]
        if pending.get("image_id"):
            source = spec_of(server).get("image_ref") or None
            await write_snapshot(self.images, source, str(pending["image_id"]))
        await self.driver.destroy(server)
        await self.networking.rebind(status_of(server).get("ports") or [], "")
        await self.finish(
            name,
            "shelve",
            Outcome(kinds.SHUTDOWN),
            vm_state=kinds.SHELVED_OFFLOADED,
            host=None,
            allocation={},
            shelved_image_id=pending.get("image_id") or None,
        )

    async def do_unshelve(self, server: Obj, pending: Obj) -> None:
        """Schedule again, bind the ports to the new host, spawn; the shelved image goes."""
        name, status = server["metadata"]["name"], status_of(server)
        try:
            volume_host = await self.volume_host(server)
            request = dataclasses.replace(self.request_for(server), volume_host=volume_host)
            if pending.get("host"):  # the admin's (2.91)
                request = dataclasses.replace(request, host=str(pending["host"]))
            if pending.get("zone"):  # the owner's (2.77)
                request = dataclasses.replace(request, zone=str(pending["zone"]))
            host = select_host(request, self.hosts.states())
        except NoValidHost as exc:
            await self.set_status(name, task_state=None, pending=None)
            await self.record_event(name, "unshelve", "Error", str(exc))
            return
        await self.networking.rebind(status.get("ports") or [], host.name)
        outcome = await self.driver.spawn(server, host.name)
        if status.get("shelved_image_id"):
            await self.images.call("DELETE", f"{IMAGES}/{status['shelved_image_id']}")
        await self.finish(
            name,
            "unshelve",
            outcome,
            vm_state=kinds.ACTIVE,
            host=host.name,
            zone=host.zone,
            allocation=allocation(request.resources),
            shelved_image_id=None,
        )

    # --- teardown ---------------------------------------------------------------------------

    async def teardown(self, server: Obj) -> None:
        name = server["metadata"]["name"]
        status = status_of(server)
        await self.networking.unplug(status.get("ports") or [], status.get("created_ports") or [])
        await self.driver.destroy(server)  # the guest and its hold on the volumes go
        for item in status.get("volumes_attached") or []:
            if isinstance(item, dict) and item.get("attachment_id"):
                await self.volumes.detach(str(item["attachment_id"]), unplug=False)
                if item.get("delete_on_termination"):
                    await self.volumes.delete(str(item["volume_id"]))
        if status.get("shelved_image_id"):
            await self.images.call("DELETE", f"{IMAGES}/{status['shelved_image_id']}")
        await self.record_event(name, "delete", "Success")
        await self.records.remove_finalizer(kinds.SERVERS, name, kinds.FINALIZER)

    # --- writes ---------------------------------------------------------------------------

    async def set_status(self, name: str, **changes: Any) -> None:
        def change(obj: Obj) -> None:
            obj["status"].update(changes, updated_at=timestamp())

        try:
            await self.records.update(kinds.SERVERS, name, change, status=True)
        except Missing:
            log.info("server %s went away while being changed", name)

    async def set_migration(
        self, migration_id: str | None, state: str | None, dest: str | None = None, **more: Any
    ) -> None:
        """Move a resize's migration record on (`finished`, `confirmed`, `reverted`); a
        cold migration's says its scheduled `dest` host; a live one's, its progress (`more`)."""
        if not migration_id:
            return

        def change(obj: Obj) -> None:
            obj["status"].update(more, updated_at=timestamp())
            if state is not None:
                obj["status"]["status"] = state
            if dest is not None:
                obj["status"].update(dest_compute=dest, dest_node=dest, dest_host=dest)

        try:
            await self.records.update(kinds.MIGRATIONS, migration_id, change, status=True)
        except Missing:
            log.info("migration %s went away", migration_id)

    async def record_event(
        self, name: str, action: str, result: str, message: str | None = None
    ) -> None:
        """Finish the latest instance action `action` of the server with one event."""
        found = [
            obj
            for obj in self.records.indexed(kinds.INSTANCE_ACTIONS, "instance", name)
            if spec_of(obj).get("action") == action
        ]
        if not found:
            return
        latest = max(found, key=lambda obj: float(spec_of(obj).get("started") or 0))
        server = self.records.get(kinds.SERVERS, name)
        host = status_of(server).get("host")
        event = kinds.action_event(spec_of(latest), host, timestamp(), result, message)

        def change(obj: Obj) -> None:
            obj["status"]["events"] = [*(obj["status"].get("events") or []), event]
            if result == "Error":
                obj["status"]["message"] = "Error"

        try:
            await self.records.update(
                kinds.INSTANCE_ACTIONS, latest["metadata"]["name"], change, status=True
            )
        except Missing:
            return
