"""How a VM's live migration goes over QMP, as libvirt drives QEMU for Nova's block
migration (`unistack.dataplane.qemu`, `QemuInstances.receive_live`/`send_live`, runs it).

- `listen`: the destination's NBD server or migration listener on the first free port of
  libvirt's range (LIVE_PORTS) on its address on the hosts' network;
- `migrate`: the source mirrors each local disk into the destination's NBD export
  (`blockdev-mirror`, sync `top`), copies memory once the mirrors are READY, pauses before
  the switch-over to complete the mirrors on a quiet disk, then switches over; `Underway`
  carries its progress (Nova's memory_*/disk_* bytes) and the admin's wish (abort, force
  complete) in and out;
- `abandon`: a failed one undone, the guest running again when it ran;
- `abandon_stray`: one whose agent is gone undone by the next: QEMU copies on without
  anyone to follow it, and a guest paused before its switch-over would wait for good;
- `migration_done`, `wait_jobs`: `query-migrate` and `query-block-jobs` until they settle;
- `save`, `load`: a suspended guest's state into a file and back, as libvirt's managed save
  for Nova's suspend: a migration to `exec:cat > file` from the stopped guest, and an
  incoming one from `exec:cat file` (QEMU 7.2 has no `file:` transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unistack.dataplane import qmp
from unistack.dataplane.instances import Incoming, InstanceError

# libvirt's default port range for migration streams and the disks' NBD server: a port
# taken on the host is skipped (QEMU's own bind tells), so no port is chosen in advance
LIVE_PORTS = range(49152, 49216)
MIRROR_TIMEOUT_S = 600.0  # the local disks copied while the guest writes on
MIGRATION_TIMEOUT_S = 600.0
MIGRATION_BANDWIDTH = 1 << 30  # bytes/s: QEMU's default (128 MiB/s) is a WAN's
DOWNTIME_LIMIT_MS = 300
POLL_S = 0.05
SAVE_TIMEOUT_S = 120.0  # a guest's memory to or from a local file


ROOT_NODE, EPHEMERAL_NODE = "root", "ephemeral0"  # the local disks' block nodes (qemuargs)


async def listen(monitor: qmp.Monitor, command: str, host: str) -> int:
    """Start a listener (`nbd-server-start` or `migrate-incoming`) on the first free port of
    LIVE_PORTS on `host`; the port."""
    for port in LIVE_PORTS:
        if command == "nbd-server-start":
            address = {"type": "inet", "data": {"host": host, "port": str(port)}}
            arguments: dict[str, Any] = {"addr": address}
        else:
            arguments = {"uri": tcp_uri(host, port)}
        try:
            await monitor.execute(command, arguments)
        except qmp.QmpError as error:
            if "in use" in str(error):
                continue
            raise
        return port
    raise InstanceError(f"no free port on {host} in {LIVE_PORTS.start}-{LIVE_PORTS.stop - 1}")


def tcp_uri(host: str, port: int) -> str:
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


@dataclass
class Underway:
    """A live migration leaving this host: its progress, and what its admin asked of it."""

    progress: dict[str, int] = field(default_factory=dict)
    wish: str | None = None  # "abort" or "force_complete"
    forced: bool = False

    def check(self) -> None:
        if self.wish == "abort":
            raise InstanceError("aborted on request")

    def disks(self, jobs: Iterable[dict[str, Any]]) -> None:
        listed = list(jobs)
        total = sum(int(job.get("len") or 0) for job in listed)
        processed = sum(int(job.get("offset") or 0) for job in listed)
        self.progress.update(
            disk_total_bytes=total,
            disk_processed_bytes=processed,
            disk_remaining_bytes=max(total - processed, 0),
        )

    def memory(self, ram: dict[str, Any]) -> None:
        self.progress.update(
            memory_total_bytes=int(ram.get("total") or 0),
            memory_processed_bytes=int(ram.get("transferred") or 0),
            memory_remaining_bytes=int(ram.get("remaining") or 0),
        )


async def migrate(
    monitor: qmp.Monitor, incoming: Incoming, jobs: list[str], underway: Underway
) -> None:
    """The source's half of `qemu.QemuInstances.send_live`; `jobs` collects the mirrors started."""
    await drop_targets(monitor, incoming.exports)  # left by a try its agent did not see end
    for node in incoming.exports:
        target = {
            "driver": "nbd",
            "node-name": f"migrate-{node}",
            "server": {"type": "inet", "host": incoming.host, "port": str(incoming.nbd_port)},
            "export": node,
        }
        await monitor.execute("blockdev-add", target)
        job = f"mirror-{node}"
        # `top`: only what the guest wrote in its overlay; the destination reads the rest
        # from its own copy of the image
        mirror = {"job-id": job, "device": node, "target": target["node-name"], "sync": "top"}
        await monitor.execute("blockdev-mirror", mirror)
        jobs.append(job)
    await wait_jobs(monitor, jobs, True, MIRROR_TIMEOUT_S, underway)
    capabilities = [{"capability": "pause-before-switchover", "state": True}]
    await monitor.execute("migrate-set-capabilities", {"capabilities": capabilities})
    parameters = {"max-bandwidth": MIGRATION_BANDWIDTH, "downtime-limit": DOWNTIME_LIMIT_MS}
    await monitor.execute("migrate-set-parameters", parameters)
    await monitor.execute("migrate", {"uri": tcp_uri(incoming.host, incoming.migration_port)})
    status = await migration_done(monitor, "the memory copy", MIGRATION_TIMEOUT_S, underway)
    if status != "pre-switchover":
        raise InstanceError(f"the migration {status}")
    for job in jobs:  # the guest is paused: a READY mirror's cancel completes its copy
        await monitor.execute("block-job-cancel", {"device": job})
    await wait_jobs(monitor, jobs, False, 60.0)
    jobs.clear()
    await monitor.execute("migrate-continue", {"state": "pre-switchover"})
    # QEMU may still say pre-switchover just after it is told to go on: not an end here
    status = await migration_done(monitor, "the switch-over", 60.0, switched=True)
    if status != "completed":
        raise InstanceError(f"the migration {status}")
    await drop_targets(monitor, incoming.exports)  # the destination has the disks now


