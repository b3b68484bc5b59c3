"""Volumes in real servers, with the real openstack CLI: a 1 GiB volume attached to a running
system container is a block device (/dev/vdb) the guest writes; detached and attached to a
second server, the data is still there; a snapshot and a clone are copies that later writes
to the volume do not reach; detaching and deleting leave no loop device behind.

The guest has no CAP_SYS_ADMIN to mount the volume, so it reads and writes the raw device
with busybox `dd`, run inside the server with `runc exec` (a network namespace would not
show its block devices). Needs root, runc, nftables and mkfs.xfs (for the reflink pool).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Cluster, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0
        or shutil.which("runc") is None
        or shutil.which("nft") is None
        or shutil.which("mkfs.xfs") is None,
        reason="real instances with volumes need root, runc, nftables and mkfs.xfs",
    ),
]
MARKS = {name: f"unistack-marker-{name}-" + uuid.uuid4().hex[:8] for name in "ABC"}


def in_guest(cluster: Cluster, server_id: str, script: str) -> str:
    """Run `script` with the guest's own sh, inside the server's container."""
    runc_root = cluster.state_dir / "agent" / "servers" / "container" / "runc"
    argv = ["runc", "--root", str(runc_root), "exec", f"unistack-server-{server_id}"]
    done = subprocess.run(
        [*argv, "sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
    return done.stdout


def write_mark(cluster: Cluster, server_id: str, device: str, mark: str) -> None:
    in_guest(cluster, server_id, f"printf %s {mark} | dd of={device} conv=fsync 2>/dev/null")


def read_mark(cluster: Cluster, server_id: str, device: str) -> str:
    size = len(MARKS["A"])
    return in_guest(cluster, server_id, f"dd if={device} bs={size} count=1 2>/dev/null")


def volume_loops(cluster: Cluster) -> list[str]:
    """The loop devices on this cluster's volumes (`losetup -a`)."""
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    pool = str(cluster.state_dir / "agent" / "volumes" / "pool" / "volumes")
    return [line for line in listed.stdout.splitlines() if pool in line]


@pytest.fixture
def made(cluster: Cluster) -> Iterator[Callable[..., None]]:
    """Record what the test makes (`made("server", name)`); all of it goes afterwards, newest
    first, in one openstack session; a volume whose snapshot was still going is deleted
    again once it has gone."""
    things: list[tuple[str, str]] = []
    try:
        yield lambda kind, name: things.append((kind, name))
    finally:
        deletes = [
            [*kind.split(), "delete", *(["--wait"] if kind == "server" else []), name]
            for kind, name in reversed(things)
        ]
        if deletes:
            cluster.openstack_cleanup(*deletes)
        storage = [(kind, name) for kind, name in reversed(things) if kind.startswith("volume")]

        def left() -> list[tuple[str, str]]:
            listed = {
                item["Name"]
                for kind in (["volume"], ["volume", "snapshot"])
                for item in cluster.openstack_json(*kind, "list")
            }
            return [(kind, name) for kind, name in storage if name in listed]

        def all_gone() -> bool:
            remaining = left()
            if remaining:  # deleting, or refused while a snapshot went: again
                again = [[*kind.split(), "delete", name] for kind, name in remaining]
                cluster.openstack_cleanup(*again)
            return not remaining

        if storage:
            wait_for(all_gone, "the volumes and snapshots deleted")


def volume_status(cluster: Cluster, name: str) -> str:
    return str(cluster.openstack_json("volume", "show", name)["status"])


def new_volume(cluster: Cluster, made: Callable[..., None], name: str, *source: str) -> None:
    cluster.openstack("volume", "create", "--size", "1", *source, name)
    made("volume", name)
    wait_for(lambda: volume_status(cluster, name) == "available", f"volume {name} available")


def attach(cluster: Cluster, server: str, volume: str, device: str) -> None:
    cluster.openstack("server", "add", "volume", "--device", device, server, volume)
    wait_for(lambda: volume_status(cluster, volume) == "in-use", f"{volume} in use")


