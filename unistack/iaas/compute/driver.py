"""The virt driver seam and its fake, as Nova's `fake.FakeDriver`: instances are state only.

`Driver` is what the server controller asks of a hypervisor: spawn, reboot, power off and
on, pause and suspend and rescue and their reverses, destroy, and for a cold migration
whether a server can move between two hosts, its disk carried to the other host and its
arrival there; a live migration moves a running server.
Each answers the power state reached and the console lines the guest printed, which the
controller keeps on the server (`os-getConsoleOutput` reads them). `FakeDriver` runs
nothing; it writes the boot lines a small guest would, so the console is not empty.
A driver on the agent (runc, QEMU) will implement the same Protocol.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from unistack.iaas.compute.kinds import (
    PAUSED,
    POWER_PAUSED,
    POWER_SUSPENDED,
    RUNNING,
    SHUTDOWN,
)

Obj = dict[str, Any]
CONSOLE_LINES = 200  # what the server keeps of its console


@dataclass(frozen=True)
class Outcome:
    power_state: int
    console: tuple[str, ...] = ()


class Driver(Protocol):
    hypervisor_type: str

    async def spawn(self, server: Obj, host: str) -> Outcome: ...

    async def reboot(self, server: Obj, hard: bool) -> Outcome: ...

    async def power_off(self, server: Obj) -> Outcome: ...

    async def power_on(self, server: Obj) -> Outcome: ...

    async def pause(self, server: Obj) -> Outcome:
        """The guest frozen in memory (Nova's pause)."""

    async def unpause(self, server: Obj) -> Outcome: ...

    async def suspend(self, server: Obj) -> Outcome:
        """The guest's state kept for later, its vCPUs stopped (Nova's suspend)."""

    async def resume(self, server: Obj) -> Outcome: ...

    async def rescue(self, server: Obj, image_id: str) -> Outcome:
        """The guest shut down and booted from image `image_id`, its own root disk given to
        it as its second disk (Nova's rescue; a stable device rescue, asked by the image's
        hw_rescue_* properties, keeps every disk and adds the rescue disk last); it stays
        so until `unrescue`."""

    async def unrescue(self, server: Obj) -> Outcome:
        """The rescue guest gone, the server booted from its own disks again."""

    async def destroy(self, server: Obj) -> None: ...

    def movable(self, source: str, dest: str) -> bool:
        """Whether a server of host `source` can run on `dest` (the same kind of host)."""

    async def migrate(self, server: Obj, dest: str) -> None:
        """The server stopped on its host and its disk carried to `dest`."""

    async def arrive(self, server: Obj, host: str, power_on: bool) -> Outcome:
        """The server, whose disk is on `host`, booted there (or recorded there, stopped)."""

    async def live_migrate(self, server: Obj, dest: str, steering: Steering) -> Outcome:
        """The running server moved to `dest` without stopping: its local disks and memory
        copied while it runs (progress reported to `steering`, which may ask to abort or to
        force completion), `steering.switch` awaited while it is paused between the two hosts
        (the ports go to `dest` then), resumed on `dest`. The source's copy stays, paused,
        for `destroy`. MigrationError when it could not move (MigrationAborted when it was
        asked not to): it runs on where it was. One a controller before began (`steering`
        says how far) is taken up where it is."""


class DriverError(Exception):
    """The host could not do what was asked; the message says why."""


class MigrationError(Exception):
    """A migration could not carry the server to its new host."""


class MigrationAborted(MigrationError):
    """A live migration stopped because its admin aborted it."""


class Steering(Protocol):
    """A live migration's link to its `Migration` record, from the driver's side."""

    # how far a controller before this one took it: its destination readied (`started`),
    # or its guest even switched over there, waiting to be resumed (`switched`)
    started: bool
    switched: bool

    def wish(self) -> str | None:
        """`abort` or `force_complete` once the admin has asked; None until then."""

    async def report(self, progress: Obj) -> None:
        """How far the copy is: Nova's memory_* and disk_* byte counts."""

    async def switch(self) -> None:
        """The guest is paused between the hosts: what follows it (its ports) goes now."""


class GuestPasswords(Protocol):
    """Where a server's administrator password is set (Nova's `set_admin_password`)."""

    async def set_password(self, server_id: str, password: str) -> None:
        """The guest's root password, or `PasswordError` saying why it cannot be."""


class PasswordError(Exception):
    """The guest's password could not be set (`not_supported`: this kind of guest never can,
    Nova's 501; else it failed, Nova's 409)."""

    def __init__(self, message: str, not_supported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_supported = not_supported


def _stamp() -> str:
    return f"[{time.monotonic() % 100000:11.6f}]"


class FakeDriver:
    """Nothing runs; the state and the console are what a guest would show."""

    hypervisor_type = "fake"

    def _boot(self, server: Obj, host: str) -> tuple[str, ...]:
        name = (server.get("spec") or {}).get("name") or server["metadata"]["name"]
        kernel = (
            f"Linux version 6.1.0-fake (unistack fake driver) on {host}",
            "Command line: console=ttyS0 root=/dev/vda",
            "BIOS-provided physical RAM map",
            "Memory: available",
            "virtio_blk virtio1: [vda] disk",
            "EXT4-fs (vda): mounted filesystem",
            "Run /sbin/init as init process",
        )
        userland = (
            "Starting network: OK",
            f"Starting instance {server['metadata']['name']}",
            "Initializing random number generator: OK",
            "Starting sshd: OK",
            "",
            f"{name} login: ",
        )
        return tuple(f"{_stamp()} {line}" for line in kernel) + userland

    async def spawn(self, server: Obj, host: str) -> Outcome:
        return Outcome(RUNNING, self._boot(server, host))

    async def reboot(self, server: Obj, hard: bool) -> Outcome:
        host = (server.get("status") or {}).get("host") or ""
        kind = "hard" if hard else "soft"
        return Outcome(RUNNING, (f"{_stamp()} reboot: {kind} restart", *self._boot(server, host)))

    async def power_off(self, server: Obj) -> Outcome:
        return Outcome(SHUTDOWN, (f"{_stamp()} reboot: Power down",))

    async def power_on(self, server: Obj) -> Outcome:
        host = (server.get("status") or {}).get("host") or ""
        return Outcome(RUNNING, self._boot(server, host))

    async def pause(self, server: Obj) -> Outcome:
        return Outcome(POWER_PAUSED)

    async def unpause(self, server: Obj) -> Outcome:
        return Outcome(RUNNING)

    async def suspend(self, server: Obj) -> Outcome:
        return Outcome(POWER_SUSPENDED, (f"{_stamp()} PM: suspend entry (deep)",))

    async def resume(self, server: Obj) -> Outcome:
        return Outcome(RUNNING, (f"{_stamp()} PM: suspend exit",))

    async def rescue(self, server: Obj, image_id: str) -> Outcome:
        host = (server.get("status") or {}).get("host") or ""
        down = (f"{_stamp()} reboot: Power down", f"{_stamp()} rescue image {image_id}")
        return Outcome(RUNNING, (*down, *self._boot(server, host)))

    async def unrescue(self, server: Obj) -> Outcome:
        host = (server.get("status") or {}).get("host") or ""
        return Outcome(RUNNING, self._boot(server, host))

    async def destroy(self, server: Obj) -> None:
        return None

    def movable(self, source: str, dest: str) -> bool:
        return True

    async def migrate(self, server: Obj, dest: str) -> None:
        return None  # a fake guest has no disk

    async def arrive(self, server: Obj, host: str, power_on: bool) -> Outcome:
        return await self.spawn(server, host) if power_on else Outcome(SHUTDOWN)

    async def live_migrate(self, server: Obj, dest: str, steering: Steering) -> Outcome:
        if steering.wish() == "abort" and not steering.switched:
            raise MigrationAborted("aborted on request")
        await steering.switch()  # a fake guest has no memory to copy: it goes on, there
        if (server.get("status") or {}).get("vm_state") == PAUSED:
            return Outcome(POWER_PAUSED)
        return Outcome(RUNNING, (f"{_stamp()} unistack fake driver: resumed on {dest}",))


def on_host(server: Obj, host: str) -> Obj:
    """A copy of `server` that says it is on `host` (what a driver call about it there needs)."""
    return {**server, "status": {**(server.get("status") or {}), "host": host}}


def append_console(kept: list[str], lines: tuple[str, ...]) -> list[str]:
    return [*kept, *lines][-CONSOLE_LINES:]
