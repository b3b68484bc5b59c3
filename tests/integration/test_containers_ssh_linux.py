"""SSH into a container server: the host's dropbear in a busybox guest, logged into over a veth.

The built-in busybox image is built and unpacked once per module; each test gets a driver on
its own state dir and cgroup parent, and two namespaces joined by a veth (`unistack-s<hex>`
for the server, `unistack-s<hex>h` for the client side), so nothing is configured in the
host's own namespace. The client is OpenSSH's `ssh` with a key made for the test. Needs
root, runc, iproute2, dropbear (Debian's `dropbear-bin`), ssh and ssh-keygen; skipped with
the reason otherwise. Everything is removed even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from unistack.dataplane import mounts, sshd
from unistack.dataplane.containers import ContainerInstances, remove_cgroup
from unistack.dataplane.instances import InstanceSpec, Nic
from unistack.images import build, unpack

TOOLS = ("runc", "ip", "ssh", "ssh-keygen")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in TOOLS)
        or not build.BUSYBOX.exists()
        or sshd.locate() is None,
        reason="needs root, runc, ip, ssh, ssh-keygen, /bin/busybox and dropbear (dropbear-bin)",
    ),
]


@pytest.fixture(scope="module")
def busybox_layers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    image = build.build_image(build.BUSYBOX_IMAGE)
    manifest = orjson.loads(image.manifest)
    root = tmp_path_factory.mktemp("busybox")
    layers = []
    for index, layer in enumerate(manifest["layers"]):
        blob = root / f"{index}.tar.gz"
        blob.write_bytes(image.blobs[layer["digest"]])
        target = root / f"layer{index}"
        target.mkdir()
        unpack.unpack_layer(blob, target)
        layers.append(target)
    return tuple(layers)


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@unistack", "-f", str(key)],
        check=True,
        timeout=20,
    )
    return key


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[ContainerInstances]:
    cgroup_parent = f"/unistack/test-{secrets.token_hex(4)}"
    instances = ContainerInstances(tmp_path / "servers", cgroup_parent=cgroup_parent)
    try:
        yield instances
    finally:
        for server_id in await instances.list():
            await instances.destroy(server_id)
        await instances.cleanup_all()
        for point in mounts.mounts_under(tmp_path):
            mounts.unmount(point)
        remove_cgroup(cgroup_parent)


@dataclass
class Wire:
    netns: str
    client_netns: str
    client_ip: str
    server_ip: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def wire() -> Iterator[Wire]:
    suffix = secrets.token_hex(3)
    subnet = f"10.252.{int(suffix[:2], 16)}"
    client_if = f"unistack{suffix}s"
    found = Wire(f"unistack-s{suffix}", f"unistack-s{suffix}h", f"{subnet}.1", f"{subnet}.2")
    try:
        ip("netns", "add", found.netns)
        ip("netns", "add", found.client_netns)
        ip("link", "add", client_if, "netns", found.client_netns, "type", "veth",
           "peer", "name", "eth0", "netns", found.netns)  # fmt: skip
        ip("-n", found.client_netns, "addr", "add", f"{found.client_ip}/24", "dev", client_if)
        ip("-n", found.client_netns, "link", "set", client_if, "up")
        yield found
    finally:
        for name in (found.netns, found.client_netns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def server_spec(layers: tuple[Path, ...], wire: Wire, key: Path, vcpus: int) -> InstanceSpec:
    server_id = secrets.token_hex(8)
    nic = Nic("port-1", "fa:16:3e:00:00:05", "eth0", (f"{wire.server_ip}/24",), wire.client_ip)
    return InstanceSpec(
        server_id=server_id,
        hostname=f"ssh-{server_id[:6]}",
        vcpus=vcpus,
        memory_mb=96,
        image_layers=layers,
        netns_path=f"/run/netns/{wire.netns}",
        nics=(nic,),
        public_keys=(key.with_suffix(".pub").read_text(),),
    )


def ssh(wire: Wire, key: Path, command: str, *options: str) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", wire.client_netns, "ssh", "-i", str(key), "-F", "/dev/null"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options]
    return subprocess.run(
        [*argv, f"root@{wire.server_ip}", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def logged_in(wire: Wire, key: Path, command: str) -> str:
    """`command`'s output over SSH, retried until the server answers (it is booting)."""
    async with asyncio.timeout(30):
        while True:
            done = await asyncio.to_thread(ssh, wire, key, command)
            if done.returncode == 0:
                return done.stdout
            await asyncio.sleep(0.2)


async def test_ssh_login_with_the_server_key_runs_busybox_commands(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], wire: Wire, client_key: Path
) -> None:
    spec = server_spec(busybox_layers, wire, client_key, vcpus=1)
    await driver.spawn(spec)

    assert (await logged_in(wire, client_key, "hostname")).strip() == spec.hostname
    assert (await logged_in(wire, client_key, "grep -c ^processor /proc/cpuinfo")).strip() == "1"
    uptime = float((await logged_in(wire, client_key, "cut -d' ' -f1 /proc/uptime")).strip())
    assert uptime < 60  # the guest's boot clock, not the host's
    assert "eth0" in await logged_in(wire, client_key, "ip -o addr")
    header = (await logged_in(wire, client_key, "lsblk -lb --nodeps")).splitlines()[0]
    assert header.split()[:6] == ["NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE"]

    # Keys only: a password login is refused, whatever the client offers.
    refused = ssh(wire, client_key, "true", "-o", "PubkeyAuthentication=no")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    # Per-server host keys, in the server's own upper layer (its state dir).
    keys = driver.instance_dir(spec.server_id) / "upper" / "etc" / "dropbear"
    assert (keys / "dropbear_ed25519_host_key").stat().st_size > 0


async def test_sshd_is_respawned_and_survives_a_reboot(
    driver: ContainerInstances, busybox_layers: tuple[Path, ...], wire: Wire, client_key: Path
) -> None:
    spec = server_spec(busybox_layers, wire, client_key, vcpus=2)
    await driver.spawn(spec)
    assert (await logged_in(wire, client_key, "grep -c ^processor /proc/cpuinfo")).strip() == "2"
    host_key = driver.instance_dir(spec.server_id) / "upper/etc/dropbear/dropbear_ed25519_host_key"
    first_key = host_key.read_bytes()

    kill = ["runc", "--root", str(driver.runc_root), "exec", driver.container_id(spec.server_id)]
    subprocess.run([*kill, "sh", "-c", "kill $(cat /run/dropbear.pid)"], check=True, timeout=20)
    assert (await logged_in(wire, client_key, "hostname")).strip() == spec.hostname

    await driver.reboot(spec.server_id, hard=False)
    assert (await logged_in(wire, client_key, "hostname")).strip() == spec.hostname
    assert host_key.read_bytes() == first_key  # the same host key after a reboot
