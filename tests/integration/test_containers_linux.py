"""The `container` compute driver on a real kernel: busybox servers under runc.

The fixtures (the busybox image's layers, a driver per test, the namespaces joined by a veth)
are in `containerkit`. Needs root, runc, iproute2 and
losetup; skipped with the reason otherwise. Servers, namespaces, loop devices and cgroups are
removed even when a test fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import containerkit
from tests.integration.containerkit import Wire, ip
from unistack.dataplane import ephemeral, loopdev, mounts
from unistack.dataplane.containers import CGROUP_ROOT, ContainerInstances
from unistack.dataplane.instances import (
    Disk,
    InstanceError,
    InstanceSpec,
    Nic,
    PowerState,
    RescueBoot,
)
from unistack.images import build

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in ("runc", "ip", "losetup"))
        or not build.BUSYBOX.exists(),
        reason="needs root, runc, ip (iproute2), losetup and /bin/busybox",
    ),
]

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBunistackTestKeyOnly test@unistack"
METADATA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBunistackMetadataKey meta@unistack"

# the shared fixtures (`containerkit`)
busybox_layers, driver, wire = containerkit.busybox_layers, containerkit.driver, containerkit.wire


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    backing = tmp_path / "volume.img"
    backing.write_bytes(b"\0" * (4 * 1024 * 1024))
    device = subprocess.run(
        ["losetup", "-f", "--show", str(backing)],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    try:
        yield device, backing
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def server_spec(
    layers: tuple[Path, ...], wire: Wire | None = None, **changes: object
) -> InstanceSpec:
    server_id = secrets.token_hex(8)
    nics: tuple[Nic, ...] = ()
    if wire is not None:
        nic = Nic("port-1", "fa:16:3e:00:00:01", "eth0", (f"{wire.server_ip}/24",), wire.host_ip)
        nics = (nic,)
    values: dict[str, object] = {
        "server_id": server_id,
        "hostname": f"vm-{server_id[:6]}",
        "vcpus": 1,
        "memory_mb": 96,
        "image_layers": layers,
        "netns_path": f"/run/netns/{wire.netns}" if wire else None,
        "nics": nics,
        "public_keys": (KEY,),
    }
    values.update(changes)
    return InstanceSpec(**values)  # type: ignore[arg-type]


METADATA_SERVER = """
import http.server, sys
paths = {"/latest/meta-data/public-keys/": b"0=from-metadata\\n",
         "/latest/meta-data/public-keys/0/openssh-key": sys.argv[1].encode() + b"\\n"}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = paths.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body or b"")
