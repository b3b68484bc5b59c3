"""The qemu driver on a real kernel: the built-in tiny VM boots on a tap and does its job.

The image is built once per session into the temp dir (reused across runs while its inputs
are unchanged) from Debian's kernel package — downloaded into ~/.cache/unistack/kernel by
`apt-get download` when it is not there yet. Each test makes a network namespace
`unistack-t<hex>` holding a bridge (10.77.0.1/24, plus 169.254.169.254 with a small metadata
service) and the VM's tap; QEMU opens the tap there (`InstanceSpec.netns_path`). The VM gets
10.77.0.10/24 through the kernel command line. Checked: the console's `up` line, ping, the
metadata service's hostname and SSH key (dropbear), a volume hot-plugged and unplugged over
QMP (the guest prints its disks), a NIC hot-plugged on a second tap (the guest sees its MAC,
and again after a stop and start) and unplugged, a new driver object finding the VM, soft
reboot, stop (ACPI power button) to SHUTDOWN, start, destroy leaving nothing; QEMU's own
refusal reported as an InstanceError. Boot time is measured (printed with -s).

Needs root, /dev/net/tun, qemu-system-x86_64, qemu-img, busybox, ssh; skipped otherwise.
Everything made is removed even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from unistack.dataplane import qemu, qmp
from unistack.dataplane.instances import (
    Disk,
    Incoming,
    InstanceError,
    InstanceSpec,
    Nic,
    NotSupported,
    PowerState,
    RescueBoot,
)
from unistack.dataplane.qemu import QemuInstances
from unistack.images import kernelpkg, vmimage

TOOLS = ("qemu-system-x86_64", "qemu-img", "ip", "nsenter", "busybox", "ssh", "ssh-keygen")
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not Path("/dev/net/tun").exists()
        or not all(shutil.which(tool) for tool in TOOLS),
        reason="needs root, /dev/net/tun and " + ", ".join(TOOLS),
    ),
]

IMAGE_DIR = Path(tempfile.gettempdir()) / "unistack-test-vmimage"
GATEWAY, VM_IP, METADATA_IP = "10.77.0.1", "10.77.0.10", "169.254.169.254"
BRIDGE, TAP, TAP2 = "unistack-br", "unistack-tap0", "unistack-tap1"
SECOND_MAC = "fa:16:3e:4d:00:0b"
HOSTNAME_FROM_METADATA = "vm-from-metadata"


@dataclass
class Net:
    name: str
    path: str
    ssh_key: Path


@pytest.fixture(scope="session")
def vm_image() -> Path:
    try:
        vmimage.build_vm_image(IMAGE_DIR)
    except (vmimage.VmImageError, kernelpkg.KernelPackageError) as error:
        pytest.skip(f"cannot build the tiny VM image: {error}")
    return IMAGE_DIR


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_netns(net: Net, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", net.name, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


METADATA_SERVER = """
import asyncio
import contextlib
ANSWERS = {
    "/latest/meta-data/instance-id": "i-test",
    "/latest/meta-data/hostname": "%(hostname)s.example",
    "/latest/meta-data/public-keys/": "0=test",
    "/latest/meta-data/public-keys/0/openssh-key": %(key)r,
}
async def answer(reader, writer):
    request = (await reader.readline()).split()
    while (await reader.readline()).strip():
        pass
    body = ANSWERS.get(request[1].decode() if len(request) > 1 else "")
    status = "200 OK" if body is not None else "404 Not Found"
    data = (body or "").encode()
    head = "HTTP/1.0 %%s\\r\\nContent-Length: %%d\\r\\n\\r\\n" %% (status, len(data))
    writer.write(head.encode())
    writer.write(data)
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(answer, "%(address)s", 80)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """The namespace with the bridge, the tap and a metadata service; removed afterwards."""
    name = f"unistack-t{secrets.token_hex(3)}"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server = None
    try:
        ip("netns", "add", name)
        ip("-n", name, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", name, "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        ip("-n", name, "addr", "add", f"{METADATA_IP}/32", "dev", BRIDGE)
        ip("-n", name, "tuntap", "add", "dev", TAP, "mode", "tap")
        ip("-n", name, "link", "set", TAP, "master", BRIDGE, "up")
        ip("-n", name, "tuntap", "add", "dev", TAP2, "mode", "tap", "vnet_hdr")
        ip("-n", name, "link", "set", TAP2, "master", BRIDGE, "up")
        ip("-n", name, "link", "set", BRIDGE, "up")
        ip("-n", name, "link", "set", "lo", "up")
        script = METADATA_SERVER % {
            "hostname": HOSTNAME_FROM_METADATA,
            "key": key.with_suffix(".pub").read_text().strip(),
            "address": METADATA_IP,
        }
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", script],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield Net(name, f"/run/netns/{name}", key)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
async def driver() -> AsyncIterator[QemuInstances]:
    """A driver on a short root (unix socket paths), every VM destroyed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="unistack-qt-"))
    instances = QemuInstances(root)
    try:
        yield instances
    finally:
        for server_id in await instances.list():
            await instances.destroy(server_id)
        shutil.rmtree(root, ignore_errors=True)


def gone(pid: int) -> bool:
    """No such process, or a zombie left for whichever subreaper adopted it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def vm_spec(image: Path, net: Net, server_id: str) -> InstanceSpec:
    nic = Nic("port-1", "fa:16:3e:4d:00:0a", TAP, (f"{VM_IP}/24",), GATEWAY)
    return InstanceSpec(
        server_id=server_id,
        hostname="vm-one",
        vcpus=1,
        memory_mb=256,
        image_file=image / vmimage.DISK,
        kernel=image / vmimage.VMLINUX,
        initrd=image / vmimage.INITRD,
        root_gb=1,
        netns_path=net.path,
        nics=(nic,),
    )


async def save_left_going(driver: QemuInstances, server_id: str) -> Path:
    """What an agent killed in the middle of a suspend leaves behind: the guest stopped and
    QEMU writing its memory into the save's file (slowly here, so it is still at it), with
    nobody following; the file."""
    paths = driver.paths(server_id)
    saving = paths.memory_state.with_name(".memory.state.tmp")
    async with qmp.connect(paths.qmp) as monitor:
        await monitor.execute("stop")
        await monitor.execute("migrate-set-parameters", {"max-bandwidth": 1 << 20})
        await monitor.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(saving))}"})
    return saving


