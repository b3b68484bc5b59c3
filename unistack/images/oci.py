"""OCI and Docker v2 image formats: media types, manifest parsing, image config, host platform.

Shared by the registry (which validates what is pushed), the builder (which writes images)
and the puller (which reads them). Parsing is tolerant of Docker schema2 and OCI alike,
since skopeo and docker push either.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from unistack.images import digests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


class ManifestError(ValueError):
    """A manifest or config document is not well-formed."""


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: its digest, size, media type and (for indexes) platform."""

    digest: str
    size: int
    media_type: str
    platform: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A parsed image manifest or index; `children` are the referenced manifests of an index."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def referenced_blobs(self) -> Iterator[Descriptor]:
        """The config and layers (blobs that must exist before this manifest is accepted)."""
        if self.config is not None:
            yield self.config
        yield from self.layers


@dataclass(frozen=True)
class ImageConfig:
    """The run-time defaults of an image, as the container runtime needs them."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    diff_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "Env": list(self.env),
            "Cmd": list(self.cmd),
            "Entrypoint": list(self.entrypoint),
            "WorkingDir": self.working_dir,
            "User": self.user,
            "diff_ids": list(self.diff_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageConfig:
        return cls(
            env=tuple(data.get("Env") or ()),
            cmd=tuple(data.get("Cmd") or ()),
            entrypoint=tuple(data.get("Entrypoint") or ()),
            working_dir=data.get("WorkingDir") or "",
            user=data.get("User") or "",
            diff_ids=tuple(data.get("diff_ids") or ()),
        )


def host_platform() -> tuple[str, str]:
    """The (os, architecture) of this host in OCI spelling, e.g. ("linux", "amd64")."""
    machine = platform.machine()
    return "linux", _ARCHITECTURES.get(machine, machine)


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse manifest bytes; `media_type` (from Content-Type) overrides a missing field."""
    document = _load_object(data)
    kind = document.get("mediaType") or media_type or _guess_media_type(document)
    if kind not in MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {kind!r}")
    if kind in INDEXES:
        children = tuple(_descriptor(d) for d in _list(document, "manifests"))
        return Manifest(media_type=kind, config=None, layers=(), children=children)
    config = _descriptor(document.get("config"))
    layers = tuple(_descriptor(d) for d in _list(document, "layers"))
    return Manifest(media_type=kind, config=config, layers=layers, children=())


def parse_image_config(data: bytes) -> ImageConfig:
    """Read the runtime fields and rootfs diff_ids out of an image config blob."""
    document = _load_object(data)
    config = document.get("config") or {}
    rootfs = document.get("rootfs") or {}
    if not isinstance(config, dict) or not isinstance(rootfs, dict):
        raise ManifestError("image config: 'config' and 'rootfs' must be objects")
    return ImageConfig.from_json({**config, "diff_ids": rootfs.get("diff_ids") or []})


def pick_platform(index: Manifest, os_name: str, architecture: str) -> Descriptor | None:
    """The index entry for the given platform, or None when the index has none."""
    for child in index.children:
        if child.platform.get("os") == os_name and child.platform.get("architecture") == (
            architecture
        ):
            return child
    return None


def _guess_media_type(document: dict[str, Any]) -> str:
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def _load_object(data: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ManifestError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ManifestError("document must be a JSON object")
    return document


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise ManifestError(f"{key!r} must be a list")
    return value


def _descriptor(value: Any) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError("descriptor must be an object")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not digests.is_digest(digest):
        raise ManifestError(f"descriptor digest {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or size < 0:
        raise ManifestError(f"descriptor size {size!r} is not a non-negative integer")
    platform_ = value.get("platform") or {}
    return Descriptor(
        digest=digest,
        size=size,
        media_type=str(value.get("mediaType", "")),
        platform={k: str(v) for k, v in platform_.items()} if isinstance(platform_, dict) else {},
    )
