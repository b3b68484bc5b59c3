"""The built-in images, built offline from host files, byte-for-byte reproducibly.

An image is a declaration (`ImageSpec`): its name, run-time config, and functions that list
the entries of each layer. `build_image` turns a declaration into blobs (gzip layers, config,
OCI manifest) with every source of nondeterminism pinned: entries sorted, mtime 0, owner
0:0, gzip header mtime 0. `ensure_builtin_images` writes them into an `ImageStore` and keeps
a stamp (a fingerprint of the declaration and of the host files it reads), so a second call
costs a few stats. Adding an image means adding one `ImageSpec` to `BUILTIN_IMAGES`. An
image with a `base` is that image's layers plus its own: only its own are built (the
`unistack/controlplane` image is `unistack/python` plus unistack's source, so a change of the
source costs a fraction of a second, not the Python image again).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import orjson

import unistack
from unistack.images import digests, oci
from unistack.images import store as storage

log = logging.getLogger(__name__)

BUILD_FORMAT = 1
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")
GUEST_PROGRAMS = (Path("/usr/bin/curl"),)
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
# A static glibc busybox resolves names through NSS: without this file getaddrinfo crashes.
NSSWITCH = b"passwd: files\ngroup: files\nhosts: files dns\n"
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """One member of a layer: a directory, a regular file (bytes or a host file), a symlink."""

    path: str
    kind: Literal["dir", "file", "symlink"]
    mode: int = 0o755
    data: bytes = b""
    source: Path | None = None
    target: str = ""
    mtime: int = 0  # 0 unless the layer keeps a host file's (bytecode caches check it)


@dataclass(frozen=True)
class ImageSpec:
    """A built-in image: where it is stored, what it runs, and how its layers are made."""

    repository: str
    tag: str
    config: oci.ImageConfig
    layers: tuple[Callable[[], list[Entry]], ...]
    inputs: tuple[Path, ...] | Callable[[], tuple[Path, ...]] = ()
    gzip_level: int = GZIP_LEVEL
    base: ImageSpec | None = None  # whose layers come first (built or found first)
    contents: bytes = b""  # what the layers carry from this code (not a host file): rebuilds

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class BuiltImage:
    """The blobs of a built image, keyed by digest, and its manifest."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return digests.of_bytes(self.manifest)


def busybox_layer(binary: Path = BUSYBOX) -> list[Entry]:
    """A root filesystem of one static busybox and a symlink per applet."""
    listing = subprocess.run(
        [str(binary), "--list-full"], check=True, capture_output=True, text=True, timeout=10
    ).stdout.split()
    entries = [Entry("bin/busybox", "file", 0o755, source=binary)]
    entries += [Entry(p, "symlink", 0o777, target="/bin/busybox") for p in listing]
    entries = [e for e in entries if e.kind == "file" or e.path != "bin/busybox"]
    entries += [
        Entry("etc/passwd", "file", 0o644, PASSWD),
        Entry("etc/group", "file", 0o644, GROUP),
        Entry("etc/nsswitch.conf", "file", 0o644, NSSWITCH),
    ]
    entries += [Entry(d, "dir") for d in ("dev", "etc", "proc", "sys", "var", "usr", "home")]
    entries += [Entry("root", "dir", 0o700), Entry("tmp", "dir", 0o1777)]
    return with_parents(entries)


def _python_runtime() -> list[Entry]:
    from unistack.images import python

    return python.runtime_layer()


def _python_packages() -> list[Entry]:
    from unistack.images import python

    return python.packages_layer()


def _python_inputs() -> tuple[Path, ...]:
    from unistack.images import python

    return (BUSYBOX, *python.inputs())


