"""Built-in images are reproducible, complete, and cheap to ensure a second time."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path

import orjson
import pytest

from unistack.images import build, digests, oci
from unistack.images import store as storage

pytestmark = pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")
BUSYBOX = build.BUILTIN_IMAGES[0]


def layer_members(image: build.BuiltImage) -> dict[str, tarfile.TarInfo]:
    manifest = orjson.loads(image.manifest)
    blob = image.blobs[manifest["layers"][0]["digest"]]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_two_builds_give_the_same_bytes() -> None:
    first, second = build.build_image(BUSYBOX), build.build_image(BUSYBOX)
    assert first.digest == second.digest
    assert first.blobs == second.blobs


def test_busybox_manifest_and_config() -> None:
    image = build.build_image(BUSYBOX)
    manifest = oci.parse_manifest(image.manifest)
    assert manifest.media_type == oci.OCI_MANIFEST
    assert [layer.media_type for layer in manifest.layers] == [oci.OCI_LAYER_GZIP]
    assert manifest.config is not None
    config_blob = image.blobs[manifest.config.digest]
    config = oci.parse_image_config(config_blob)
    assert config.cmd == ("sh",)
    assert config.env == (build.DEFAULT_PATH,)
    layer = gzip.decompress(image.blobs[manifest.layers[0].digest])
    assert config.diff_ids == (digests.of_bytes(layer),)
    assert orjson.loads(config_blob)["architecture"] == oci.host_platform()[1]


def test_busybox_layer_has_applets_and_a_base_filesystem() -> None:
    members = layer_members(build.build_image(BUSYBOX))
    assert members["bin/busybox"].isreg()
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    assert {"proc", "sys", "dev", "etc", "var", "etc/passwd", "etc/group"} <= set(members)
    assert "etc/hosts" not in members
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert list(members) == sorted(members)


def test_ensure_is_idempotent_and_fast_the_second_time(tmp_path: Path) -> None:
    store = storage.ImageStore(tmp_path)
    first = build.ensure_builtin_images(store)
    started = time.perf_counter()
    second = build.ensure_builtin_images(store)
    elapsed = time.perf_counter() - started
    assert first == second == {"library/busybox:latest": build.build_image(BUSYBOX).digest}
    assert elapsed < 0.05
    assert store.get_manifest("library/busybox", "latest").media_type == oci.OCI_MANIFEST


def test_ensure_rebuilds_when_the_tag_was_removed(tmp_path: Path) -> None:
    store = storage.ImageStore(tmp_path)
    digest = build.ensure_builtin_images(store)["library/busybox:latest"]
    store.delete_manifest("library/busybox", "latest")
    assert build.ensure_builtin_images(store)["library/busybox:latest"] == digest
    assert store.resolve("library/busybox", "latest") == digest


def test_another_image_is_one_more_declaration(tmp_path: Path) -> None:
    hello = build.ImageSpec(
        repository="library/hello",
        tag="v1",
        config=oci.ImageConfig(cmd=("/hello",)),
        layers=(lambda: [build.Entry("hello", "file", 0o755, b"#!/bin/sh\necho hi\n")],),
    )
    digests_by_name = build.ensure_builtin_images(storage.ImageStore(tmp_path), [hello])
    assert list(digests_by_name) == ["library/hello:v1"]