server = http.server.HTTPServer(("169.254.169.254", 80), Handler)
print("ready", flush=True)
server.serve_forever()
"""


@pytest.fixture
def dhcp_and_metadata(wire: Wire, tmp_path: Path) -> Iterator[Wire]:
    """udhcpd (busybox) and a metadata service on 169.254.169.254, on the host side."""
    subnet = wire.host_ip.rsplit(".", 1)[0]
    config = tmp_path / "udhcpd.conf"
    config.write_text(
        f"start {subnet}.50\nend {subnet}.60\ninterface {wire.host_if}\n"
        f"lease_file {tmp_path}/leases\npidfile {tmp_path}/udhcpd.pid\n"
        f"option subnet 255.255.255.0\noption router {wire.host_ip}\noption dns {wire.host_ip}\n"
    )
    (tmp_path / "leases").touch()
    ip("-n", wire.host_netns, "addr", "add", "169.254.169.254/32", "dev", wire.host_if)
    in_host = ["ip", "netns", "exec", wire.host_netns]
    servers = [
        subprocess.Popen([*in_host, str(build.BUSYBOX), "udhcpd", "-f", str(config)]),
        subprocess.Popen(
            [*in_host, sys.executable, "-c", METADATA_SERVER, METADATA_KEY],
            stdout=subprocess.PIPE,
        ),
    ]
    try:
        assert servers[1].stdout is not None and servers[1].stdout.readline() == b"ready\n"
        yield wire
    finally:
        for server in servers:
            server.kill()
            server.wait()


def guest(driver: ContainerInstances, server_id: str, script: str) -> str:
    """Run `sh -c script` inside the running server; its stdout."""
    argv = ["runc", "--root", str(driver.runc_root), "exec", driver.container_id(server_id)]
    done = subprocess.run(
        [*argv, "sh", "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def up_lines(driver: ContainerInstances, server_id: str, count: int = 1) -> list[str]:
    """Wait for the `count`th `up` line on the console; all of them."""
    async with asyncio.timeout(20):
        while True:
            console = await driver.console_log(server_id)
            found = [line for line in console if f"instance {server_id} up" in line]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


async def init_pid(driver: ContainerInstances, server_id: str) -> int:
    state = await driver._runc_state(server_id)
    assert state is not None and state["status"] == "running"
    return int(state["pid"])


def cgroup_value(driver: ContainerInstances, hierarchy: str, server_id: str, name: str) -> str:
    path = CGROUP_ROOT / hierarchy / driver.cgroup_path(server_id).lstrip("/") / name
    return path.read_text().strip()


async def test_server_boots_with_hostname_network_keys_and_flavor_limits(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], wire: Wire
) -> None:
    spec = server_spec(busybox_layers, wire, vcpus=2)
    await driver.spawn(spec)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    (line,) = await up_lines(driver, spec.server_id)
    assert line == f"unistack: instance {spec.server_id} up, eth0 {wire.server_ip}"

    assert guest(driver, spec.server_id, "hostname").strip() == spec.hostname
    assert guest(driver, spec.server_id, "cat /root/.ssh/authorized_keys") == KEY + "\n"
    modes = guest(driver, spec.server_id, "stat -c %a /root /root/.ssh").split()
    assert modes == ["700", "700"]  # the image's mode for /root, 0700 for .ssh
    assert guest(driver, spec.server_id, "ps -o comm | sed -n 2p").strip() == "init"
    ping = ["ping", "-c", "1", "-W", "2", wire.server_ip]
    ping = ["ip", "netns", "exec", wire.host_netns, str(build.BUSYBOX), *ping]
    assert subprocess.run(ping, capture_output=True, timeout=10).returncode == 0

    assert cgroup_value(driver, "memory", spec.server_id, "memory.limit_in_bytes") == str(
        96 * 1024 * 1024
    )
    assert cgroup_value(driver, "cpu", spec.server_id, "cpu.cfs_quota_us") == "200000"
    assert cgroup_value(driver, "pids", spec.server_id, "pids.max") == "4096"

    pid = await init_pid(driver, spec.server_id)
    await driver.spawn(spec)  # already running: nothing happens
    assert await init_pid(driver, spec.server_id) == pid

    # An agent restart: a new driver on the same root finds the server running.
    again = ContainerInstances(driver.root, cgroup_parent=driver.cgroup_parent)
    assert await again.list() == [spec.server_id]
    assert await again.state(spec.server_id) == PowerState.RUNNING
    assert (await again.console_log(spec.server_id, lines=1))[0].startswith("unistack: instance")


async def test_dhcp_lease_and_metadata_keys(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], dhcp_and_metadata: Wire
) -> None:
    wire = dhcp_and_metadata
    spec = server_spec(busybox_layers, wire)
    dhcp_nic = Nic("port-1", "fa:16:3e:00:00:02", "eth0")  # no fixed IPs: udhcpc
    spec = dataclasses.replace(spec, nics=(dhcp_nic,))
    await driver.spawn(spec)
    (line,) = await up_lines(driver, spec.server_id)
    leased = line.rsplit(" ", 1)[1]
    subnet = wire.host_ip.rsplit(".", 1)[0]
    assert leased.startswith(f"{subnet}.") and 50 <= int(leased.rsplit(".", 1)[1]) <= 60
    assert f"default via {wire.host_ip}" in guest(driver, spec.server_id, "ip route")
    assert guest(driver, spec.server_id, "cat /etc/resolv.conf") == f"nameserver {wire.host_ip}\n"
    async with asyncio.timeout(10):
        while METADATA_KEY not in guest(driver, spec.server_id, "cat /root/.ssh/authorized_keys"):
            await asyncio.sleep(0.1)
    keys = guest(driver, spec.server_id, "cat /root/.ssh/authorized_keys")
    assert keys == f"{KEY}\n{METADATA_KEY}\n"
    url = "http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key"  # curl: Makefile
    assert guest(driver, spec.server_id, f"curl -sf {url}") == f"{METADATA_KEY}\n"


async def test_stop_keeps_the_disk_and_start_boots_again(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    spec = server_spec(busybox_layers)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    guest(driver, spec.server_id, "echo kept > /root/data")

    await driver.stop(spec.server_id, timeout=10)
    assert await driver.state(spec.server_id) == PowerState.SHUTDOWN
    rootfs = driver.instance_dir(spec.server_id) / "rootfs"
    assert not mounts.is_mount_point(rootfs)
    assert any("shutting down" in line for line in await driver.console_log(spec.server_id))

    await driver.start(spec.server_id)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    await up_lines(driver, spec.server_id, count=2)
    assert guest(driver, spec.server_id, "cat /root/data") == "kept\n"


async def test_pause_and_suspend_freeze_the_guest_and_it_goes_on_where_it_was(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    """Pause and suspend are the cgroup freezer (no CRIU here): every process of the guest
    stops where it is and goes on from there; a frozen guest still stops and reboots."""
    spec = server_spec(busybox_layers)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    init = await init_pid(driver, spec.server_id)
    guest(driver, spec.server_id, "echo kept > /tmp/memory")

    await driver.pause(spec.server_id)
    await driver.pause(spec.server_id)  # nothing when paused already
    assert await driver.state(spec.server_id) == PowerState.PAUSED
    assert cgroup_value(driver, "freezer", spec.server_id, "freezer.state") == "FROZEN"
    await driver.unpause(spec.server_id)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    assert cgroup_value(driver, "freezer", spec.server_id, "freezer.state") == "THAWED"

    await driver.suspend(spec.server_id)
    assert await driver.state(spec.server_id) == PowerState.SUSPENDED
    restarted = ContainerInstances(driver.root, cgroup_parent=driver.cgroup_parent, ssh=False)
    assert await restarted.state(spec.server_id) == PowerState.SUSPENDED  # an agent restart
    await restarted.resume(spec.server_id)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    assert await init_pid(driver, spec.server_id) == init  # the same boot
    assert guest(driver, spec.server_id, "cat /tmp/memory") == "kept\n"

    await driver.pause(spec.server_id)  # a frozen guest takes no signal until it thaws
    await driver.reboot(spec.server_id, hard=True)
    await up_lines(driver, spec.server_id, count=2)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    await driver.suspend(spec.server_id)
    await driver.stop(spec.server_id, timeout=5)
    assert await driver.state(spec.server_id) == PowerState.SHUTDOWN
    with pytest.raises(InstanceError, match="not running"):
        await driver.pause(spec.server_id)


async def test_an_attached_interface_is_configured_at_once_and_at_every_boot(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], wire: Wire
) -> None:
    """A second NIC while the guest runs: its veth end put into the server's namespace (the
    agent's part), then `attach_nic` brings it up with its address; the next boot's init
    configures it too, and after `detach_nic` no boot names it."""
    spec = server_spec(busybox_layers, wire)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    host_if, subnet = f"{wire.host_if[:-1]}s", f"10.252.{wire.host_ip.split('.')[2]}"
    ip(*f"link add {host_if} netns {wire.host_netns} type veth peer name eth1".split(),
       "address", "fa:16:3e:00:00:02", "netns", wire.netns)  # fmt: skip
    ip("-n", wire.host_netns, "addr", "add", f"{subnet}.1/24", "dev", host_if)
    ip("-n", wire.host_netns, "link", "set", host_if, "up")

    second = Nic("port-2", "fa:16:3e:00:00:02", "eth1", (f"{subnet}.2/24",), f"{subnet}.1")
    await driver.attach_nic(spec.server_id, second)
    shown = guest(driver, spec.server_id, "ip -o -4 addr show dev eth1")
    assert f"inet {subnet}.2/24" in shown
    ping = [str(build.BUSYBOX), "ping", "-c", "1", "-W", "2", f"{subnet}.2"]
    ping = ["ip", "netns", "exec", wire.host_netns, *ping]
    assert subprocess.run(ping, capture_output=True, timeout=10).returncode == 0
    route = guest(driver, spec.server_id, "ip route show default")
    assert f"via {wire.host_ip} dev eth0" in route  # the first NIC keeps the default route

    await driver.stop(spec.server_id, timeout=10)
    await driver.start(spec.server_id)
    await up_lines(driver, spec.server_id, count=2)
    assert f"inet {subnet}.2/24" in guest(driver, spec.server_id, "ip -o -4 addr show dev eth1")

    await driver.detach_nic(spec.server_id, "port-2")
    ip("-n", wire.host_netns, "link", "del", host_if)  # the agent's part: the veth goes
    await driver.reboot(spec.server_id, hard=True)
    lines = await up_lines(driver, spec.server_id, count=3)
    assert lines[-1] == f"unistack: instance {spec.server_id} up, eth0 {wire.server_ip}"


async def test_personality_files_land_in_the_guests_root_once(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], tmp_path: Path
) -> None:
    """Written at the first boot through the guest's own links (an absolute link is the
    guest's path, never the host's), then the guest's: a restart does not write them again."""
    extra = tmp_path / "extra-layer"
    (extra / "srv" / "unistack-guest-only").mkdir(parents=True)
    (extra / "data").symlink_to("/srv/unistack-guest-only")
    files = {"/data/hello.txt": b"hello", "relative.txt": b"\xff\x00binary"}
    spec = server_spec((*busybox_layers, extra), personality=files)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    assert guest(driver, spec.server_id, "cat /srv/unistack-guest-only/hello.txt") == "hello"
    assert not Path("/srv/unistack-guest-only").exists()  # the host's root was never reached
    written = guest(driver, spec.server_id, "od -An -tx1 /relative.txt").split()
    assert written == [f"{byte:02x}" for byte in files["relative.txt"]]
    guest(driver, spec.server_id, "echo changed > /relative.txt")
    await driver.stop(spec.server_id, timeout=10)
    await driver.start(spec.server_id)
    await up_lines(driver, spec.server_id, count=2)
    assert guest(driver, spec.server_id, "cat /relative.txt") == "changed\n"