async def drop_targets(monitor: qmp.Monitor, nodes: Iterable[str]) -> None:
    """The mirrors' NBD target nodes gone (one never added is no matter)."""
    for node in nodes:
        with contextlib.suppress(qmp.QmpError):
            await monitor.execute("blockdev-del", {"node-name": f"migrate-{node}"})


async def wait_jobs(
    monitor: qmp.Monitor,
    jobs: list[str],
    ready: bool,
    timeout: float,
    underway: Underway | None = None,
) -> None:
    """Until every one of `jobs` is READY (`ready`: a mirror caught up with its guest; one
    that ends or fails first is an InstanceError), or else until all of them are gone."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        listed = {str(job["device"]): job for job in await monitor.execute("query-block-jobs")}
        if underway is not None:
            underway.disks(job for name, job in listed.items() if name in jobs)
            underway.check()
        if ready:
            for name in jobs:
                if name not in listed or listed[name].get("error"):
                    why = listed.get(name, {}).get("error") or "stopped before it caught up"
                    raise InstanceError(f"{name}: {why}")
            if all(listed[name].get("ready") for name in jobs):
                return
        elif not any(name in listed for name in jobs):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise InstanceError(f"the disks' copy did not finish in {timeout:.0f} s")
        await asyncio.sleep(POLL_S)


async def migration_done(
    monitor: qmp.Monitor,
    what: str,
    timeout: float,
    underway: Underway | None = None,
    switched: bool = False,
) -> str:
    """`query-migrate` until the migration stops moving: completed, failed, cancelled, or
    paused before its switch-over (unless `switched`: told to go on past it); that status.
    A forced completion pauses the guest."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await monitor.execute("query-migrate")
        status = str(info.get("status") or "none")
        if underway is not None:
            underway.memory(info.get("ram") or {})
            underway.check()
            if underway.wish == "force_complete" and not underway.forced:
                await monitor.execute("stop")
                underway.forced = True
        if status in ("completed", "cancelled", "none"):  # none: never began
            return status
        if status == "pre-switchover" and not switched:
            return status
        if status == "failed":
            return f"failed: {info.get('error-desc') or 'no reason given'}"
        if asyncio.get_running_loop().time() > deadline:
            raise InstanceError(f"{what} did not finish in {timeout:.0f} s ({status})")
        await asyncio.sleep(POLL_S)