def detach(cluster: Cluster, server: str, volume: str) -> None:
    cluster.openstack("server", "remove", "volume", server, volume)
    wait_for(lambda: volume_status(cluster, volume) == "available", f"{volume} available")


def test_a_volume_keeps_its_data_across_servers_and_snapshots_and_clones_are_copies(
    cluster: Cluster, made: Callable[..., None]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    net, vol, snap = f"vnet-{suffix}", f"vol-{suffix}", f"snap-{suffix}"
    cluster.openstack("network", "create", net)
    made("network", net)
    cluster.openstack("subnet", "create", f"{net}-sub", "--network", net,
                      "--subnet-range", "10.93.0.0/24")  # fmt: skip
    made("subnet", f"{net}-sub")
    servers = {}
    for name in (f"one-{suffix}", f"two-{suffix}"):
        made("server", name)
        booted = cluster.create_server(
            name, "--image", "busybox", "--flavor", "m1.nano", "--network", net
        )
        servers[name] = booted["id"]
    one, two = servers.values()
    new_volume(cluster, made, vol)

    # Written in the first server, read in the second.
    attach(cluster, f"one-{suffix}", vol, "/dev/vdb")
    assert len(volume_loops(cluster)) == 1
    write_mark(cluster, one, "/dev/vdb", MARKS["A"])
    assert read_mark(cluster, one, "/dev/vdb") == MARKS["A"]
    detach(cluster, f"one-{suffix}", vol)
    assert volume_loops(cluster) == []
    assert "vdb" not in in_guest(cluster, one, "ls /dev")
    attach(cluster, f"two-{suffix}", vol, "/dev/vdb")
    assert read_mark(cluster, two, "/dev/vdb") == MARKS["A"]

    # A snapshot (of the volume in use: --force) keeps A; a clone made after B keeps B.
    cluster.openstack("volume", "snapshot", "create", "--volume", vol, "--force", snap)
    made("volume snapshot", snap)
    wait_for(
        lambda: cluster.openstack_json("volume", "snapshot", "show", snap)["status"]
        == "available",
        "snapshot available",
    )  # fmt: skip
    write_mark(cluster, two, "/dev/vdb", MARKS["B"])
    new_volume(cluster, made, f"{vol}-from-snap", "--snapshot", snap)
    new_volume(cluster, made, f"{vol}-clone", "--source", vol)
    write_mark(cluster, two, "/dev/vdb", MARKS["C"])

    attach(cluster, f"one-{suffix}", f"{vol}-from-snap", "/dev/vdb")
    attach(cluster, f"one-{suffix}", f"{vol}-clone", "/dev/vdc")
    assert read_mark(cluster, one, "/dev/vdb") == MARKS["A"]
    assert read_mark(cluster, one, "/dev/vdc") == MARKS["B"]
    assert read_mark(cluster, two, "/dev/vdb") == MARKS["C"]
    assert len(volume_loops(cluster)) == 3

    for volume in (f"{vol}-from-snap", f"{vol}-clone"):
        detach(cluster, f"one-{suffix}", volume)
    detach(cluster, f"two-{suffix}", vol)
    assert volume_loops(cluster) == []


@pytest.mark.deep
def test_a_server_deleted_with_its_volume_attached_lets_go_of_it(
    cluster: Cluster, made: Callable[..., None]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    net, vol, name = f"dnet-{suffix}", f"dvol-{suffix}", f"gone-{suffix}"
    cluster.openstack("network", "create", net)
    made("network", net)
    cluster.openstack("subnet", "create", f"{net}-sub", "--network", net,
                      "--subnet-range", "10.94.0.0/24")  # fmt: skip
    made("subnet", f"{net}-sub")
    new_volume(cluster, made, vol)
    cluster.openstack("server", "create", name, "--image", "busybox", "--flavor", "m1.nano",
                      "--network", net, "--wait", timeout=180)  # fmt: skip
    made("server", name)
    attach(cluster, name, vol, "/dev/vdb")
    assert len(volume_loops(cluster)) == 1
    cluster.openstack("server", "delete", "--wait", name, timeout=120)
    wait_for(lambda: volume_status(cluster, vol) == "available", "volume available again")
    assert volume_loops(cluster) == []