async def test_soft_and_hard_reboot_boot_a_new_init(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    spec = server_spec(busybox_layers)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    first = await init_pid(driver, spec.server_id)

    await driver.reboot(spec.server_id, hard=False)
    await up_lines(driver, spec.server_id, count=2)
    console = await driver.console_log(spec.server_id)
    assert any("Requesting system reboot" in line for line in console)
    second = await init_pid(driver, spec.server_id)

    await driver.reboot(spec.server_id, hard=True)
    await up_lines(driver, spec.server_id, count=3)
    assert await driver.state(spec.server_id) == PowerState.RUNNING
    assert len({first, second, await init_pid(driver, spec.server_id)}) == 3


async def test_attached_loop_device_is_writable_inside_and_survives_a_restart(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], loop_device: tuple[str, Path]
) -> None:
    device, backing = loop_device
    spec = server_spec(busybox_layers)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)

    await driver.attach_disk(spec.server_id, Disk("vol-1", device, "vdb"))
    guest(driver, spec.server_id, "printf unistack-volume | dd of=/dev/vdb conv=fsync 2>/dev/null")
    with open(device, "rb") as raw:  # through the device: the page cache is the loop's
        assert raw.read(15) == b"unistack-volume"

    # the file grows (as the pool extends a volume): the guest sees it after resize_disk
    assert guest(driver, spec.server_id, "blockdev --getsize64 /dev/vdb") == "4194304\n"
    os.truncate(backing, 8 * 1024 * 1024)
    await driver.resize_disk(spec.server_id, "vol-1")
    assert guest(driver, spec.server_id, "blockdev --getsize64 /dev/vdb") == "8388608\n"
    partitions = guest(driver, spec.server_id, "cat /proc/partitions").split("\n")
    assert any(row.split()[2:] == ["8192", "vdb"] for row in partitions if row.strip())
    with pytest.raises(InstanceError, match="not attached"):
        await driver.resize_disk(spec.server_id, "vol-unknown")

    await driver.stop(spec.server_id, timeout=10)
    await driver.start(spec.server_id)
    await up_lines(driver, spec.server_id, count=2)
    assert guest(driver, spec.server_id, "head -c 15 /dev/vdb") == "unistack-volume"

    await driver.detach_disk(spec.server_id, "vol-1")
    assert guest(driver, spec.server_id, "ls /dev/vdb 2>/dev/null || echo gone").strip() == "gone"
    with pytest.raises(InstanceError):
        await driver.attach_disk(spec.server_id, Disk("vol-2", str(backing), "vdc"))
    with pytest.raises(InstanceError):
        await driver.attach_disk(spec.server_id, Disk("vol-3", device, "../etc"))


