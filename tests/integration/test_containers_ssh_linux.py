"""SSH into a container server: the host's dropbear in a busybox guest, logged into over a veth.

The fixtures (the busybox image's layers, a driver per test, two namespaces joined by a
veth, the client in the host side's) are in `containerkit`. The client is OpenSSH's `ssh`
with a key made for the test. Needs root, runc, iproute2, dropbear (Debian's `dropbear-bin`),
patchelf, ssh and ssh-keygen; skipped with the reason otherwise. Everything is removed even
when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration import containerkit
from tests.integration.containerkit import Wire
from unistack.dataplane import sshd
from unistack.dataplane.containers import ContainerInstances
from unistack.dataplane.instances import InstanceSpec, Nic
from unistack.images import build

TOOLS = ("runc", "ip", "ssh", "ssh-keygen", "patchelf")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in TOOLS)
        or not build.BUSYBOX.exists()
        or sshd.locate() is None,
        reason="needs root, runc, ip, ssh, ssh-keygen, patchelf, /bin/busybox and dropbear",
    ),
]

# the shared fixtures (`containerkit`)
busybox_layers, driver, wire = containerkit.busybox_layers, containerkit.driver, containerkit.wire


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@unistack", "-f", str(key)],
        check=True,
        timeout=20,
    )
    return key


def server_spec(layers: tuple[Path, ...], wire: Wire, key: Path, vcpus: int) -> InstanceSpec:
    server_id = secrets.token_hex(8)
    nic = Nic("port-1", "fa:16:3e:00:00:05", "eth0", (f"{wire.server_ip}/24",), wire.host_ip)
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
    return _client(wire, command, "-i", str(key), "-o", "BatchMode=yes", *options)


def _client(
    wire: Wire, command: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client from the host's side of the wire, as root, known hosts ignored."""
    argv = ["ip", "netns", "exec", wire.host_netns, "ssh", "-F", "/dev/null"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", "ConnectTimeout=5", *options]
    return subprocess.run(
        [*argv, f"root@{wire.server_ip}", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def with_password(
    wire: Wire, scratch: Path, password: str, command: str
) -> subprocess.CompletedProcess[str]:
    """`command` over SSH as root with `password` only (given by an askpass program)."""
    askpass = scratch / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
    askpass.chmod(0o700)
    only = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
    environment = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    return _client(wire, command, *only, "-o", "NumberOfPasswordPrompts=1", env=environment)


def guest_file(driver: ContainerInstances, server_id: str, path: str) -> str:
    argv = ["runc", "--root", str(driver.runc_root), "exec", driver.container_id(server_id)]
    return subprocess.run([*argv, "cat", path], capture_output=True, text=True, check=True).stdout


async def logged_in(wire: Wire, key: Path, command: str) -> str:
    """`command`'s output over SSH, retried until the server answers (it is booting)."""
    async with asyncio.timeout(30):
        while True:
            done = await asyncio.to_thread(ssh, wire, key, command)
            if done.returncode == 0:
                return done.stdout
            await asyncio.sleep(0.2)


async def test_ssh_login_with_the_server_key_runs_busybox_commands(
    driver: ContainerInstances,
    busybox_layers: tuple[Path, ...],
    wire: Wire,
    client_key: Path,
    tmp_path: Path,
) -> None:
    spec = server_spec(busybox_layers, wire, client_key, vcpus=1)
    await driver.spawn(spec)

    assert (await logged_in(wire, client_key, "hostname")).strip() == spec.hostname
    assert (await logged_in(wire, client_key, "grep -c ^processor /proc/cpuinfo")).strip() == "1"
    uptime = float((await logged_in(wire, client_key, "cut -d' ' -f1 /proc/uptime")).strip())
    assert uptime < 60  # the guest's boot clock, not the host's
    assert "eth0" in await logged_in(wire, client_key, "ip -o addr")
    # The image's curl (Tempest's check for one) and its /lib64 loader, which the lent
    # dropbear must not take for its own when it re-executes itself per connection.
    assert (await logged_in(wire, client_key, "curl -V")).startswith("curl ")
    header = (await logged_in(wire, client_key, "lsblk -lb --nodeps")).splitlines()[0]
    assert header.split()[:6] == ["NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE"]

    # No password is set: a password login is refused, whatever the client offers.
    refused = ssh(wire, client_key, "true", "-o", "PubkeyAuthentication=no")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert with_password(wire, tmp_path, "", "true").returncode == 255
    # changePassword: root's password set in the guest, which its SSH server then takes
    await driver.set_password(spec.server_id, "Newpass1234")
    assert with_password(wire, tmp_path, "Newpass1234", "hostname").stdout.strip() == spec.hostname
    assert with_password(wire, tmp_path, "wrong", "true").returncode == 255
    shadow = guest_file(driver, spec.server_id, "/etc/shadow")
    assert shadow.startswith("root:$2b$") and "Newpass1234" not in shadow

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