# `sudo` for the guest image, whose only login is root (as cirros's `cirros` user has sudo):
# it runs the command as root, which root already is; it refuses what it cannot do (another
# user, an option it does not know) rather than pretend. Tempest runs `sudo cat`, `sudo sh`.
GUEST_SUDO = b"""#!/bin/sh
# unistack guest image: sudo for root, the image's only user
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -n|-E|-H|-S|-k|-P) shift ;;
    -u) case "$2" in root|0|"#0") shift 2 ;;
          *) echo "sudo: unknown user: $2" >&2; exit 1 ;; esac ;;
    -*) echo "sudo: option $1 is not supported by this image's sudo" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "sudo: only root may use sudo in this image" >&2; exit 1
fi
if [ $# -eq 0 ]; then
  echo "usage: sudo [-u root] command [arg ...]" >&2; exit 1
fi
exec "$@"
"""


def guest_layer() -> list[Entry]:
    """busybox, `sudo` (`GUEST_SUDO`) and Debian's curl with the libraries it loads, in one
    layer: the image is also the container servers' Glance image (`openstack.image.builtin`
    offers its last layer), and a guest fetches its metadata with curl, as cirros, the
    reference test image, does (Tempest's device tagging tests run `curl` in the guest, and
    its checks `sudo cat` files). Without curl on the host the image is busybox alone."""
    from unistack.images import python

    programs = [program for program in GUEST_PROGRAMS if program.is_file()]
    tools = [replace(e, mtime=0) for e in python.programs_with_libraries(programs)]
    sudo = Entry("usr/bin/sudo", "file", 0o755, GUEST_SUDO)
    return with_parents(python.unique([*busybox_layer(), sudo, *tools]))


def _guest_inputs() -> tuple[Path, ...]:
    from unistack.images import python

    programs = [program for program in GUEST_PROGRAMS if program.is_file()]
    return (BUSYBOX, *programs, *python.shared_libraries(programs))


BUSYBOX_IMAGE = ImageSpec(
    repository="library/busybox",
    tag="latest",
    config=oci.ImageConfig(env=(DEFAULT_PATH,), cmd=("sh",)),
    layers=(guest_layer,),
    inputs=_guest_inputs,
    contents=GUEST_SUDO,
)
# The host's Python with unistack's dependencies, on busybox (see unistack.images.python).
PYTHON_IMAGE = ImageSpec(
    repository="unistack/python",
    tag=f"{sys.version_info.major}.{sys.version_info.minor}",
    config=oci.ImageConfig(
        env=(DEFAULT_PATH, "LD_LIBRARY_PATH=/usr/local/lib", "LANG=C.UTF-8"),
        cmd=("python3",),
    ),
    layers=(busybox_layer, _python_runtime, _python_packages),
    inputs=_python_inputs,
    gzip_level=1,  # 200 MB of layers: level 6 would triple the one-time build for ~10%
)


def _controlplane_source() -> list[Entry]:
    from unistack.images import controlplane

    return controlplane.source_layer()


def _controlplane_tools() -> list[Entry]:
    from unistack.images import controlplane

    return controlplane.tools_layer()


def _controlplane_inputs() -> tuple[Path, ...]:
    from unistack.images import controlplane

    return (*controlplane.tools(), *controlplane.source_files())


# unistack's own services: the Python image plus unistack's source (see images.controlplane).
CONTROLPLANE_IMAGE = ImageSpec(
    repository="unistack/controlplane",
    tag=unistack.__version__,
    config=oci.ImageConfig(
        env=(*PYTHON_IMAGE.config.env, f"UNISTACK_VERSION={unistack.__version__}"),
        cmd=("python3", "-m", "unistack.cli.main"),
    ),
    layers=(_controlplane_tools, _controlplane_source),
    inputs=_controlplane_inputs,
    base=PYTHON_IMAGE,
)
BUILTIN_IMAGES: tuple[ImageSpec, ...] = (BUSYBOX_IMAGE, PYTHON_IMAGE, CONTROLPLANE_IMAGE)


def ensure_builtin_images(
    store: storage.ImageStore,
    images: Iterable[ImageSpec] = BUILTIN_IMAGES,
    *,
    cache: storage.ImageStore | None = None,
) -> dict[str, str]:
    """Make sure every built-in image is in the store; return `repo:tag` -> manifest digest.

    With a `cache` (a store shared by every state dir of the machine, `machine_cache()`),
    an image is built there once and linked into `store` from then on: a fresh
    `unistack up` does not spend seconds building the Python image again."""
    digests_by_name = {}
    for spec in images:
        if cache is None:
            digests_by_name[spec.name] = _ensure_image(store, spec)
        else:
            digests_by_name[spec.name] = _ensure_from_cache(store, cache, spec)
    return digests_by_name