async def test_a_rescue_boots_the_rescue_image_with_the_servers_root_on_mnt(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    """Nova's rescue: the server's root filesystem is the rescue's /mnt, mended there, the
    rescue's own writes gone with it; rescued across a stop and start; destroy while
    rescued leaves no mount."""
    spec = server_spec(busybox_layers)
    server_id, directory = spec.server_id, driver.instance_dir(spec.server_id)
    await driver.spawn(spec)
    await up_lines(driver, server_id)
    guest(driver, server_id, "echo kept > /root/data")
    # a rescue that cannot boot is undone: the server boots as it was
    with pytest.raises(InstanceError, match="image layers missing"):
        await driver.rescue(server_id, RescueBoot(image_layers=(Path("/nonexistent"),)))
    await up_lines(driver, server_id, count=2)
    assert guest(driver, server_id, "cat /root/data") == "kept\n"
    assert not (directory / "rescue.json").exists()

    boot = RescueBoot(image_layers=busybox_layers)
    await driver.rescue(server_id, boot)
    await driver.rescue(server_id, boot)  # nothing more while rescued
    await up_lines(driver, server_id, count=3)
    assert any("shutting down" in line for line in await driver.console_log(server_id))
    seen = guest(driver, server_id, "test ! -e /root/data && cat /mnt/root/data")
    assert seen == "kept\n"
    guest(driver, server_id, "echo mended > /mnt/root/mended; echo rescue-only > /root/note")

    await driver.stop(server_id, timeout=10)
    assert mounts.mounts_under(directory) == []
    await driver.start(server_id)  # still rescued
    await up_lines(driver, server_id, count=4)
    assert guest(driver, server_id, "cat /mnt/root/mended /root/note") == "mended\nrescue-only\n"

    await driver.unrescue(server_id)
    await driver.unrescue(server_id)  # nothing when it is not rescued and runs
    await up_lines(driver, server_id, count=5)
    assert guest(driver, server_id, "cat /root/data /root/mended") == "kept\nmended\n"
    assert guest(driver, server_id, "test ! -e /root/note && ls /mnt | wc -l") == "0\n"
    assert not (directory / "rescue").exists()
    assert mounts.mounts_under(directory) == [directory / "rootfs"]
    with pytest.raises(InstanceError, match="not a filesystem"):
        await driver.rescue(server_id, RescueBoot(image_file=Path("/nonexistent.qcow2")))

    await driver.rescue(server_id, boot)
    await up_lines(driver, server_id, count=6)
    await driver.destroy(server_id)
    assert mounts.mounts_under(driver.root) == []
    assert not directory.exists()


async def test_destroy_leaves_nothing_behind(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], wire: Wire
) -> None:
    spec = server_spec(busybox_layers, wire)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    directory = driver.instance_dir(spec.server_id)

    await driver.destroy(spec.server_id)
    assert await driver.state(spec.server_id) == PowerState.NOSTATE
    assert await driver.list() == []
    assert not directory.exists()
    assert not (driver.runc_root / driver.container_id(spec.server_id)).exists()
    assert mounts.mounts_under(driver.root) == []
    cgroup = driver.cgroup_path(spec.server_id).lstrip("/")
    assert [h.name for h in CGROUP_ROOT.iterdir() if (h / cgroup).exists()] == []
    await driver.destroy(spec.server_id)  # idempotent
    with pytest.raises(InstanceError):
        await driver.start(spec.server_id)