class AgentKilled(Exception):
    """Where a test stops an agent in the middle of what it does."""


async def agent_killed(*_: object) -> None:
    raise AgentKilled


async def console_shows(
    driver: QemuInstances,
    server_id: str,
    text: str,
    count: int = 1,
    *,
    line_end: bool = False,
    timeout: float = 60,
) -> None:
    """Wait for `count` console lines containing (or, with `line_end`, ending with) `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = await driver.console_log(server_id)
        found = [
            line for line in lines if (line.rstrip().endswith(text) if line_end else text in line)
        ]
        if len(found) >= count:
            return
        await asyncio.sleep(0.05)
    tail = "\n".join((await driver.console_log(server_id))[-20:])
    raise AssertionError(f"console never showed {text!r} ({count}x); it ends:\n{tail}")


async def answers_ping(net: Net, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ping = ["busybox", "ping", "-c", "1", "-W", "1", VM_IP]
        if (await asyncio.to_thread(in_netns, net, *ping)).returncode == 0:
            return
    raise AssertionError(f"{VM_IP} never answered ping")


async def guest_macs_become(
    net: Net, ssh: list[str], wanted: Callable[[str], bool], timeout: float = 30
) -> None:
    """Poll the guest's NICs' MAC addresses (over SSH) until `wanted` holds."""
    command = [*ssh[:-1], "cat /sys/class/net/*/address"]
    deadline = time.monotonic() + timeout
    while True:
        seen = await asyncio.to_thread(in_netns, net, *command, timeout=60)
        if seen.returncode == 0 and wanted(seen.stdout):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the guest's NICs stayed {seen.stdout!r} {seen.stderr!r}")
        await asyncio.sleep(0.5)


async def test_vm_lifecycle_network_metadata_ssh_and_hotplug(
    vm_image: Path,
    net: Net,
    driver: QemuInstances,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server_id = "vm-life"
    await driver.spawn(vm_spec(vm_image, net, server_id))
    await driver.spawn(vm_spec(vm_image, net, server_id))  # idempotent: no second QEMU
    assert await driver.state(server_id) is PowerState.RUNNING
    await console_shows(driver, server_id, f"unistack: instance {server_id} up, eth0 {VM_IP}")
    await answers_ping(net)

    await console_shows(driver, server_id, f"hostname {HOSTNAME_FROM_METADATA}")
    await console_shows(driver, server_id, "unistack: /dev/vda mounted on /mnt")
    ssh = [
        *("ssh", "-i", str(net.ssh_key), "-o", "StrictHostKeyChecking=no"),
        *("-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20"),
        f"root@{VM_IP}",
        "hostname; cat /mnt/etc/unistack-disk",
    ]
    login = await asyncio.to_thread(in_netns, net, *ssh, timeout=60)
    assert login.returncode == 0, login.stderr
    assert login.stdout.split("\n")[:2] == [HOSTNAME_FROM_METADATA, "unistack tiny VM root disk"]

    volume = tmp_path / "volume"
    volume.write_bytes(b"")
    os.truncate(volume, 16 << 20)
    await driver.attach_disk(server_id, Disk("vol-1", str(volume), "vdb"))
    await console_shows(driver, server_id, "unistack: disks vda vdb")
    async with qmp.connect(driver.paths(server_id).qmp) as monitor:
        blocks = await monitor.execute("query-block")
    assert any(block.get("inserted", {}).get("file") == str(volume) for block in blocks)
    with pytest.raises(NotSupported, match="guest agent"):  # Nova's 501 for this guest
        await driver.set_password(server_id, "Newpass1234")
    # the volume's file grows (the pool's extend): block_resize, and the guest sees 32 MiB
    os.truncate(volume, 32 << 20)
    await driver.resize_disk(server_id, "vol-1")
    sectors = [*ssh[:-1], "cat /sys/block/vdb/size"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(in_netns, net, *sectors, timeout=60)
        if seen.stdout.strip() == str((32 << 20) // 512):
            break
        await asyncio.sleep(0.5)
    assert seen.stdout.strip() == str((32 << 20) // 512), seen.stdout + seen.stderr
    await driver.detach_disk(server_id, "vol-1")
    await console_shows(driver, server_id, "unistack: disks vda", count=2, line_end=True)

    # an interface attached to the running VM: virtio-net hot-plugged on the second tap
    second = Nic("port-2", SECOND_MAC, TAP2, ("10.77.0.11/24",))
    await driver.attach_nic(server_id, second)
    await driver.attach_nic(server_id, second)  # idempotent: one device
    await guest_macs_become(net, ssh, lambda macs: SECOND_MAC in macs)
    async with qmp.connect(driver.paths(server_id).qmp) as monitor:
        networks = await monitor.execute("qom-list", {"path": "/machine/peripheral"})
    assert [n["name"] for n in networks].count("nic-unistack-tap1") == 1

    # paused: the vCPUs stop and nothing answers; unpaused, it goes on
    token = secrets.token_hex(8)
    remember = f"mkdir -p /tmp && echo {token} > /tmp/kept && cut -d. -f1 /proc/uptime"
    kept = await asyncio.to_thread(in_netns, net, *ssh[:-1], remember, timeout=60)
    assert kept.returncode == 0, kept.stderr
    await driver.pause(server_id)
    await driver.pause(server_id)  # nothing when paused already
    assert await driver.state(server_id) is PowerState.PAUSED
    silent = await asyncio.to_thread(in_netns, net, "busybox", "ping", "-c", "2", "-W", "1", VM_IP)
    assert silent.returncode != 0, silent.stdout
    await driver.unpause(server_id)
    await answers_ping(net)
    # suspended: memory saved to disk and QEMU gone; a volume attached meanwhile is
    # hot-plugged once it resumes, in the same boot, with what it held in memory, and one
    # whose file is elsewhere now (another host's volume connected again) is opened there
    await driver.attach_disk(server_id, Disk("vol-1", str(volume), "vdb"))
    await console_shows(driver, server_id, "unistack: disks vda vdb", count=2, line_end=True)
    pid = int(driver.paths(server_id).pidfile.read_text())
    await driver.suspend(server_id)
    await driver.suspend(server_id)  # nothing when suspended already
    assert gone(pid) and driver.paths(server_id).memory_state.stat().st_size > 0
    assert await QemuInstances(driver.root).state(server_id) is PowerState.SUSPENDED
    elsewhere = volume.rename(tmp_path / "volume-connected-again")
    await driver.detach_disk(server_id, "vol-1")
    await driver.attach_disk(server_id, Disk("vol-1", str(elsewhere), "vdb"))
    other = tmp_path / "other-volume"
    other.write_bytes(b"")
    os.truncate(other, 16 << 20)
    await driver.attach_disk(server_id, Disk("vol-2", str(other), "vdc"))
    await driver.resume(server_id)
    await driver.resume(server_id)  # asked again: it runs, nothing more to do
    assert await driver.state(server_id) is PowerState.RUNNING
    assert not driver.paths(server_id).memory_state.exists()
    assert not driver.paths(server_id).suspended.exists()
    recall = "cat /tmp/kept; cut -d. -f1 /proc/uptime; cat /sys/class/net/*/address"
    back = await asyncio.to_thread(in_netns, net, *ssh[:-1], recall, timeout=60)
    assert back.returncode == 0, back.stderr
    recalled, uptime_after, *macs = back.stdout.split()
    assert recalled == token, "\n".join(await driver.console_log(server_id, 12))
    assert int(uptime_after) >= int(kept.stdout.split()[-1])
    assert SECOND_MAC in macs
    await console_shows(driver, server_id, "unistack: disks vda vdb vdc")
    async with qmp.connect(driver.paths(server_id).qmp) as monitor:
        files = {
            block.get("inserted", {}).get("file") for block in await monitor.execute("query-block")
        }
    assert {str(elsewhere), str(other)} <= files
    await driver.detach_disk(server_id, "vol-2")
    await driver.detach_disk(server_id, "vol-1")
    await console_shows(driver, server_id, "unistack: disks vda", count=3, line_end=True)
    # a volume detached while suspended and then deleted: the guest's saved devices still
    # hold it, so it resumes with a stand-in of its size, unplugged before resume returns
    doomed = tmp_path / "doomed-volume"
    doomed.write_bytes(b"")
    os.truncate(doomed, 8 << 20)
    await driver.attach_disk(server_id, Disk("vol-3", str(doomed), "vdb"))
    await console_shows(driver, server_id, "unistack: disks vda vdb", count=3, line_end=True)
    await driver.suspend(server_id)
    await driver.detach_disk(server_id, "vol-3")
    doomed.unlink()
    await driver.resume(server_id)
    assert await driver.state(server_id) is PowerState.RUNNING
    await console_shows(driver, server_id, "unistack: disks vda", count=4, line_end=True)
    assert list(driver.paths(server_id).dir.glob("detached-*")) == []  # the stand-in went
    assert (
        sum(f"instance {server_id} up" in line for line in await driver.console_log(server_id)) == 1
    )

    restarted = QemuInstances(driver.root)  # an agent restart: everything from disk
    assert await restarted.list() == [server_id]
    assert await restarted.state(server_id) is PowerState.RUNNING

    # a suspend whose agent was killed in the middle of the save: the next agent cancels
    # what QEMU goes on with, drops the unfinished file, and the guest runs on
    saving = await save_left_going(driver, server_id)
    assert await restarted.state(server_id) is PowerState.PAUSED
    assert await restarted.abandon_stray(server_id, running=True)
    assert not saving.exists() and not driver.paths(server_id).memory_state.exists()
    assert await restarted.state(server_id) is PowerState.RUNNING
    assert not await restarted.abandon_stray(server_id, running=True)  # nothing left
    await answers_ping(net)
    # killed once the save was complete and renamed, before QEMU was ended: the next agent
    # ends it, so the server is suspended as the suspend would have left it
    with monkeypatch.context() as patched:
        patched.setattr(qemu, "_terminate", agent_killed)
        with pytest.raises(AgentKilled):
            await driver.suspend(server_id)
    pid = int(driver.paths(server_id).pidfile.read_text())
    assert await restarted.state(server_id) is PowerState.PAUSED
    assert await restarted.abandon_stray(server_id, running=True)
    assert gone(pid)
    assert await restarted.state(server_id) is PowerState.SUSPENDED
    paths = driver.paths(server_id)
    saved = {path: path.read_bytes() for path in (paths.memory_state, paths.suspended)}
    await restarted.resume(server_id)
    assert await restarted.state(server_id) is PowerState.RUNNING
    await answers_ping(net)
    # a resume stopped after `cont`, before it dropped the saved files (put back here), and
    # then a suspend stopped mid-save: the save is undone, the old file not taken for its
    # result; then the resume is finished, its files dropped
    for path, data in saved.items():
        path.write_bytes(data)
    await save_left_going(driver, server_id)
    assert await restarted.abandon_stray(server_id, running=True)
    assert await restarted.state(server_id) is PowerState.RUNNING
    assert await restarted.abandon_stray(server_id, running=True)
    assert not paths.memory_state.exists() and not paths.suspended.exists()
    assert await restarted.state(server_id) is PowerState.RUNNING
    await answers_ping(net)

    await restarted.reboot(server_id, hard=False)
    await console_shows(driver, server_id, "Requesting system reboot")
    await console_shows(driver, server_id, f"instance {server_id} up", count=2)

    pid = int(driver.paths(server_id).pidfile.read_text())
    await restarted.stop(server_id, timeout=30)
    assert await driver.state(server_id) is PowerState.SHUTDOWN
    assert gone(pid)
    assert any("Power down" in line for line in await driver.console_log(server_id))

    await driver.start(server_id)
    await console_shows(driver, server_id, f"instance {server_id} up", count=3)
    assert await driver.state(server_id) is PowerState.RUNNING
    # the attached interface is on the command line of the new boot, and goes on detach
    await guest_macs_become(net, ssh, lambda macs: SECOND_MAC in macs)
    await driver.detach_nic(server_id, "port-2")
    await guest_macs_become(net, ssh, lambda macs: SECOND_MAC not in macs)
    await driver.detach_nic(server_id, "port-2")  # nothing when it is not there

    pid = int(driver.paths(server_id).pidfile.read_text())
    await driver.destroy(server_id)
    await driver.destroy(server_id)  # idempotent
    assert await driver.list() == []
    assert await driver.state(server_id) is PowerState.NOSTATE
    assert not driver.paths(server_id).dir.exists()
    assert gone(pid)


async def test_boot_time_to_console_and_ping(
    vm_image: Path, net: Net, driver: QemuInstances
) -> None:
    """create -> console `up`, create -> ping: p50 of three boots (target 5 s on an idle
    host; asserted loosely, since TCG shares two cores with whatever else runs)."""
    to_up, to_ping = [], []
    for run in range(3):
        server_id = f"vm-boot-{run}"
        started = time.monotonic()
        await driver.spawn(vm_spec(vm_image, net, server_id))
        await console_shows(driver, server_id, f"instance {server_id} up")
        to_up.append(time.monotonic() - started)
        await answers_ping(net)
        to_ping.append(time.monotonic() - started)
        await driver.destroy(server_id)
    up, ping = statistics.median(to_up), statistics.median(to_ping)
    print(f"\nboot: create->up p50 {up:.2f} s {to_up}, create->ping p50 {ping:.2f} s {to_ping}")
    assert ping < 20


def ssh_to_vm(net: Net, command: str) -> list[str]:
    return [
        *("ssh", "-i", str(net.ssh_key), "-o", "StrictHostKeyChecking=no"),
        *("-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20"),
        f"root@{VM_IP}",
        command,
    ]


async def test_a_rescued_vm_boots_the_rescue_image_with_its_own_disk_second(
    vm_image: Path, net: Net, driver: QemuInstances
) -> None:
    """Nova's rescue: the guest's root disk is the rescue's vdb, mended there, kept when the
    rescue guest boots again, and the guest's own again after unrescue."""
    server_id = "vm-rescue"
    await driver.spawn(vm_spec(vm_image, net, server_id))
    await console_shows(driver, server_id, "unistack: /dev/vda mounted on /mnt")
    token = secrets.token_hex(8)
    wrote = await asyncio.to_thread(
        in_netns, net, *ssh_to_vm(net, f"echo {token} > /mnt/own && sync"), timeout=60
    )
    assert wrote.returncode == 0, wrote.stderr
    boot = RescueBoot(
        image_file=vm_image / vmimage.DISK,
        kernel=vm_image / vmimage.VMLINUX,
        initrd=vm_image / vmimage.INITRD,
    )
    await driver.rescue(server_id, boot)
    await driver.rescue(server_id, boot)  # nothing more while rescued
    await console_shows(driver, server_id, "Power down")  # shut down first, as `stop`
    await console_shows(driver, server_id, f"instance {server_id} up", count=2)
    await console_shows(driver, server_id, "unistack: disks vda vdb")
    mend = (
        "test ! -e /mnt/own && mkdir -p /tmp/own && mount -t ext4 /dev/vdb /tmp/own && "
        "cat /tmp/own/own && echo mended > /tmp/own/mended && umount /tmp/own && sync"
    )
    mended = await asyncio.to_thread(in_netns, net, *ssh_to_vm(net, mend), timeout=60)
    assert mended.returncode == 0, mended.stdout + mended.stderr
    assert mended.stdout.split() == [token]
    assert driver.paths(server_id).rescue_disk.exists()

    restarted = QemuInstances(driver.root)  # an agent restart; a later boot is the rescue's
    await restarted.stop(server_id, timeout=30)
    await restarted.start(server_id)
    await console_shows(driver, server_id, "unistack: disks vda vdb", count=2)

    await restarted.unrescue(server_id)
    await restarted.unrescue(server_id)  # nothing when it is not rescued
    await console_shows(driver, server_id, f"instance {server_id} up", count=4)
    assert not driver.paths(server_id).rescue_disk.exists()
    back = await asyncio.to_thread(
        in_netns, net, *ssh_to_vm(net, "cat /mnt/own /mnt/mended; ls /sys/block"), timeout=60
    )
    assert back.returncode == 0, back.stderr
    assert back.stdout.split()[:2] == [token, "mended"]
    assert "vdb" not in back.stdout.split()
    with pytest.raises(InstanceError, match="not a disk image"):
        await driver.rescue(server_id, RescueBoot(image_layers=(vm_image,)))
    with pytest.raises(InstanceError, match="cdrom on the virtio bus"):
        await driver.rescue(server_id, replace(boot, device="cdrom", bus="virtio"))
    assert await driver.state(server_id) is PowerState.RUNNING

    # a stable device rescue (Nova 2.87): its own disk stays vda, the rescue disk comes last
    await driver.rescue(server_id, replace(boot, device="disk", bus="virtio"))
    await console_shows(driver, server_id, f"instance {server_id} up", count=5)
    stable = await asyncio.to_thread(
        in_netns, net, *ssh_to_vm(net, "cat /mnt/own; ls /sys/block"), timeout=60
    )
    assert stable.returncode == 0, stable.stderr
    assert stable.stdout.split()[0] == token and "vdb" in stable.stdout.split()
    await driver.unrescue(server_id)
    assert not driver.paths(server_id).rescue.exists()