def machine_cache_if_writable() -> storage.ImageStore | None:
    """The machine cache, or None (build into each store) where it cannot be made."""
    try:
        return machine_cache()
    except OSError as error:
        log.warning("no image build cache (%s): building into the state dir", error)
        return None


def ensure_in_background(
    store: storage.ImageStore, images: Iterable[ImageSpec], cache: storage.ImageStore | None
) -> None:
    """`ensure_builtin_images` for a thread: failures are logged, not raised."""
    for spec in images:
        try:
            started = time.monotonic()
            ensure_builtin_images(store, [spec], cache=cache)
            log.info("image %s ready after %.1f s", spec.name, time.monotonic() - started)
        except Exception:  # a host file missing or unreadable: the other images still come
            log.exception("could not build image %s", spec.name)


def machine_cache() -> storage.ImageStore:
    """The machine's build cache: `$UNISTACK_IMAGE_CACHE`, else ~/.cache/unistack/images."""
    configured = os.environ.get("UNISTACK_IMAGE_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "unistack" / "images"
    return storage.ImageStore(root)


def build_image(spec: ImageSpec, base: BuiltImage | None = None) -> BuiltImage:
    """Build an image's layers, config and OCI manifest in memory. An image with a `base`
    starts from `base` (its manifest and config; built here when not given) and holds the
    blobs of `base` that it was given."""
    if spec.base is not None and base is None:
        base = build_image(spec.base)
    blobs: dict[str, bytes] = dict(base.blobs) if base else {}
    layer_descriptors, diff_ids = _base_layers(base)
    for make_entries in spec.layers:
        tar = layer_tar(make_entries())
        compressed = gzip.compress(tar, compresslevel=spec.gzip_level, mtime=0)
        digest = digests.of_bytes(compressed)
        blobs[digest] = compressed
        diff_ids.append(digests.of_bytes(tar))
        layer_descriptors.append(_descriptor(oci.OCI_LAYER_GZIP, digest, len(compressed)))
    config = _canonical(_config_document(spec.config, diff_ids))
    config_digest = digests.of_bytes(config)
    blobs[config_digest] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": _descriptor(oci.OCI_CONFIG, config_digest, len(config)),
        "layers": layer_descriptors,
    }
    return BuiltImage(manifest=_canonical(manifest), blobs=blobs)


def _base_layers(base: BuiltImage | None) -> tuple[list[object], list[str]]:
    """The layer descriptors and diff ids an image on `base` starts with."""
    if base is None:
        return [], []
    manifest = orjson.loads(base.manifest)
    config = orjson.loads(base.blobs[manifest["config"]["digest"]])
    return list(manifest["layers"]), list(config["rootfs"]["diff_ids"])


def stored_base(store: storage.ImageStore, repository: str, digest: str) -> BuiltImage:
    """An image in `store` as a base to build on: its manifest and config (its layers stay
    in the store)."""
    manifest = store.get_manifest(repository, digest).data
    config_digest = orjson.loads(manifest)["config"]["digest"]
    with store.open_blob(config_digest) as config:
        return BuiltImage(manifest=manifest, blobs={config_digest: config.read()})


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed tar of `entries`, sorted by path, with fixed owners and times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path):
            info, content = _tar_info(entry)
            tar.addfile(info, content)
    return buffer.getvalue()