async def test_a_failed_boot_is_an_instance_error_and_leaves_no_mount(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    spec = server_spec(busybox_layers, netns_path="/run/netns/unistack-t-missing")
    with pytest.raises(InstanceError, match="unistack-t-missing"):
        await driver.spawn(spec)
    assert await driver.state(spec.server_id) == PowerState.SHUTDOWN
    assert mounts.mounts_under(driver.root) == []
    with pytest.raises(InstanceError, match="image layers missing"):
        await driver.spawn(server_spec((Path("/nonexistent-layer"),)))


async def test_cleanup_all_kills_every_server_and_keeps_their_disks(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    specs = [server_spec(busybox_layers) for _ in range(2)]
    for spec in specs:
        await driver.spawn(spec)
    await driver.cleanup_all()
    assert mounts.mounts_under(driver.root) == []
    for spec in specs:
        assert await driver.state(spec.server_id) == PowerState.SHUTDOWN
    await driver.start(specs[0].server_id)
    assert await driver.state(specs[0].server_id) == PowerState.RUNNING


async def test_boot_times(driver: ContainerInstances, busybox_layers: tuple[Path, ...]) -> None:
    """spawn -> RUNNING and spawn -> the console's `up` line, p50 over 10 servers."""
    running, up = [], []
    for _ in range(10):
        spec = server_spec(busybox_layers)
        started = time.perf_counter()
        await driver.spawn(spec)
        assert await driver.state(spec.server_id) == PowerState.RUNNING
        running.append(time.perf_counter() - started)
        await up_lines(driver, spec.server_id)
        up.append(time.perf_counter() - started)
        await driver.destroy(spec.server_id)
    p50_running, p50_up = statistics.median(running), statistics.median(up)
    print(f"spawn->RUNNING p50 {p50_running * 1000:.0f} ms, spawn->up p50 {p50_up * 1000:.0f} ms")
    assert p50_up < 2.0


async def test_the_flavors_ephemeral_disk_is_vdb_kept_across_a_restart_and_released(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...]
) -> None:
    """A blank ext4 disk of the flavor's size, the guest's vdb: what the guest writes there
    stays across stop and start, the loop device under it goes at stop and with the server."""
    spec = server_spec(busybox_layers, ephemeral_gb=1)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)
    disk = ephemeral.path_in(driver.instance_dir(spec.server_id))
    assert disk.stat().st_size == 1024**3 and disk.stat().st_blocks * 512 < 64 * 1024**2
    listed = guest(driver, spec.server_id, "lsblk")
    assert [line.split()[0] for line in listed.splitlines()[1:]] == ["vdb"]
    assert listed.splitlines()[1].split()[5] == "disk"  # as Tempest counts disks
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(disk)],
                           capture_output=True, text=True, check=False).stdout  # fmt: skip
    assert label.strip() == ephemeral.LABEL
    guest(driver, spec.server_id, "printf kept | dd of=/dev/vdb bs=1 seek=8192 conv=fsync")

    await driver.stop(spec.server_id, timeout=10)
    assert loopdev.loops_backed_by(disk) == []  # released while the server is off
    await driver.start(spec.server_id)
    await up_lines(driver, spec.server_id, count=2)
    kept = "dd if=/dev/vdb bs=1 skip=8192 count=4 2>/dev/null"
    assert guest(driver, spec.server_id, kept) == "kept"
    assert len(loopdev.loops_backed_by(disk)) == 1

    await driver.destroy(spec.server_id)
    assert loopdev.loops_backed_by(driver.root) == [] and not disk.exists()


