"""Built-in images are reproducible, complete, and cheap to ensure a second time."""

from __future__ import annotations

import dataclasses
import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import orjson
import pytest

from unistack.images import build, digests, oci
from unistack.images import store as storage

pytestmark = pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")
BUSYBOX = build.BUSYBOX_IMAGE


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


@pytest.mark.skipif(not build.GUEST_PROGRAMS[0].is_file(), reason="no /usr/bin/curl on the host")
def test_busybox_layer_carries_curl_and_what_it_loads() -> None:
    """The guest image's curl runs without a libc of the image's own: every library `ldd`
    names is in the same layer, at its path, and the loader at its canonical path."""
    members = layer_members(build.build_image(BUSYBOX))
    assert members["usr/bin/curl"].isreg() and members["usr/bin/curl"].mode & 0o111
    listing = subprocess.run(["ldd", "/usr/bin/curl"], capture_output=True, text=True).stdout
    needed = [w for line in listing.splitlines() for w in line.split() if w.startswith("/")]
    assert needed and all(path.lstrip("/") in members for path in needed)


def sudo(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "sudo"
    script.write_bytes(build.GUEST_SUDO)
    shell = [str(build.BUSYBOX), "sh", str(script)]
    return subprocess.run([*shell, *argv], capture_output=True, text=True, timeout=10)


@pytest.mark.skipif(not build.BUSYBOX.exists(), reason="needs /bin/busybox")
def test_the_guests_sudo_runs_as_root_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    """The image's only user is root: sudo runs the command (with sudo's usual flags), and
    refuses another user or an unknown option instead of running anyway."""
    members = layer_members(build.build_image(BUSYBOX))
    assert members["usr/bin/sudo"].isreg() and members["usr/bin/sudo"].mode == 0o755
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("running as root is what the guest's sudo is for")
    assert sudo(tmp_path, "-n", "-u", "root", "sh", "-c", "echo $0 ran", "it").stdout == "it ran\n"
    refused = sudo(tmp_path, "-u", "nobody", "id")
    assert refused.returncode == 1 and "unknown user: nobody" in refused.stderr
    unknown = sudo(tmp_path, "-l")
    assert unknown.returncode == 1 and "not supported" in unknown.stderr
    assert sudo(tmp_path).returncode == 1


def test_the_guest_images_own_contents_are_in_its_fingerprint() -> None:
    """Changing what the layers carry from this code (the sudo script) rebuilds the image."""
    changed = dataclasses.replace(BUSYBOX, contents=b"#!/bin/sh\nexit 0\n")
    assert build._fingerprint(changed) != build._fingerprint(BUSYBOX)


def test_ensure_is_idempotent_and_builds_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = storage.ImageStore(tmp_path)
    expected = build.build_image(BUSYBOX).digest
    first = build.ensure_builtin_images(store, [BUSYBOX])

    def no_second_build(spec: build.ImageSpec) -> build.BuiltImage:
        raise AssertionError(f"{spec.name} built again")

    monkeypatch.setattr(build, "build_image", no_second_build)
    second = build.ensure_builtin_images(store, [BUSYBOX])
    assert first == second == {"library/busybox:latest": expected}
    assert store.get_manifest("library/busybox", "latest").media_type == oci.OCI_MANIFEST


def test_a_machine_cache_builds_once_for_every_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = storage.ImageStore(tmp_path / "cache")
    one, two = storage.ImageStore(tmp_path / "one"), storage.ImageStore(tmp_path / "two")
    digest = build.ensure_builtin_images(one, [BUSYBOX], cache=cache)[BUSYBOX.name]
    monkeypatch.setattr(build, "build_image", lambda spec: pytest.fail("built twice"))
    assert build.ensure_builtin_images(two, [BUSYBOX], cache=cache)[BUSYBOX.name] == digest
    manifest = orjson.loads(two.get_manifest("library/busybox", "latest").data)
    layer = manifest["layers"][0]["digest"]
    assert two.blob_path(layer).stat().st_ino == cache.blob_path(layer).stat().st_ino  # linked
    assert build.ensure_builtin_images(two, [BUSYBOX], cache=cache)[BUSYBOX.name] == digest
    # the store alone knows its copy is current: no build that would retag it anew
    assert build.ensure_builtin_images(two, [BUSYBOX])[BUSYBOX.name] == digest


def test_ensure_rebuilds_when_the_tag_was_removed(tmp_path: Path) -> None:
    store = storage.ImageStore(tmp_path)
    digest = build.ensure_builtin_images(store, [BUSYBOX])["library/busybox:latest"]
    store.delete_manifest("library/busybox", "latest")
    assert build.ensure_builtin_images(store, [BUSYBOX])["library/busybox:latest"] == digest
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


def test_the_python_image_holds_the_interpreter_stdlib_libraries_and_dependencies() -> None:
    from unistack.images import python

    runtime = {entry.path: entry for entry in python.runtime_layer()}
    version = python.VERSION
    assert runtime[f"usr/local/bin/python{version}"].source == python.interpreter()
    assert runtime["usr/local/bin/python3"].target == f"python{version}"
    assert f"usr/local/lib/python{version}/os.py" in runtime
    assert not any(path.startswith(f"usr/local/lib/python{version}/test/") for path in runtime)
    libc = [path for path in runtime if path.endswith("/libc.so.6")]
    assert libc and runtime[libc[0]].kind == "file"
    assert any("ld-linux" in path for path in runtime)  # the loader the interpreter names
    os_py = runtime[f"usr/local/lib/python{version}/os.py"]
    assert os_py.source is not None and os_py.mtime == int(os_py.source.stat().st_mtime)
    packages = {entry.path for entry in python.packages_layer()}
    site = f"usr/local/lib/python{version}/site-packages"
    for module in ("orjson/__init__.py", "uvicorn/__init__.py", "aiohttp/__init__.py"):
        assert f"{site}/{module}" in packages
    names = {dist.metadata["Name"].lower() for dist in python.required_distributions()}
    assert {"uvloop", "httptools", "cryptography", "pyroute2"} <= names  # extras followed
    assert not {"pytest", "mypy", "unistack"} & names  # dev tools and unistack itself: no
