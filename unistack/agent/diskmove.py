"""A cold migration's data: a stopped instance's disk carried from its host's agent straight to
another host's agent, as nova-compute copies an instance's directory to the destination host
(the libvirt driver's `migrate_disk_and_power_off`) before the destination boots it.

The source streams GNU `tar` of the driver's `DiskFiles` in the body of
`PUT {destination agent}/instances/{id}/disk?driver=<name>`, with the node-proxy bearer token
every agent of the cloud shares, over the hosts' own network (the underlay between hosts): the
compute controller only says where to, it never carries the data. tar is the tool made for
this: it keeps what an overlayfs upper directory is made of — whiteouts (character devices
0/0), the `trusted.overlay.*` attributes of opaque directories — owners by number, modes, and
the holes of sparse disk files. The destination unpacks into a directory beside the
instance's and renames it into place only when tar succeeded, so a broken transfer leaves
nothing half-written; an instance already there is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson

from unistack.dataplane.instances import DiskFiles

TAR = "tar"
XATTRS = (
    "--xattrs",
    "--xattrs-include=trusted.*",
    "--xattrs-include=security.*",
    "--xattrs-include=user.*",
)
CHUNK = 1 << 20
TRANSFER_TIMEOUT = 1800.0  # a disk of a few GiB over a slow link


class TransferError(Exception):
    """The disk did not arrive; the message says why."""


async def send_disk(disk: DiskFiles, url: str, token: str) -> int:
    """Stream `disk` to the agent at `url`; the bytes sent. TransferError when tar failed or
    the destination did not answer 200 (its error message is kept)."""
    if not disk.names:
        raise TransferError(f"nothing of the instance is in {disk.directory}")
    tar = await asyncio.create_subprocess_exec(
        TAR, "--create", "--file=-", f"--directory={disk.directory}", "--sparse",
        "--numeric-owner", *XATTRS, "--", *disk.names,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tar.stdout is not None and tar.stderr is not None
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        assert tar.stdout is not None
        while chunk := await tar.stdout.read(CHUNK):
            sent += len(chunk)
            yield chunk

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"}
    timeout = aiohttp.ClientTimeout(total=TRANSFER_TIMEOUT, connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.put(url, data=body(), headers=headers) as response,
        ):
            answer = await response.text()
            if response.status != 200:
                raise TransferError(f"{url} answered {response.status}: {_message(answer)}")
    except (aiohttp.ClientError, TimeoutError, TransferError) as error:
        with contextlib.suppress(ProcessLookupError):  # tar may still be writing: no more
            tar.kill()
        await tar.wait()
        if isinstance(error, TransferError):
            raise
        raise TransferError(f"{url}: {error or type(error).__name__}") from None
    # the whole stream was read: tar is ending by itself, and its status says if all went in
    errors = await tar.stderr.read()
    code = await tar.wait()
    if code != 0:
        raise TransferError(f"tar exited {code}: {errors.decode(errors='replace').strip()}")
    return sent


async def receive_disk(directory: Path, chunks: AsyncIterator[bytes]) -> None:
    """Unpack the stream into `directory`, which must be empty or absent; all or nothing."""
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    incoming = directory.with_name(f".{directory.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    tar = await asyncio.create_subprocess_exec(
        TAR, "--extract", "--file=-", f"--directory={incoming}", "--numeric-owner",
        "--same-permissions", *XATTRS,
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tar.stdin is not None and tar.stderr is not None
    broken = None
    try:
        async for chunk in chunks:
            tar.stdin.write(chunk)
            await tar.stdin.drain()
        tar.stdin.close()
    except (BrokenPipeError, ConnectionResetError) as error:
        broken = f"tar stopped reading: {error}"
    except aiohttp.ClientPayloadError as error:
        broken = f"the transfer broke off: {error}"
    finally:
        if broken is not None and tar.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                tar.kill()
        errors = await tar.stderr.read()
        code = await tar.wait()
    if broken is not None or code != 0:
        shutil.rmtree(incoming, ignore_errors=True)
        raise TransferError(broken or f"tar exited {code}: {errors.decode(errors='replace')}")
    with contextlib.suppress(FileNotFoundError):
        directory.rmdir()
    os.replace(incoming, directory)


def _message(answer: str) -> str:
    """An agent's error body (`{"message", "code"}`) reduced to its message."""
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return answer.strip()[:300]
    if isinstance(document, dict) and document.get("message"):
        return str(document["message"])
    return answer.strip()[:300]
