"""The built-in `unistack/controlplane` image: what the self-hosted control plane's pods run.

It is `unistack/python` (the host's Python and unistack's dependencies, `images.python`) plus
two layers: the host programs the pods run besides Python (HAProxy, for the gateway's pods,
with the libraries it loads) and the `unistack` package's source as this machine runs it,
in site-packages, with its bytecode compiled here rather than by every pod at its start
(that halves a service's import time, ~1.2 s to ~0.65 s, and a pod would otherwise write
the caches into its own writable layer, to be thrown away with it). The caches are
hash-checked (PEP 552): valid for as long as the source they were compiled from is,
whatever its time stamps say, since the layer pins every time to 0. The host's own caches
are left out.

Its config adds `UNISTACK_VERSION` and its command is `python3 -m unistack.cli.main` (a
command, not an entrypoint: a pod names the whole command, `python3 -m unistack.cli.main
serve openstack --services compute ...`). `build.CONTROLPLANE_IMAGE` declares it (built on
the Python image's stored layers, so a source change costs ~2 s, most of it compiling);
this module makes its layer and, for upgrade tests, tags a simulated newer version
(`ensure_version`): the same layers under a config that differs only in `UNISTACK_VERSION`, so
the image digest — and so every pod's spec — changes as it would for a real release.
"""

from __future__ import annotations

import py_compile
import sys
import tempfile
from pathlib import Path

import orjson

import unistack
from unistack.images import build, digests, oci, python
from unistack.images import store as storage

VERSION_ENV = "UNISTACK_VERSION"
# HAProxy: the gateway's pods run it (`controlplane.gateway`).
TOOLS = (Path("/usr/sbin/haproxy"),)
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})


def package_root() -> Path:
    return Path(unistack.__file__).parent


def source_files(root: Path | None = None) -> tuple[Path, ...]:
    """The package's files (sources and the data beside them), sorted, without caches."""
    root = root or package_root()
    found = [
        path
        for path in root.rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and SKIPPED_DIRS.isdisjoint(path.relative_to(root).parts)
        and path.suffix not in SKIPPED_SUFFIXES
    ]
    return tuple(sorted(found))


def tools() -> tuple[Path, ...]:
    """The host programs the control plane's pods run besides Python, where installed."""
    return tuple(path for path in TOOLS if path.is_file())


def tools_layer() -> list[build.Entry]:
    """The programs of `tools()` at their own paths and the shared libraries they load
    (those the Python layer has already are the same files, from the same host)."""
    return build.with_parents(python.programs_with_libraries(tools()))


def source_layer(root: Path | None = None) -> list[build.Entry]:
    """`unistack/...` under site-packages with its bytecode; times pinned, so the layer
    depends on content only."""
    root = root or package_root()
    entries: list[build.Entry] = []
    for path in source_files(root):
        target = f"{python.SITE_PACKAGES}/unistack/{path.relative_to(root)}"
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        entries.append(build.Entry(target, "file", mode, source=path))
        if path.suffix == ".py":
            cache = cache_path(target)
            entries.append(build.Entry(cache, "file", 0o644, data=bytecode(path, "/" + target)))
    return build.with_parents(entries)


def cache_path(source: str) -> str:
    """Where the interpreter looks for `source`'s bytecode (`__pycache__/NAME.TAG.pyc`,
    whatever PYTHONPYCACHEPREFIX this machine sets)."""
    folder, _, name = source.rpartition("/")
    stem = name.removesuffix(".py")
    return f"{folder}/__pycache__/{stem}.{sys.implementation.cache_tag}.pyc"


def bytecode(source: Path, shown_as: str) -> bytes:
    """`source` compiled as the interpreter would cache it, checked against the source's
    hash; tracebacks name it `shown_as`, its path in the image."""
    with tempfile.TemporaryDirectory() as scratch:
        compiled = Path(scratch) / "cache.pyc"
        py_compile.compile(
            str(source),
            cfile=str(compiled),
            dfile=shown_as,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        return compiled.read_bytes()


def with_version(config: bytes, version: str) -> bytes:
    """An image config whose `UNISTACK_VERSION` is `version`, and nothing else changed."""
    document = orjson.loads(config)
    env = [e for e in document["config"].get("Env") or [] if not e.startswith(f"{VERSION_ENV}=")]
    document["config"]["Env"] = [*env, f"{VERSION_ENV}={version}"]
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def retagged(manifest: bytes, config: bytes, version: str) -> tuple[bytes, bytes]:
    """The manifest and config of `version`: the same layers, the new config."""
    new_config = with_version(config, version)
    document = orjson.loads(manifest)
    document["config"] = {
        "mediaType": oci.OCI_CONFIG,
        "digest": digests.of_bytes(new_config),
        "size": len(new_config),
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS), new_config


def ensure_version(
    store: storage.ImageStore,
    version: str,
    *,
    cache: storage.ImageStore | None = None,
    spec: build.ImageSpec = build.CONTROLPLANE_IMAGE,
) -> str:
    """Tag `unistack/controlplane:<version>` as a simulated release of this code (built
    first if needed); return its manifest digest. Idempotent."""
    current = build.ensure_builtin_images(store, [spec], cache=cache)[spec.name]
    base = build.stored_base(store, spec.repository, current)
    config_digest = orjson.loads(base.manifest)["config"]["digest"]
    manifest, config = retagged(base.manifest, base.blobs[config_digest], version)
    store.put_blob(config)
    return store.put_manifest(spec.repository, version, manifest, oci.OCI_MANIFEST)