def _ensure_image(store: storage.ImageStore, spec: ImageSpec) -> str:
    stamp_path = _stamp_path(store, spec)
    fingerprint = _fingerprint(spec)
    try:
        stamp = orjson.loads(stamp_path.read_bytes())
        if stamp["fingerprint"] == fingerprint and (
            store.resolve(spec.repository, spec.tag) == stamp["digest"]
        ):
            return str(stamp["digest"])
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, storage.StoreError):
        pass
    base = None
    if spec.base is not None:
        base = stored_base(store, spec.base.repository, _ensure_image(store, spec.base))
    image = build_image(spec, base)
    for digest, blob in image.blobs.items():
        store.put_blob(blob, digest)
    digest = store.put_manifest(spec.repository, spec.tag, image.manifest, oci.OCI_MANIFEST)
    _write_stamp(stamp_path, {"image": spec.name, "fingerprint": fingerprint, "digest": digest})
    return digest


def _ensure_from_cache(
    store: storage.ImageStore, cache: storage.ImageStore, spec: ImageSpec
) -> str:
    """Build into the cache (or find it there), then link its blobs and tag into `store`."""
    digest = _ensure_image(cache, spec)
    stamp = _stamp_path(store, spec)
    with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError, KeyError):
        if orjson.loads(stamp.read_bytes())["digest"] == digest and (
            store.resolve(spec.repository, spec.tag) == digest
        ):
            return digest
    manifest = cache.get_manifest(spec.repository, digest)
    document = orjson.loads(manifest.data)
    for descriptor in [document["config"], *document["layers"]]:
        store.link_blob(cache.blob_path(descriptor["digest"]), descriptor["digest"])
    store.put_manifest(spec.repository, spec.tag, manifest.data, manifest.media_type)
    # with the fingerprint, so asking the store alone (no cache) finds it current too
    record = {"image": spec.name, "fingerprint": _fingerprint(spec), "digest": digest}
    _write_stamp(stamp, {**record, "from": str(cache.root)})
    return digest


def _stamp_path(store: storage.ImageStore, spec: ImageSpec) -> Path:
    return store.root / "builtin" / f"{hashlib.sha256(spec.name.encode()).hexdigest()}.json"


def _fingerprint(spec: ImageSpec) -> str:
    """A hash of what the image is built from; it changes when a host input file changes."""
    parts: list[object] = [BUILD_FORMAT, spec.name, spec.config.to_json(), len(spec.layers)]
    parts.append(spec.gzip_level)
    parts.append(hashlib.sha256(spec.contents).hexdigest())
    if spec.base is not None:
        parts.append(_fingerprint(spec.base))
    inputs = spec.inputs() if callable(spec.inputs) else spec.inputs
    for path in inputs:
        status = path.stat()
        parts.append([str(path), status.st_size, status.st_mtime_ns, status.st_ino])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _write_stamp(path: Path, stamp: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_bytes(orjson.dumps(stamp))
    os.replace(temporary, path)


def _tar_info(entry: Entry) -> tuple[tarfile.TarInfo, io.BufferedIOBase | None]:
    info = tarfile.TarInfo(entry.path)
    info.mode, info.mtime, info.uid, info.gid = entry.mode, entry.mtime, 0, 0
    info.uname = info.gname = "root"
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        return info, None
    if entry.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
        return info, None
    data = entry.source.read_bytes() if entry.source is not None else entry.data
    info.size = len(data)
    return info, io.BytesIO(data)


def with_parents(entries: list[Entry]) -> list[Entry]:
    """Add a 0755 directory entry for every parent that has none."""
    present = {e.path for e in entries}
    parents = {str(p) for e in entries for p in Path(e.path).parents if str(p) != "."}
    return entries + [Entry(p, "dir") for p in sorted(parents - present)]


def _config_document(config: oci.ImageConfig, diff_ids: list[str]) -> dict[str, object]:
    os_name, architecture = oci.host_platform()
    runtime: dict[str, object] = {"Env": list(config.env), "Cmd": list(config.cmd)}
    if config.entrypoint:
        runtime["Entrypoint"] = list(config.entrypoint)
    if config.working_dir:
        runtime["WorkingDir"] = config.working_dir
    if config.user:
        runtime["User"] = config.user
    return {
        "architecture": architecture,
        "os": os_name,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "unistack built-in image", "comment": "built offline"}],
    }


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def _canonical(document: object) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