async def abandon(monitor: qmp.Monitor, jobs: list[str], running: bool) -> None:
    """A failed live migration undone on the source: the migration and the mirrors
    cancelled, their targets deleted, and the guest running again when it ran before (QEMU
    restarts it itself once a cancel is through; `cont` when it stopped short of that)."""
    with contextlib.suppress(qmp.QmpError):
        await monitor.execute("migrate_cancel")
    for job in jobs:
        with contextlib.suppress(qmp.QmpError):
            await monitor.execute("block-job-cancel", {"device": job, "force": True})
    with contextlib.suppress(qmp.QmpError, InstanceError):
        await wait_jobs(monitor, jobs, False, 30.0)
        await migration_done(monitor, "the cancel", 30.0)
    await drop_targets(monitor, (ROOT_NODE, EPHEMERAL_NODE))
    with contextlib.suppress(qmp.QmpError):
        # one that switched over before the cancel came runs on the destination now:
        # running it here too would have two guests write the same disks
        if (
            running
            and (await monitor.execute("query-status")).get("status") != "running"
            and (await monitor.execute("query-migrate")).get("status") != "completed"
        ):
            await monitor.execute("cont")


async def abandon_stray(monitor: qmp.Monitor, running: bool, saving: bool = False) -> bool:
    """A live migration (or a save) from this QEMU that no one follows any more, undone as
    `abandon` undoes a failed one: True when there was one. A completed live migration is
    left (its guest runs on the destination), as is a destination's incoming one; a
    completed save (`saving`: its file was never taken up) leaves the guest stopped here,
    so it runs again when `running`."""
    status = (await monitor.execute("query-status")).get("status")
    if status == "inmigrate":
        return False
    listed = await monitor.execute("query-block-jobs")
    jobs = [str(job["device"]) for job in listed if str(job["device"]).startswith("mirror-")]
    if not jobs and not await underway(monitor):
        if saving and running and status != "running":
            await monitor.execute("cont")
        return saving
    await abandon(monitor, jobs, running)
    return True


async def save(monitor: qmp.Monitor, path: Path) -> None:
    """The stopped guest's memory and device state written to `path` (QEMU is left in
    `postmigrate`, for the caller to end). Whatever an earlier live migration asked of the
    monitor (a pause before the switch-over) is turned off first: a save has no switch-over."""
    capabilities = [{"capability": "pause-before-switchover", "state": False}]
    await monitor.execute("migrate-set-capabilities", {"capabilities": capabilities})
    await monitor.execute("migrate-set-parameters", {"max-bandwidth": MIGRATION_BANDWIDTH})
    await monitor.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(path))}"})
    try:
        status = await migration_done(monitor, "saving the guest's memory", SAVE_TIMEOUT_S)
    except (qmp.QmpError, InstanceError):
        with contextlib.suppress(qmp.QmpError, InstanceError):  # not left writing on
            await monitor.execute("migrate_cancel")
            await migration_done(monitor, "the cancel", 30.0)
        raise
    if status != "completed":
        raise InstanceError(f"saving the guest's memory: {status}")


async def underway(monitor: qmp.Monitor) -> bool:
    """Whether a migration (a live one, or a save) is going on now."""
    status = (await monitor.execute("query-migrate")).get("status")
    return status in ("setup", "active", "pre-switchover", "device", "cancelling")


async def load(monitor: qmp.Monitor, path: Path) -> None:
    """A QEMU waiting on `-incoming defer` given the state `save` wrote; it stays paused.
    One given it already (asked again after its agent restarted) is waited for."""
    if (await monitor.execute("query-migrate")).get("status") in (None, "none"):
        uri = f"exec:cat {shlex.quote(str(path))}"
        await monitor.execute("migrate-incoming", {"uri": uri})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAVE_TIMEOUT_S
    while True:  # `none` until the incoming side has started; a load that fails ends QEMU
        info = await monitor.execute("query-migrate")
        status = str(info.get("status") or "none")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            reason = info.get("error-desc") or status
            raise InstanceError(f"restoring the guest's memory: {reason}")
        if loop.time() > deadline:
            raise InstanceError(f"restoring the guest's memory took over {SAVE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)
