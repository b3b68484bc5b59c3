"""A cold migration's disk transfer (`unistack.agent.diskmove`) between two real HTTP ends:
what an overlayfs upper directory is made of arrives intact — whiteouts, the opaque-directory
attribute, owners, modes — sparse disk files stay sparse, and a transfer that breaks or finds
the instance already there leaves the destination as it was.

Needs root (whiteouts are device nodes, opaque directories `trusted.*` attributes); skipped
with the reason otherwise.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from unistack.agent import diskmove
from unistack.dataplane.instances import DiskFiles

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* attributes need root"),
]
MIB = 1 << 20


async def receiving(root: Path) -> TestServer:
    """An agent's receiving half: `PUT /instances/{id}/disk` unpacked under `root`."""

    async def put(request: web.Request) -> web.Response:
        try:
            chunks = request.content.iter_chunked(diskmove.CHUNK)
            await diskmove.receive_disk(root / request.match_info["id"], chunks)
        except FileExistsError as error:
            return web.json_response({"message": str(error), "code": 409}, status=409)
        except diskmove.TransferError as error:
            return web.json_response({"message": str(error), "code": 500}, status=500)
        return web.json_response({})

    app = web.Application()
    app.router.add_put("/instances/{id}/disk", put)
    server = TestServer(app)
    await server.start_server()
    return server


def guest_disk(directory: Path) -> DiskFiles:
    upper = directory / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hostname").write_text("moved\n")
    secret = upper / "etc" / "shadow"
    secret.write_text("root:x:1::::::\n")
    os.chown(secret, 1234, 5678)
    secret.chmod(0o640)
    os.mknod(upper / "deleted", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # a whiteout
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    with (directory / "disk.eph0").open("wb") as disk:
        disk.truncate(64 * MIB)
        disk.seek(32 * MIB)
        disk.write(b"data")
    return DiskFiles(directory, ("upper", "disk.eph0"))


async def test_an_upper_layer_and_a_sparse_disk_arrive_as_they_were(tmp_path: Path) -> None:
    disk = guest_disk(tmp_path / "source")
    server = await receiving(tmp_path / "dest")
    try:
        url = str(server.make_url("/instances/abc/disk"))
        sent = await diskmove.send_disk(disk, url, "token")
    finally:
        await server.close()
    arrived = tmp_path / "dest" / "abc"
    assert sent > 0
    assert (arrived / "upper" / "etc" / "hostname").read_text() == "moved\n"
    secret = (arrived / "upper" / "etc" / "shadow").stat()
    assert (secret.st_uid, secret.st_gid, stat.S_IMODE(secret.st_mode)) == (1234, 5678, 0o640)
    whiteout = (arrived / "upper" / "deleted").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(arrived / "upper" / "opaque", "trusted.overlay.opaque") == b"y"
    eph = arrived / "disk.eph0"
    assert eph.stat().st_size == 64 * MIB
    assert eph.stat().st_blocks * 512 < 4 * MIB  # its holes stayed holes
    with eph.open("rb") as read:
        read.seek(32 * MIB)
        assert read.read(4) == b"data"
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["abc"]


async def test_an_instance_already_there_is_refused_and_kept(tmp_path: Path) -> None:
    disk = guest_disk(tmp_path / "source")
    there = tmp_path / "dest" / "abc"
    there.mkdir(parents=True)
    (there / "spec.json").write_text("{}")
    server = await receiving(tmp_path / "dest")
    try:
        with pytest.raises(diskmove.TransferError, match=r"409.*not empty"):
            await diskmove.send_disk(disk, str(server.make_url("/instances/abc/disk")), "t")
    finally:
        await server.close()
    assert [p.name for p in there.iterdir()] == ["spec.json"]


async def test_a_broken_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "console.log").write_bytes(os.urandom(64 * 1024))
    archive = subprocess.run(
        ["tar", "--create", "--file=-", f"--directory={source}", "console.log"],
        capture_output=True,
        check=True,
    ).stdout

    async def cut_short() -> AsyncIterator[bytes]:
        yield archive[:5000]  # a header and part of the file: the sender went away

    with pytest.raises(diskmove.TransferError, match="tar exited"):
        await diskmove.receive_disk(tmp_path / "dest" / "abc", cut_short())
    assert list((tmp_path / "dest").iterdir()) == []
