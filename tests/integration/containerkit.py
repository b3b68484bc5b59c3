"""Fixtures shared by the tests of the `container` compute driver on a real kernel.

`busybox_layers` builds the built-in busybox image and unpacks it once per module, as the
agent's image cache would; `driver` is a driver on the test's own state dir and cgroup
parent (`/unistack/test-<hex>`), whose servers, mounts and cgroups go even when the test
fails; `wire` makes two namespaces, `unistack-t<hex>` for the server (its `eth0` one end of
a veth) and `unistack-t<hex>h` for the host side (the other end), so nothing is configured
in the host's own namespace. Test modules import the fixtures they use.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from unistack.dataplane import mounts
from unistack.dataplane.containers import ContainerInstances, remove_cgroup
from unistack.images import build, unpack


@pytest.fixture(scope="module")
def busybox_layers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    """The built-in busybox image's layers, unpacked as the agent's image cache does."""
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
    """The server's namespace and the host side's, joined by a veth."""

    netns: str
    host_netns: str
    host_if: str
    host_ip: str
    server_ip: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def wire() -> Iterator[Wire]:
    suffix = secrets.token_hex(3)
    subnet = f"10.251.{int(suffix[:2], 16)}"
    host_if = f"unistack{suffix}h"
    found = Wire(
        f"unistack-t{suffix}", f"unistack-t{suffix}h", host_if, f"{subnet}.1", f"{subnet}.2"
    )
    try:
        ip("netns", "add", found.netns)
        ip("netns", "add", found.host_netns)
        ip(*f"link add {host_if} netns {found.host_netns} type veth peer name eth0".split(),
           "netns", found.netns)  # fmt: skip
        ip("-n", found.host_netns, "addr", "add", f"{found.host_ip}/24", "dev", host_if)
        ip("-n", found.host_netns, "link", "set", host_if, "up")
        yield found
    finally:
        for name in (found.netns, found.host_netns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