async def test_qemu_refusing_to_start_is_reported(
    vm_image: Path, net: Net, driver: QemuInstances
) -> None:
    spec = replace(vm_spec(vm_image, net, "vm-bad"), kernel=Path("/nonexistent/vmlinux"))
    with pytest.raises(InstanceError, match="/nonexistent/vmlinux"):
        await driver.spawn(spec)
    assert await driver.state("vm-bad") is PowerState.SHUTDOWN
    await driver.destroy("vm-bad")
    assert await driver.list() == []
    with pytest.raises(InstanceError, match="no instance"):
        await driver.stop("vm-bad")


@pytest.fixture
def second_host(net: Net) -> Iterator[Net]:
    """Another host for a live migration: its own namespace with a bridge (10.77.0.2/24)
    cabled to the first's by a veth pair, and taps of the same names for the VM's NICs."""
    name = f"unistack-t{secrets.token_hex(3)}"
    try:
        ip("netns", "add", name)
        ip("-n", name, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", name, "addr", "add", f"{SECOND_HOST_IP}/24", "dev", BRIDGE)
        for tap in (TAP, TAP2):
            ip("-n", name, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr")
            ip("-n", name, "link", "set", tap, "master", BRIDGE, "up")
        ip("-n", name, "link", "add", "unistack-cable", "type", "veth", "peer", "unistack-cable",
           "netns", net.name)  # fmt: skip
        ip("-n", name, "link", "set", "unistack-cable", "master", BRIDGE, "up")
        ip("-n", net.name, "link", "set", "unistack-cable", "master", BRIDGE, "up")
        ip("-n", name, "link", "set", BRIDGE, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield Net(name, f"/run/netns/{name}", net.ssh_key)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


SECOND_HOST_IP = "10.77.0.2"


async def test_a_running_vm_moves_live_to_another_host_with_its_disk_and_devices(
    vm_image: Path, net: Net, second_host: Net, driver: QemuInstances
) -> None:
    """Live migration with block migration: the guest's root-disk writes, its hot-plugged
    NIC and its uptime go along; the source is left paused and goes; a migration to nowhere,
    or one its admin aborts, leaves the guest running where it was; a forced completion
    pauses the guest until it resumes there; one its agent stopped following is undone by
    the next agent."""
    server_id = "vm-live"
    spec = vm_spec(vm_image, net, server_id)
    await driver.spawn(spec)
    await console_shows(driver, server_id, f"unistack: instance {server_id} up, eth0 {VM_IP}")
    await console_shows(driver, server_id, "unistack: /dev/vda mounted on /mnt")
    ssh = [
        *("ssh", "-i", str(net.ssh_key), "-o", "StrictHostKeyChecking=no"),
        *("-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20"),
        f"root@{VM_IP}",
    ]
    token = secrets.token_hex(8)
    write = await asyncio.to_thread(
        in_netns, net, *ssh, f"echo {token} > /mnt/moved && sync && cut -d. -f1 /proc/uptime",
        timeout=60,
    )  # fmt: skip
    assert write.returncode == 0, write.stderr
    uptime_before = int(write.stdout.split()[-1])
    second = Nic("port-2", SECOND_MAC, TAP2, ("10.77.0.11/24",))
    await driver.attach_nic(server_id, second)  # hot-plugged: the slot QEMU chose stays
    slots = await driver.slots(server_id)
    assert {"root", f"nic-{TAP}", f"nic-{TAP2}"} <= set(slots)

    # a destination that is not there: nothing moves, the guest runs on here
    with pytest.raises(InstanceError, match="live migration of vm-live"):
        await driver.send_live(server_id, Incoming(SECOND_HOST_IP, 1, 1, ("root",)))
    assert await driver.state(server_id) is PowerState.RUNNING
    await answers_ping(net)

    there = QemuInstances(Path(tempfile.mkdtemp(prefix="unistack-qt-")))
    try:
        moved = replace(spec, netns_path=second_host.path, nics=(*spec.nics, second))
        # aborted by its admin: the copy stops, the guest runs on here
        incoming = await there.receive_live(moved, slots, SECOND_HOST_IP)
        sending = asyncio.create_task(driver.send_live(server_id, incoming))
        while driver.progress(server_id) is None:
            await asyncio.sleep(0.005)
        assert driver.steer(server_id, "abort")
        with pytest.raises(InstanceError, match="aborted on request"):
            await sending
        assert not driver.steer(server_id, "abort")  # none under way now
        assert await driver.state(server_id) is PowerState.RUNNING
        await there.destroy(server_id)
        await answers_ping(net)

        # its agent gone in the middle of the memory copy: QEMU copies on alone and waits,
        # paused, before the switch-over; the next agent undoes it and the guest runs on
        incoming = await there.receive_live(moved, slots, SECOND_HOST_IP)
        sending = asyncio.create_task(driver.send_live(server_id, incoming))
        while "memory_total_bytes" not in (driver.progress(server_id) or {}):
            await asyncio.sleep(0.005)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        async with qmp.connect(driver.paths(server_id).qmp) as monitor:
            while (await monitor.execute("query-migrate"))["status"] != "pre-switchover":
                await asyncio.sleep(0.02)
        assert await driver.state(server_id) is PowerState.PAUSED
        next_agent = QemuInstances(driver.root)
        assert await next_agent.abandon_stray(server_id, running=True)
        assert await driver.state(server_id) is PowerState.RUNNING
        assert not await next_agent.abandon_stray(server_id, running=True)  # nothing left
        await there.destroy(server_id)
        await answers_ping(net)

        incoming = await there.receive_live(moved, slots, SECOND_HOST_IP)
        assert incoming.exports == ("root",) and incoming.host == SECOND_HOST_IP
        with pytest.raises(InstanceError, match="already on this host"):
            await there.receive_live(moved, slots, SECOND_HOST_IP)
        # a paused guest (Nova pauses it before) moves paused, forced to complete, its
        # progress shown
        await driver.pause(server_id)
        sending = asyncio.create_task(driver.send_live(server_id, incoming))
        seen: list[dict[str, int]] = []
        while not sending.done():
            progress = driver.progress(server_id)
            if progress is not None and driver.steer(server_id, "force_complete"):
                seen.append(progress)
            await asyncio.sleep(0.01)
        await sending
        assert any(p.get("disk_total_bytes", 0) > 0 for p in seen), seen
        assert await driver.state(server_id) is PowerState.PAUSED  # postmigrate, here
        assert await driver.departed(server_id) and not await there.departed(server_id)
        console = "\n".join(await driver.console_log(server_id))
        await there.finish_live(server_id, console, paused=True)
        await there.finish_live(server_id, console, paused=True)  # asked again: no change
        await driver.destroy(server_id)
        assert await there.state(server_id) is PowerState.PAUSED  # it stays paused there
        await there.unpause(server_id)
        assert await there.state(server_id) is PowerState.RUNNING

        await answers_ping(net)  # from the first host, across the cable, to the second
        read = await asyncio.to_thread(
            in_netns, net, *ssh, "cat /mnt/moved; cut -d. -f1 /proc/uptime; "
            "cat /sys/class/net/*/address", timeout=60,
        )  # fmt: skip
        assert read.returncode == 0, read.stderr
        written, uptime_after, *macs = read.stdout.split()
        assert written == token
        assert int(uptime_after) >= uptime_before  # the same boot: it never restarted
        assert SECOND_MAC in macs
        # the console came along, and shows one boot
        lines = await there.console_log(server_id)
        assert sum(f"instance {server_id} up" in line for line in lines) == 1
    finally:
        for left in await there.list():
            await there.destroy(left)
        shutil.rmtree(there.root, ignore_errors=True)