async def test_the_guests_proc_partitions_lists_its_own_disks(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], loop_device: tuple[str, Path]
) -> None:
    """Not the host's: the root as vda, the ephemeral disk, then volumes as they come and go
    (what Tempest counts with `grep -c -E '[vs]d.$' /proc/partitions`)."""
    device, _ = loop_device
    spec = server_spec(busybox_layers, ephemeral_gb=1, root_gb=2)
    await driver.spawn(spec)
    await up_lines(driver, spec.server_id)

    def partitions() -> dict[str, int]:
        rows = guest(driver, spec.server_id, "cat /proc/partitions").splitlines()[2:]
        return {row.split()[3]: int(row.split()[2]) for row in rows}

    count = "grep -c -E '[vs]d.$' /proc/partitions"
    assert partitions() == {"vda": 2 * 1024**2, "vdb": 1024**2}
    assert guest(driver, spec.server_id, count).strip() == "2"
    await driver.attach_disk(spec.server_id, Disk("vol-1", device, "vdc"))
    assert partitions() == {"vda": 2 * 1024**2, "vdb": 1024**2, "vdc": 4096}
    await driver.detach_disk(spec.server_id, "vol-1")
    assert guest(driver, spec.server_id, count).strip() == "2"
    await driver.reboot(spec.server_id, hard=True)  # a new container: shown again
    await up_lines(driver, spec.server_id, count=2)
    assert set(partitions()) == {"vda", "vdb"}
