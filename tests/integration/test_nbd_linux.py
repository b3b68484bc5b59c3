"""Volumes across hosts (`unistack.dataplane.nbd`) with the real qemu-storage-daemon on both
ends: what a server's host writes through its connection (a loop device on the FUSE file,
as a system container gets it) lands in the volume's file on the other host; the connection
survives the exporting daemon's restart; a host without the cloud's key is refused; ending
the connection, or cleaning up after a crashed one, leaves no process, mount or file.

Needs root, /dev/fuse, loop devices and qemu-storage-daemon; skipped with the reason
otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from unistack.dataplane import daemons, loopdev, nbd

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="FUSE mounts and loop devices need root"),
    pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse"),
    pytest.mark.skipif(shutil.which(nbd.DAEMON) is None, reason=f"no {nbd.DAEMON}"),
]
VOLUME = "7010e000-0000-4000-8000-00000000abcd"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[nbd.NbdExports, nbd.NbdConnections, Path]]:
    """The volume's host (an ext4 volume file, its exports) and the server's host."""
    volume = tmp_path / "pool" / VOLUME
    volume.parent.mkdir()
    subprocess.run(["truncate", "-s", f"{64 * MIB}", str(volume)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(volume)], check=True)
    exports = nbd.NbdExports(tmp_path / "exports", "127.0.0.1", free_port(), "cloud token")
    connections = nbd.NbdConnections(tmp_path / "connections", "cloud token")
    yield exports, connections, volume
    connections.cleanup()
    exports.stop()


def read_through(device: str, mountpoint: Path, name: str) -> str:
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    try:
        return (mountpoint / name).read_text()
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_connected_volume_is_written_on_its_own_host_and_survives_a_restart(
    hosts: tuple[nbd.NbdExports, nbd.NbdConnections, Path], tmp_path: Path
) -> None:
    exports, connections, volume = hosts
    target = asyncio.run(exports.export(VOLUME, volume, "host-b"))
    assert target == nbd.NbdTarget("127.0.0.1", exports.port, VOLUME)
    path = connections.connect(VOLUME, target)
    assert path.stat().st_size == 64 * MIB and connections.connected() == [VOLUME]
    assert connections.connect(VOLUME, target) == path  # again: the same connection
    device = loopdev.attach_loop(path)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    (mountpoint / "written-on-b").write_text("kept on a\n")
    subprocess.run(["umount", str(mountpoint)], check=True)
    seen = subprocess.run(
        ["debugfs", "-R", "cat /written-on-b", str(volume)], capture_output=True, text=True
    )
    assert seen.stdout == "kept on a\n"  # in the volume's file itself

    exports.stop()  # the volume's host restarts its daemon: the client reconnects
    asyncio.run(exports.reconcile())
    assert read_through(device, mountpoint, "written-on-b") == "kept on a\n"

    connections.disconnect(VOLUME)
    assert connections.connected() == [] and not path.exists()
    assert loopdev.loops_backed_by(path) == []
    assert not any(m.target == path for m in loopdev.mounts())
    asyncio.run(exports.export(VOLUME, volume, "host-c"))
    asyncio.run(exports.unexport(VOLUME, "host-b"))
    assert exports.recorded() == {VOLUME: {"path": str(volume), "hosts": ["host-c"]}}
    asyncio.run(exports.unexport(VOLUME, "host-c"))  # the last: the daemon ends
    assert exports.recorded() == {} and daemons.running_pid(exports.pidfile, "exports") is None


def test_a_host_without_the_clouds_key_is_refused(
    hosts: tuple[nbd.NbdExports, nbd.NbdConnections, Path], tmp_path: Path
) -> None:
    exports, _, volume = hosts
    target = asyncio.run(exports.export(VOLUME, volume, "host-b"))
    stranger = nbd.NbdConnections(tmp_path / "stranger", "another cloud's token")
    with pytest.raises(nbd.NbdError, match=r"127\.0\.0\.1"):
        stranger.connect(VOLUME, target, patience=0)
    assert stranger.connected() == [] and not stranger.path(VOLUME).exists()
    plain = subprocess.run(
        ["qemu-img", "info", f"nbd://127.0.0.1:{exports.port}/{VOLUME}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert plain.returncode != 0 and "TLS" in plain.stderr  # no reading without TLS


def test_cleanup_ends_a_connection_whose_daemon_was_killed(
    hosts: tuple[nbd.NbdExports, nbd.NbdConnections, Path],
) -> None:
    exports, connections, volume = hosts
    path = connections.connect(VOLUME, asyncio.run(exports.export(VOLUME, volume, "host-b")))
    loopdev.attach_loop(path)
    pid = daemons.running_pid(connections.state / f"{VOLUME}.pid", str(path))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash: the FUSE mount stays, dead
    assert connections.cleanup() == [VOLUME]
    assert not any(m.target == path for m in loopdev.mounts()) and not path.exists()
    assert loopdev.loops_backed_by(path) == []
