"""The registry over real sockets: skopeo pushes and pulls through it, the node's ImageCache
pulls and unpacks from it, and failures come back as the right ImagePullError."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
import uvicorn

from unistack.images import build, digests, pull, registry
from unistack.images import store as storage

pytestmark = pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")

Serve = Callable[[storage.ImageStore], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start registries on free loopback ports in this event loop; stop them afterwards."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(store: storage.ImageStore) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            registry.Registry(store), http="httptools", log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]))
        servers.append((server, task))
        while not server.started:
            await asyncio.sleep(0.01)
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


@pytest.fixture
def seeded(tmp_path: Path) -> storage.ImageStore:
    store = storage.ImageStore(tmp_path / "seeded")
    build.ensure_builtin_images(store, [build.BUSYBOX_IMAGE])
    return store


async def run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
async def test_skopeo_pulls_from_and_pushes_to_the_registry(
    serve: Serve, seeded: storage.ImageStore, tmp_path: Path
) -> None:
    source = await serve(seeded)
    target_store = storage.ImageStore(tmp_path / "empty")
    target = await serve(target_store)
    layout = tmp_path / "layout"
    skopeo = ("skopeo", "--insecure-policy", "copy", "--quiet")
    await run(
        *skopeo, "--src-tls-verify=false", f"docker://{source}/library/busybox", f"oci:{layout}:bb"
    )
    started = time.perf_counter()
    await run(
        *skopeo, "--dest-tls-verify=false", f"oci:{layout}:bb", f"docker://{target}/copied/bb:v1"
    )
    print(f"skopeo push took {time.perf_counter() - started:.3f}s")
    expected = seeded.resolve("library/busybox", "latest")
    assert target_store.resolve("copied/bb", "v1") == expected
    assert target_store.list_repositories() == ["copied/bb"]
    assert list((target_store.root / "uploads").iterdir()) == []
    for blob in seeded.root.joinpath("blobs", "sha256").iterdir():
        assert target_store.blob_size(digests.from_hex(blob.name)) == blob.stat().st_size


async def test_image_cache_pulls_and_unpacks_busybox(
    serve: Serve, seeded: storage.ImageStore, tmp_path: Path
) -> None:
    address = await serve(seeded)
    cache = pull.ImageCache(tmp_path / "node")
    started = time.perf_counter()
    images = await asyncio.gather(
        *(cache.pull("busybox", default_registry=address) for _ in range(3))
    )
    print(f"pull and unpack took {time.perf_counter() - started:.3f}s")
    image = images[0]
    assert all(other == image for other in images)
    assert image.digest == seeded.resolve("library/busybox", "latest")
    assert image.config.cmd == ("sh",)
    assert image.config.env == (build.DEFAULT_PATH,)
    [layer] = image.layers
    assert layer.parent == cache.layers_dir
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    assert (layer / "bin/busybox").stat().st_size == build.BUSYBOX.stat().st_size
    assert oct((layer / "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert list((cache.root / "tmp").iterdir()) == []


async def test_present_images_are_not_pulled_again_unless_always(
    serve: Serve, seeded: storage.ImageStore, tmp_path: Path
) -> None:
    address = await serve(seeded)
    cache = pull.ImageCache(tmp_path / "node")
    first = await cache.pull("library/busybox:latest", default_registry=address)
    assert cache.lookup("busybox", default_registry=address) == first
    seeded.delete_manifest("library/busybox", "latest")
    assert await cache.pull("busybox", default_registry=address) == first
    with pytest.raises(pull.ImagePullError) as caught:
        await cache.pull("busybox", default_registry=address, always=True)
    assert caught.value.reason is pull.PullFailure.NOT_FOUND


async def test_missing_image_is_manifest_unknown(
    serve: Serve, seeded: storage.ImageStore, tmp_path: Path
) -> None:
    address = await serve(seeded)
    cache = pull.ImageCache(tmp_path / "node")
    with pytest.raises(pull.ImagePullError) as caught:
        await cache.pull("nosuch:v9", default_registry=address)
    assert caught.value.reason is pull.PullFailure.NOT_FOUND
    assert caught.value.kubelet_reason == "ErrImagePull"
    assert caught.value.message.startswith('failed to pull image "nosuch:v9": manifest unknown: ')


async def test_unreachable_registry_fails_fast(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    cache = pull.ImageCache(tmp_path / "node")
    with pytest.raises(pull.ImagePullError) as caught:
        await asyncio.wait_for(cache.pull("busybox", default_registry=f"127.0.0.1:{port}"), 10)
    assert caught.value.reason is pull.PullFailure.UNREACHABLE


async def test_invalid_reference_is_invalid_image_name(tmp_path: Path) -> None:
    with pytest.raises(pull.ImagePullError) as caught:
        await pull.ImageCache(tmp_path).pull("Not/Valid")
    assert caught.value.kubelet_reason == "InvalidImageName"


async def test_corrupted_blob_is_a_digest_mismatch(
    serve: Serve, seeded: storage.ImageStore, tmp_path: Path
) -> None:
    address = await serve(seeded)
    manifest = orjson.loads(seeded.get_manifest("library/busybox", "latest").data)
    seeded.blob_path(manifest["layers"][0]["digest"]).write_bytes(b"tampered")
    cache = pull.ImageCache(tmp_path / "node")
    with pytest.raises(pull.ImagePullError) as caught:
        await cache.pull("busybox", default_registry=address)
    assert caught.value.reason is pull.PullFailure.DIGEST_MISMATCH
    assert list(cache.layers_dir.iterdir()) == []


async def test_errors_on_the_wire_are_in_the_spec_format(
    serve: Serve, seeded: storage.ImageStore
) -> None:
    address = await serve(seeded)
    url = f"http://{address}/v2/library/busybox/blobs/{digests.of_bytes(b'absent')}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
    assert response.status == 404
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert body["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert body["errors"][0]["message"]
