"""The `unistack/controlplane` image: unistack's source on the Python image, and simulated
versions of it for upgrade tests."""

from __future__ import annotations

import gzip
import importlib.util
import io
import marshal
import tarfile
from pathlib import Path

import orjson
import pytest

import unistack
from unistack.images import build, controlplane, oci, python
from unistack.images import store as storage

SOURCE = f"{python.SITE_PACKAGES}/unistack"


def small_spec() -> build.ImageSpec:
    """The control-plane image's declaration on busybox instead of the Python image: the
    same source layer and config, built in a fraction of the time."""
    return build.ImageSpec(
        repository="unistack/controlplane",
        tag=unistack.__version__,
        config=build.CONTROLPLANE_IMAGE.config,
        layers=build.CONTROLPLANE_IMAGE.layers,
        inputs=controlplane.source_files,
        base=build.BUSYBOX_IMAGE,
    )


def members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_the_declaration_is_the_python_image_plus_the_source() -> None:
    spec = build.CONTROLPLANE_IMAGE
    assert spec.name == f"unistack/controlplane:{unistack.__version__}"
    assert spec.base is build.PYTHON_IMAGE
    assert spec in build.BUILTIN_IMAGES
    assert spec.config.cmd == ("python3", "-m", "unistack.cli.main")
    assert f"UNISTACK_VERSION={unistack.__version__}" in spec.config.env
    assert set(build.PYTHON_IMAGE.config.env) <= set(spec.config.env)


def test_the_source_layer_holds_the_package_and_its_hash_checked_bytecode() -> None:
    entries = {entry.path: entry for entry in controlplane.source_layer()}
    init = entries[f"{SOURCE}/__init__.py"]
    assert init.source == Path(unistack.__file__)
    assert f"{SOURCE}/openstack/gateway.py" in entries
    assert not any(entry.source and entry.source.suffix == ".pyc" for entry in entries.values())
    assert entries[SOURCE].kind == "dir"
    assert all(entry.mtime == 0 for entry in entries.values())
    sources = [path for path in entries if path.endswith(".py")]
    caches = {path for path in entries if path.endswith(".pyc")}
    assert {importlib.util.cache_from_source(path) for path in sources} == caches
    gateway = entries[importlib.util.cache_from_source(f"{SOURCE}/openstack/gateway.py")].data
    assert gateway[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(gateway[4:8], "little") == 0b11  # hash-based, checked (PEP 552)
    source = Path(unistack.__file__).parent / "openstack" / "gateway.py"
    assert gateway[8:16] == importlib.util.source_hash(source.read_bytes())
    code = marshal.loads(gateway[16:])
    assert code.co_filename == f"/{SOURCE}/openstack/gateway.py"  # as tracebacks show it


@pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")
def test_an_image_on_a_base_holds_its_layers_and_then_its_own() -> None:
    base, image = build.build_image(build.BUSYBOX_IMAGE), build.build_image(small_spec())
    base_manifest, manifest = orjson.loads(base.manifest), orjson.loads(image.manifest)
    assert manifest["layers"][:-2] == base_manifest["layers"]  # then the tools, the source
    config = oci.parse_image_config(image.blobs[manifest["config"]["digest"]])
    assert len(config.diff_ids) == 3
    assert f"UNISTACK_VERSION={unistack.__version__}" in config.env
    source = members(image.blobs[manifest["layers"][-1]["digest"]])
    init = source[f"{SOURCE}/__init__.py"]
    assert init.isreg() and init.mtime == 0


@pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")
def test_a_simulated_version_differs_only_in_its_config(tmp_path: Path) -> None:
    store = storage.ImageStore(tmp_path)
    spec = small_spec()
    digest = controlplane.ensure_version(store, "9.9.9", spec=spec)
    assert controlplane.ensure_version(store, "9.9.9", spec=spec) == digest  # idempotent
    assert store.list_tags("unistack/controlplane") == sorted([spec.tag, "9.9.9"])
    current = orjson.loads(store.get_manifest("unistack/controlplane", spec.tag).data)
    simulated = orjson.loads(store.get_manifest("unistack/controlplane", "9.9.9").data)
    assert simulated["layers"] == current["layers"]
    assert simulated["config"]["digest"] != current["config"]["digest"]
    with store.open_blob(current["config"]["digest"]) as f:
        old = orjson.loads(f.read())
    with store.open_blob(simulated["config"]["digest"]) as f:
        new = orjson.loads(f.read())
    version = f"UNISTACK_VERSION={unistack.__version__}"
    assert new["config"]["Env"] == [e for e in old["config"]["Env"] if e != version] + [
        "UNISTACK_VERSION=9.9.9"
    ]
    new["config"]["Env"] = old["config"]["Env"]
    assert new == old


@pytest.mark.skipif(not build.BUSYBOX.exists(), reason="no static /bin/busybox")
def test_a_source_change_rebuilds_only_the_source_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = storage.ImageStore(tmp_path / "store")
    package = tmp_path / "unistack"
    package.mkdir()
    (package / "__init__.py").write_text("__version__ = '1'\n")
    spec = small_spec()
    monkeypatch.setattr(controlplane, "package_root", lambda: package)
    first = build.ensure_builtin_images(store, [spec])[spec.name]
    (package / "service.py").write_text("print('new')\n")
    built: list[str] = []
    real_build = build.build_image

    def recording(image: build.ImageSpec, base: build.BuiltImage | None = None) -> build.BuiltImage:
        built.append(image.name)
        return real_build(image, base)

    monkeypatch.setattr(build, "build_image", recording)
    second = build.ensure_builtin_images(store, [spec])[spec.name]
    assert second != first
    assert built == [spec.name]  # the base was found in the store, not built again
    layers = orjson.loads(store.get_manifest(spec.repository, second).data)["layers"]
    with store.open_blob(layers[-1]["digest"]) as f:
        assert f"{SOURCE}/service.py" in members(f.read())


@pytest.mark.skipif(not controlplane.tools(), reason="haproxy is not installed (make install)")
def test_the_tools_layer_holds_haproxy_and_what_it_loads() -> None:
    entries = {entry.path: entry for entry in controlplane.tools_layer()}
    assert entries["usr/sbin/haproxy"].source == Path("/usr/sbin/haproxy")
    assert entries["usr/sbin/haproxy"].mode & 0o111
    needed = python.shared_libraries([Path("/usr/sbin/haproxy")])
    assert any(lib.name.startswith("libssl") for lib in needed)
    for lib in needed:
        assert entries[str(lib).lstrip("/")].source == lib
    loader = next(lib for lib in needed if lib.name.startswith("ld-linux"))
    assert f"lib64/{loader.name}" in entries or str(loader).startswith("/lib64/")
