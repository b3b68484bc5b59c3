"""The `container` compute driver: a system container per server, run by runc.

A server's guest is its image's root filesystem booted with busybox init as PID 1, in its
own pid, mount, uts, ipc and cgroup namespaces and in the network namespace the agent
plugged the server's ports into (`unistack.dataplane.tenantnet`). Layout under `root`:

    runc/                          runc's state (`runc --root`)
    <server id>/spec.json          the InstanceSpec, with the disks attached since
    <server id>/config.json        the runc bundle (`unistack.dataplane.containerbundle`)
    <server id>/rootfs             overlayfs: the image's layers + upper/ + work/
    <server id>/upper, work        the server's own writes: its "disk", kept across stop/start
    <server id>/disk.eph0          the flavor's ephemeral disk, when it has one (`ephemeral`)
    <server id>/console.log        init's stdout and stderr: `openstack console log show`
    <server id>/pid, runc.log      runc's pid file and its error log
    <server id>/rescue.json        while rescued: the rescue image's layers
    <server id>/rescue/            the rescue's own upper/ and work/, and root/: the
                                   server's root filesystem, mounted for the guest's /mnt

Before every boot the guest's init files (`unistack.dataplane.containerinit`) are written into
`upper/` (with the host's dropbear as the guest's SSH server when it is installed,
`unistack.dataplane.sshd`), then the overlay is mounted and `runc run --detach` starts the
container in a time namespace of its own (its uptime starts at its boot); init's
output goes straight to the console log file, not through the agent, so a server outlives
an agent restart, and a new driver object finds it again through runc's state.

Power actions are init's signals: SIGUSR2 powers busybox init off (PID 1 of a pid namespace
ignores signals it does not handle), SIGTERM reboots it — in a container both end init, so a
reboot is the container ending and being run again; SIGKILL after a timeout
(`unistack.dataplane.initprocess`). An attached disk is a block device node the host makes
in the running guest's /dev (through /proc/<pid>/root) with a devices cgroup v1 rule; it is
recorded in spec.json so the next boot creates it through the bundle. The ephemeral disk is
a loop device over its file, attached at boot and given to the guest the same way as `vdb`;
it is detached when the server stops or goes. The guest's /proc/partitions lists its own
disks (`unistack.dataplane.guestpartitions`), kept up to date as disks come and go. A
server's personality files are written into it once, at its first boot
(`unistack.dataplane.injection`); after that they are the guest's own.

Pause is runc's `pause`: the cgroup v1 freezer stops every process of the guest where it
is, memory kept; `resume` thaws it. Suspend is the same freeze, marked `suspended` in the
instance directory so the state says SUSPENDED, as nova-lxd suspended a container: saving a
container's memory to disk needs CRIU, whose 3.17 fails `criu check` on this 6.18 kernel.
A frozen guest is thawed before it is signalled to stop or reboot (a frozen task takes no
signal, not even SIGKILL, until it thaws).

Rescue, as Nova rescues a server: the guest powered off like `stop`, then booted from the
rescue image's layers (with an upper layer of its own, so nothing it writes outlives the
rescue) and the server's root filesystem — its image's layers and its upper/, overlaid
again — bind-mounted on /mnt, where the rescue can mend it; no volumes, no ephemeral disk,
but for a stable device rescue (Nova 2.87), which keeps them.
Every boot is that one until unrescue, which ends the rescue guest, drops its layer and
boots the server as it was.

A NIC attached while the guest runs (the agent has put its veth end into the guest's
namespace) is configured as init configures every NIC at boot — link up at its MTU, its
fixed IPs — from the host, in that namespace: busybox runs nothing that would notice a new
interface. It is recorded in spec.json, so later boots configure it from the init script.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import orjson

from unistack.dataplane import (
    containerbundle,
    containerinit,
    ephemeral,
    guestpartitions,
    initprocess,
    injection,
    iproute,
    loopdev,
    mounts,
    sshd,
)
from unistack.dataplane.containerbundle import DeviceNode
from unistack.dataplane.instances import (
    Disk,
    DiskFiles,
    InstanceError,
    InstanceSpec,
    Nic,
    PowerState,
    RescueBoot,
    rescue_from_json,
    rescue_spec,
    rescue_to_json,
    with_nic,
    without_nic,
    write_atomic,
)

log = logging.getLogger(__name__)

CONTAINER_PREFIX = "unistack-server-"
CGROUP_ROOT = Path("/sys/fs/cgroup")
KILL_WAIT_S = initprocess.KILL_WAIT_S
SOFT_REBOOT_TIMEOUT_S = 10.0
CONSOLE_MAX_BYTES = 1024 * 1024
CONSOLE_KEEP_BYTES = 256 * 1024
_SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DEVICE_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
SUSPENDED_MARK = "suspended"  # a frozen guest that was suspended, not paused
RESCUE_MARK, RESCUE_DIR = "rescue.json", "rescue"  # a rescued guest: what it boots, its files
_RUNC_POWER = {"running": PowerState.RUNNING, "paused": PowerState.PAUSED}
RESCUED_ROOT = "/mnt"  # where a rescue guest finds the server's root filesystem


class ContainerInstances:
    """`InstanceDriver` over runc, overlayfs and busybox init. Hypervisor type `container`."""

    hypervisor_type = "container"

    def __init__(
        self,
        root: Path,
        runc: str = "runc",
        cgroup_parent: str = "/unistack/servers",
        *,
        pids_limit: int = 4096,
        ssh: bool = True,
    ) -> None:
        self.root = root
        self.runc = runc
        self.runc_root = root / "runc"
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.pids_limit = pids_limit
        self.cgroup_namespace = Path("/proc/self/ns/cgroup").exists()
        located = sshd.locate() if ssh else None  # the guest's sshd: the host's dropbear
        self.ssh_server = sshd.lend(located, root / "sshd") if located else None
        if ssh and self.ssh_server is None:
            log.warning("container servers get no SSH server: needs dropbear and patchelf")
        self._locks: dict[str, asyncio.Lock] = {}

    def instance_dir(self, server_id: str) -> Path:
        if not _SERVER_ID.match(server_id) or server_id == self.runc_root.name:
            raise InstanceError(f"invalid server id {server_id!r}")
        return self.root / server_id

    def container_id(self, server_id: str) -> str:
        return CONTAINER_PREFIX + server_id

    def cgroup_path(self, server_id: str) -> str:
        return f"{self.cgroup_parent}/{server_id}"

    # --- the InstanceDriver calls -----------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> None:
        async with self._serialized(spec.server_id):
            if await self._runc_status(spec.server_id) == "running":
                return
            first = not (self.instance_dir(spec.server_id) / "upper").exists()
            await asyncio.to_thread(self._save_spec, spec)
            await self._boot(spec)
            if first and spec.personality:
                await self._inject(spec)

    async def start(self, server_id: str) -> None:
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            if await self._runc_status(server_id) != "running":
                await self._boot(spec)

    async def stop(self, server_id: str, timeout: float = 10.0) -> None:
        async with self._serialized(server_id):
            self._load_spec(server_id)
            await self._halt(server_id, signal.SIGUSR2, timeout)
            await asyncio.to_thread(mounts.unmount, self.instance_dir(server_id) / "rootfs")
            await asyncio.to_thread(loopdev.release_under, self.instance_dir(server_id))

    async def reboot(self, server_id: str, hard: bool) -> None:
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            if hard:
                await self._halt(server_id, signal.SIGKILL, KILL_WAIT_S)
            else:
                await self._halt(server_id, signal.SIGTERM, SOFT_REBOOT_TIMEOUT_S)
            await self._boot(spec)

    async def pause(self, server_id: str) -> None:
        await self._freezer(server_id, "pause", frozen=True)

    async def unpause(self, server_id: str) -> None:
        await self._freezer(server_id, "unpause", frozen=False)

    async def suspend(self, server_id: str) -> None:
        await self._freezer(server_id, "suspend", frozen=True)

    async def resume(self, server_id: str) -> None:
        await self._freezer(server_id, "resume", frozen=False)

    async def _freezer(self, server_id: str, action: str, frozen: bool) -> None:
        """The running guest frozen (`runc pause`) or thawed (`runc resume`); nothing when
        it is so already; marked suspended only by `suspend`."""
        wanted, other = ("paused", "running") if frozen else ("running", "paused")
        async with self._serialized(server_id):
            self._load_spec(server_id)
            status = await self._runc_status(server_id)
            if status == other:
                await self._runc_or_fail(action, server_id, "pause" if frozen else "resume")
            elif status != wanted:
                raise InstanceError(f"cannot {action} {server_id}: it is not running")
            marker = self.instance_dir(server_id) / SUSPENDED_MARK
            if action == "suspend":
                marker.touch()
            else:
                marker.unlink(missing_ok=True)

    async def _runc_or_fail(self, action: str, server_id: str, command: str) -> None:
        code, _, err = await self._run_runc(command, self.container_id(server_id))
        if code != 0:
            reason = err.decode(errors="replace").strip() or f"runc {command} failed"
            raise InstanceError(f"{action} {server_id}: {reason}")

    async def rescue(self, server_id: str, boot: RescueBoot, timeout: float = 10.0) -> None:
        """The guest powered off (as `stop`) and booted from the rescue image, the server's
        root filesystem on /mnt (see the module docstring). A rescue that does not boot is
        undone: the guest boots as it was when it was running."""
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            directory = self.instance_dir(server_id)
            if (directory / RESCUE_MARK).exists():
                if await self._runc_status(server_id) != "running":
                    await self._boot(spec)
                return
            if not boot.image_layers:
                raise InstanceError(f"rescue {server_id}: the rescue image is not a filesystem")
            running = await self._runc_status(server_id) in _RUNC_POWER
            await self._halt(server_id, signal.SIGUSR2, timeout)
            await asyncio.to_thread(loopdev.release_under, directory)
            write_atomic(directory / RESCUE_MARK, rescue_to_json(boot))
            try:
                await self._boot(spec)
            except (InstanceError, OSError):
                await asyncio.to_thread(_end_rescue, directory)
                if running:
                    await self._boot(spec)
                raise

    async def unrescue(self, server_id: str) -> None:
        """The rescue guest killed, its layer dropped, the server booted from its own root
        filesystem; when it is not rescued, booted if it is not running (a retry)."""
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            directory = self.instance_dir(server_id)
            if not (directory / RESCUE_MARK).exists():  # an unrescue asked again boots it
                if await self._runc_status(server_id) is None:
                    await self._boot(spec)
                return
            await self._halt(server_id, signal.SIGKILL, KILL_WAIT_S)
            await asyncio.to_thread(loopdev.release_under, directory)
            await asyncio.to_thread(_end_rescue, directory)
            await self._boot(spec)

    async def destroy(self, server_id: str) -> None:
        directory = self.instance_dir(server_id)
        async with self._serialized(server_id):
            await self._halt(server_id, signal.SIGKILL, KILL_WAIT_S)
            await asyncio.to_thread(loopdev.release_under, directory)  # the ephemeral disk
            await asyncio.to_thread(_remove_tree, directory)
            remove_cgroup(self.cgroup_path(server_id))
        self._locks.pop(server_id, None)

    async def state(self, server_id: str) -> PowerState:
        status = await self._runc_status(server_id)
        if status == "paused" and (self.instance_dir(server_id) / SUSPENDED_MARK).exists():
            return PowerState.SUSPENDED
        if status in _RUNC_POWER:
            return _RUNC_POWER[status]
        if (self.instance_dir(server_id) / "spec.json").exists():
            return PowerState.SHUTDOWN
        return PowerState.NOSTATE

    async def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if (d / "spec.json").is_file())

    async def console_log(self, server_id: str, lines: int | None = None) -> builtins.list[str]:
        self._load_spec(server_id)
        path = self.instance_dir(server_id) / "console.log"
        text = await asyncio.to_thread(_read_console, path)
        found = text.replace("\r", "").splitlines()  # busybox init ends lines with \n\r
        return found[-lines:] if lines else found

    async def attach_disk(self, server_id: str, disk: Disk) -> None:
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            node = device_node(disk)
            await asyncio.to_thread(self._save_spec, containerbundle.with_disk(spec, disk))
            pid = await self._running_pid(server_id)
            if pid is not None:
                await asyncio.to_thread(self._plug, server_id, pid, node)
                await self._show_partitions(spec)

    async def set_password(self, server_id: str, password: str) -> None:
        """root's password in the running guest (`injection.set_password`): its SSH server
        then takes it, as a cloud image's agent would have set it."""
        async with self._serialized(server_id):
            self._load_spec(server_id)
            pid = await self._running_pid(server_id)
            if pid is None:
                raise InstanceError(f"server {server_id} is not running")
            await asyncio.to_thread(injection.set_password, pid, "root", password)

    async def resize_disk(self, server_id: str, volume_id: str) -> None:
        """The loop device reads its grown file's size again and the guest's
        /proc/partitions shows it (a stopped guest gets it at its next boot)."""
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            disk = next((d for d in spec.disks if d.volume_id == volume_id), None)
            if disk is None:
                raise InstanceError(f"volume {volume_id} is not attached to {server_id}")
            if await self._running_pid(server_id) is None:
                return  # its next boot attaches the file afresh, at its new size
            try:
                await asyncio.to_thread(loopdev.refresh_capacity, disk.path)
            except OSError as error:
                raise InstanceError(f"volume {volume_id}: {error.strerror}") from None
            await self._show_partitions(spec)

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            disk = next((d for d in spec.disks if d.volume_id == volume_id), None)
            if disk is None:
                return
            pid = await self._running_pid(server_id)
            if pid is not None:
                await asyncio.to_thread(self._unplug, server_id, pid, disk)
                await self._show_partitions(spec)
            without = containerbundle.without_disk(spec, volume_id)
            await asyncio.to_thread(self._save_spec, without)

    async def attach_nic(self, server_id: str, nic: Nic) -> None:
        async with self._serialized(server_id):
            spec = with_nic(self._load_spec(server_id), nic)
            await asyncio.to_thread(self._save_spec, spec)
            if spec.netns_path and await self._running_pid(server_id) is not None:
                try:
                    lines = [" ".join(c) for c in containerinit.nic_ip_commands(nic)]
                    await asyncio.to_thread(iproute.ip_batch, lines, spec.netns_path)
                except iproute.CommandError as error:
                    raise InstanceError(f"configuring {nic.device}: {error}") from None

    async def detach_nic(self, server_id: str, port_id: str) -> None:
        """Forgotten by the next boot; the agent removing the veth takes it out of the guest."""
        async with self._serialized(server_id):
            spec = self._load_spec(server_id)
            await asyncio.to_thread(self._save_spec, without_nic(spec, port_id))

    def disk_files(self, server_id: str) -> DiskFiles:
        """upper/ (the guest's writes over its image), the ephemeral disk and the console;
        the overlay, the bundle and the init files are made again at the next boot."""
        directory = self.instance_dir(server_id)
        names = ("upper", ephemeral.FILE_NAME, "console.log")
        return DiskFiles(directory, tuple(n for n in names if (directory / n).exists()))

    async def cleanup_all(self) -> None:
        """For `unistack down` and after a crash: kill and delete every server container of
        this runc root, unmount every rootfs and remove the cgroups. The instance dirs stay
        (a server comes back SHUTDOWN, its disk intact)."""
        for container_id in await self._runc_containers():
            await self._halt(container_id.removeprefix(CONTAINER_PREFIX), signal.SIGKILL, 5)
        # every rootfs, and the loop devices of the ephemeral disks
        await asyncio.to_thread(loopdev.release_under, self.root)
        remove_cgroup(self.cgroup_parent)

    def _serialized(self, server_id: str) -> asyncio.Lock:
        """One power or disk action at a time per server (the agent may overlap them)."""
        return self._locks.setdefault(server_id, asyncio.Lock())

    # --- boot and halt ----------------------------------------------------------------------

    async def _boot(self, spec: InstanceSpec) -> None:
        server_id = spec.server_id
        await self._delete_container(server_id)
        (self.instance_dir(server_id) / SUSPENDED_MARK).unlink(missing_ok=True)  # a new boot
        try:
            await asyncio.to_thread(self._prepare, spec)
            await self._runc_run(server_id)
        except (InstanceError, OSError):
            directory = self.instance_dir(server_id)
            for mounted in (directory / "rootfs", directory / RESCUE_DIR / "root"):
                await asyncio.to_thread(mounts.unmount, mounted)
            raise
        await self._show_partitions(spec)

    async def _inject(self, spec: InstanceSpec) -> None:
        """The personality files into the guest at its first boot (`injection`)."""
        pid = await self._running_pid(spec.server_id)
        if pid is None:
            raise InstanceError("the guest stopped before its personality files were written")
        await asyncio.to_thread(injection.inject, pid, spec.personality)

    async def _show_partitions(self, spec: InstanceSpec) -> None:
        """The guest's /proc/partitions, its own disks (`guestpartitions`); a guest that
        cannot have it keeps the host's, with a warning."""
        pid = await self._running_pid(spec.server_id)
        if pid is None:
            return
        try:
            await asyncio.to_thread(guestpartitions.publish, pid, spec.root_gb)
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("server %s: /proc/partitions stays the host's: %s", spec.server_id, error)

    def _prepare(self, spec: InstanceSpec) -> None:
        """Guest files into upper/, the bundle's config.json, the overlay mounted; while
        rescued, the rescue's instead, with the server's own root for its /mnt."""
        directory, server = self.instance_dir(spec.server_id), spec
        rescue, own = _read_rescue(directory), directory
        if rescue is not None:
            own, spec = directory / RESCUE_DIR, rescue_spec(spec, rescue)
        missing = [str(layer) for layer in spec.image_layers if not layer.is_dir()]
        if not spec.image_layers or missing:
            raise InstanceError(f"image layers missing: {', '.join(missing) or 'none given'}")
        rootfs, upper, work = directory / "rootfs", own / "upper", own / "work"
        mounts.unmount(rootfs)  # left mounted when the guest powered itself off
        for part in (rootfs, upper, work):
            part.mkdir(parents=True, exist_ok=True)
        files = containerinit.guest_files(spec, self.ssh_server)
        containerinit.write_guest_files(upper, spec.image_layers, files)
        containerbundle.write_host_files(directory, spec)
        binds = {}
        if rescue is not None:
            binds[str(_mount_rescued_root(directory, server.image_layers))] = RESCUED_ROOT
        config = containerbundle.bundle_config(
            spec,
            cgroups_path=self.cgroup_path(spec.server_id),
            devices=(*self._present_devices(spec), *self._ephemeral_devices(spec)),
            pids_limit=self.pids_limit,
            cgroup_namespace=self.cgroup_namespace,
            ssh_server=self.ssh_server,
            binds=binds,
        )
        (directory / "config.json").write_bytes(orjson.dumps(config))
        _trim_console(directory / "console.log")
        mounts.mount_overlay(rootfs, list(spec.image_layers), upper, work)

    @staticmethod
    def _present_devices(spec: InstanceSpec) -> tuple[DeviceNode, ...]:
        nodes = []
        for disk in spec.disks:
            try:
                nodes.append(device_node(disk))
            except InstanceError as error:  # the volume side detached it meanwhile
                log.warning("server %s boots without %s: %s", spec.server_id, disk.target, error)
        return tuple(nodes)

    def _ephemeral_devices(self, spec: InstanceSpec) -> tuple[DeviceNode, ...]:
        """The ephemeral disk's node, its file made at the first boot and attached to a loop
        device (the one it has, when it is attached already)."""
        if spec.ephemeral_gb <= 0:
            return ()
        path = ephemeral.ensure(self.instance_dir(spec.server_id), spec.ephemeral_gb)
        try:
            device = loopdev.attach_loop(path)
        except loopdev.LoopError as error:
            raise InstanceError(f"cannot attach the ephemeral disk: {error.strerror}") from None
        return (device_node(Disk("ephemeral0", device, ephemeral.DEVICE)),)

    async def _runc_run(self, server_id: str) -> None:
        directory = self.instance_dir(server_id)
        runc_log = directory / "runc.log"
        runc_log.unlink(missing_ok=True)
        argv = ["--log", str(runc_log), "--log-format", "json", "run", "--detach"]
        argv += ["--pid-file", str(directory / "pid"), "--bundle", str(directory)]
        # init inherits runc's stdio: both go to the console file, which outlives the agent.
        with open(directory / "console.log", "ab") as console:
            command = [
                self.runc,
                "--root",
                str(self.runc_root),
                *argv,
                self.container_id(server_id),
            ]
            uptime = initprocess.host_uptime()  # the guest's boot clock starts at zero
            process = await asyncio.create_subprocess_exec(
                *initprocess.in_new_boot_clock(command, uptime),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=console,
            )
            await process.wait()
        if process.returncode != 0:
            raise InstanceError(f"runc run {server_id}: {_last_error(runc_log)}")
        if uptime is not None:
            container_state = self.runc_root / self.container_id(server_id)
            initprocess.settle_start_time(container_state, directory / "pid")

    async def _halt(self, server_id: str, signum: int, timeout: float) -> None:
        """Thaw a frozen guest, signal init, wait up to `timeout`, SIGKILL if still there;
        then runc delete."""
        if await self._runc_status(server_id) == "paused":
            await self._run_runc("resume", self.container_id(server_id))
        (self.instance_dir(server_id) / SUSPENDED_MARK).unlink(missing_ok=True)
        pid = await self._running_pid(server_id)
        if pid is not None:
            await initprocess.end(pid, signum, timeout)
        await self._delete_container(server_id)

    async def _delete_container(self, server_id: str) -> None:
        initprocess.reap_zombie(self.instance_dir(server_id) / "pid")
        container_id = self.container_id(server_id)
        if (self.runc_root / container_id).exists():
            await self._run_runc("delete", "--force", container_id)

    # --- disks ------------------------------------------------------------------------------

    def _plug(self, server_id: str, pid: int, node: DeviceNode) -> None:
        """Allow the device in the guest's cgroup and make its node in the guest's /dev."""
        self._devices_rule(server_id, "devices.allow", node.major, node.minor, node.access)
        path = Path(f"/proc/{pid}/root/dev/{node.name}")
        path.unlink(missing_ok=True)
        mode = 0o440 if node.read_only else 0o660
        os.mknod(path, stat.S_IFBLK | mode, os.makedev(node.major, node.minor))

    def _unplug(self, server_id: str, pid: int, disk: Disk) -> None:
        path = Path(f"/proc/{pid}/root/dev/{disk.target}")
        try:
            device = path.stat(follow_symlinks=False).st_rdev
        except FileNotFoundError:
            return
        path.unlink(missing_ok=True)
        major, minor = os.major(device), os.minor(device)
        self._devices_rule(server_id, "devices.deny", major, minor, "rwm")

    def _devices_rule(self, server_id: str, kind: str, major: int, minor: int, access: str) -> None:
        cgroup = CGROUP_ROOT / "devices" / self.cgroup_path(server_id).lstrip("/")
        (cgroup / kind).write_text(f"b {major}:{minor} {access}")

    # --- spec.json and runc ------------------------------------------------------------------

    def _save_spec(self, spec: InstanceSpec) -> None:
        directory = self.instance_dir(spec.server_id)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / ".spec.json.new"
        temporary.write_bytes(containerbundle.encode_spec(spec))
        os.replace(temporary, directory / "spec.json")

    def _load_spec(self, server_id: str) -> InstanceSpec:
        try:
            data = (self.instance_dir(server_id) / "spec.json").read_bytes()
        except FileNotFoundError:
            raise InstanceError(f"no instance {server_id}") from None
        return containerbundle.decode_spec(data)

    async def _runc_status(self, server_id: str) -> str | None:
        state = await self._runc_state(server_id)
        return str(state["status"]) if state else None

    async def _running_pid(self, server_id: str) -> int | None:
        state = await self._runc_state(server_id)
        if state and state.get("status") in _RUNC_POWER and state.get("pid"):
            return int(state["pid"])
        return None

    async def _runc_state(self, server_id: str) -> dict[str, Any] | None:
        container_id = self.container_id(server_id)
        if not (self.runc_root / container_id).exists():
            return None  # runc keeps a container's state in <root>/<id>: no need to ask
        code, out, _ = await self._run_runc("state", container_id)
        if code != 0:
            return None
        state: dict[str, Any] = orjson.loads(out)
        return state

    async def _runc_containers(self) -> builtins.list[str]:
        code, out, _ = await self._run_runc("list", "--format", "json")
        if code != 0 or out.strip() in (b"", b"null"):
            return []
        found = [str(state["id"]) for state in orjson.loads(out)]
        return [container for container in found if container.startswith(CONTAINER_PREFIX)]

    async def _run_runc(self, *args: str) -> tuple[int, bytes, bytes]:
        process = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            str(self.runc_root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out, err


def device_node(disk: Disk) -> DeviceNode:
    """The guest's node for `disk`: its name checked, its numbers from the host device."""
    if not _DEVICE_NAME.match(disk.target):
        raise InstanceError(f"invalid device name {disk.target!r}")
    try:
        status = os.stat(disk.path)
    except OSError as error:
        raise InstanceError(f"disk {disk.path}: {error.strerror}") from None
    if not stat.S_ISBLK(status.st_mode):
        raise InstanceError(f"disk {disk.path} is not a block device")
    rdev = status.st_rdev
    return DeviceNode(disk.target, os.major(rdev), os.minor(rdev), disk.read_only)


def remove_cgroup(path: str) -> None:
    """Remove cgroup `path` and the (empty) groups below it, in every v1 hierarchy."""
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        top = hierarchy / path.lstrip("/")
        if not top.is_dir():
            continue
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _read_rescue(directory: Path) -> RescueBoot | None:
    try:
        return rescue_from_json((directory / RESCUE_MARK).read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise InstanceError(f"{directory / RESCUE_MARK} is unreadable: {error}") from None


def _mount_rescued_root(directory: Path, layers: tuple[Path, ...]) -> Path:
    """The server's own root filesystem (its image's `layers` and upper/) overlaid on
    rescue/root, for the rescue guest's /mnt."""
    root, upper, work = directory / RESCUE_DIR / "root", directory / "upper", directory / "work"
    mounts.unmount(root)
    for part in (root, upper, work):
        part.mkdir(parents=True, exist_ok=True)
    mounts.mount_overlay(root, list(layers), upper, work)
    return root


def _end_rescue(directory: Path) -> None:
    """The rescue's files gone, its mounts first: rescue/root is the server's own root, so
    nothing is removed while it is still mounted."""
    rescue = directory / RESCUE_DIR
    loopdev.release_under(rescue)
    if os.path.ismount(rescue / "root"):
        raise InstanceError(f"{rescue / 'root'} is still mounted: the rescue stays")
    (directory / RESCUE_MARK).unlink(missing_ok=True)
    shutil.rmtree(rescue, ignore_errors=True)


def _remove_tree(directory: Path) -> None:
    for point in [*mounts.mounts_under(directory)]:
        mounts.unmount(point)
    shutil.rmtree(directory, ignore_errors=True)


def _read_console(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _trim_console(path: Path) -> None:
    """Keep the console log bounded: at boot, cut it to its last CONSOLE_KEEP_BYTES."""
    try:
        if path.stat().st_size <= CONSOLE_MAX_BYTES:
            return
    except FileNotFoundError:
        return
    with path.open("rb") as console:
        console.seek(-CONSOLE_KEEP_BYTES, os.SEEK_END)
        kept = console.read()
    path.write_bytes(kept[kept.find(b"\n") + 1 :])


def _last_error(runc_log: Path) -> str:
    """The last error runc logged (its `--log` file is JSON lines)."""
    message = "runc failed"
    try:
        lines = runc_log.read_text(errors="replace").splitlines()
    except OSError:
        return message
    for line in lines:
        with contextlib.suppress(orjson.JSONDecodeError):
            entry = orjson.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                message = str(entry.get("msg", message))
    return message
