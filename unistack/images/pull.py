"""The node side: pull images from a registry and keep their layers unpacked for overlayfs.

`ImageCache.pull` resolves a reference to a platform manifest, fetches the config, and makes
sure each layer is unpacked under `layers/<diff_id hex>/`, lowest first, ready to be an
overlayfs lowerdir. Every blob is checked against its digest and every layer against its
diff_id. A layer is unpacked into `tmp/` and renamed into place, so a half-unpacked layer is
never visible; concurrent pulls of one reference, or of one layer, share a single task.

Records (`refs/<sha256 of reference>.json` -> manifest digest, `images/<hex>.json` -> config
and layers) let `pull` skip the network when the image is present (IfNotPresent);
`always=True` re-resolves the reference (Always), still reusing layers already unpacked.
Failures raise `ImagePullError` with a reason from `PullFailure`; nothing waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from unistack.images import digests, oci, reference, unpack

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
MANIFEST_ACCEPT = ", ".join(
    [oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST, oci.DOCKER_MANIFEST_LIST]
)

T = TypeVar("T")


class PullFailure(StrEnum):
    """Why a pull failed."""

    INVALID_NAME = "InvalidImageName"
    NOT_FOUND = "NotFound"
    UNAUTHORIZED = "Unauthorized"
    UNREACHABLE = "RegistryUnavailable"
    DIGEST_MISMATCH = "DigestMismatch"
    BAD_IMAGE = "BadImage"


class ImagePullError(Exception):
    """A pull failed; `reason` is a PullFailure, `message` is fit for a pod's status."""

    def __init__(self, reason: PullFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def kubelet_reason(self) -> str:
        """The container waiting reason the kubelet would report."""
        if self.reason is PullFailure.INVALID_NAME:
            return "InvalidImageName"
        return "ErrImagePull"


@dataclass(frozen=True)
class PulledImage:
    """A pulled image: what it runs and its unpacked layers, lowest first."""

    reference: str
    digest: str
    config_digest: str
    config: oci.ImageConfig
    layers: list[Path]


class ImageCache:
    """Unpacked image layers and pull records under one root directory."""

    def __init__(self, root: Path, *, read_timeout: float = 30.0) -> None:
        self.root = root
        self.layers_dir = root / "layers"
        self._tmp = root / "tmp"
        self._refs = root / "refs"
        self._images = root / "images"
        self._artifacts = root / "artifacts"
        for directory in (self.layers_dir, self._tmp, self._refs, self._images, self._artifacts):
            directory.mkdir(parents=True, exist_ok=True)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=read_timeout)
        self._pulls: dict[str, asyncio.Task[PulledImage]] = {}
        self._layers: dict[str, asyncio.Task[Path]] = {}

    async def pull(
        self,
        image: str,
        *,
        default_registry: str = reference.DEFAULT_REGISTRY,
        insecure: bool = True,
        always: bool = False,
    ) -> PulledImage:
        """Make `image` present locally and return it; skip the network when already present
        unless `always`. `insecure` means plain HTTP (our registry listens on loopback)."""
        ref = _parse(image, default_registry)
        if not always and (present := self._lookup(ref)) is not None:
            return present
        return await _coalesced(
            self._pulls, f"{always}:{ref}", lambda: self._pull(ref, image, insecure)
        )

    def lookup(
        self, image: str, *, default_registry: str = reference.DEFAULT_REGISTRY
    ) -> PulledImage | None:
        """The image if it was pulled before and all its layers are still here; no network."""
        return self._lookup(_parse(image, default_registry))

    def _lookup(self, ref: reference.Reference) -> PulledImage | None:
        try:
            record = orjson.loads(self._ref_record(str(ref)).read_bytes())
            image_record = orjson.loads(self._image_record(record["digest"]).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            return None
        layers = [self.layers_dir / h for h in image_record["layers"]]
        if not all(layer.is_dir() for layer in layers):
            return None
        return PulledImage(
            reference=str(ref),
            digest=image_record["digest"],
            config_digest=image_record["config_digest"],
            config=oci.ImageConfig.from_json(image_record["config"]),
            layers=layers,
        )

    async def _pull(self, ref: reference.Reference, image: str, insecure: bool) -> PulledImage:
        base = f"{'http' if insecure else 'https'}://{ref.registry}/v2/{ref.repository}"
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            fetch = _Fetcher(session, base, image)
            digest, manifest = await fetch.image_manifest(ref.target)
            if manifest.config is None:
                raise fetch.error(PullFailure.BAD_IMAGE, "manifest has no config")
            config_blob = await fetch.document(f"blobs/{manifest.config.digest}")
            _check_digest(fetch, config_blob, manifest.config.digest)
            config = _parse_config(fetch, config_blob, len(manifest.layers))
            layers = await asyncio.gather(
                *(
                    self._layer(fetch, layer, diff_id)
                    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
                )
            )
        pulled = PulledImage(str(ref), digest, manifest.config.digest, config, list(layers))
        self._record(pulled)
        return pulled

    async def _layer(self, fetch: _Fetcher, layer: oci.Descriptor, diff_id: str) -> Path:
        final = self.layers_dir / _hex(fetch, diff_id)
        if final.is_dir():
            return final
        return await _coalesced(
            self._layers, diff_id, lambda: self._fetch_layer(fetch, layer, final)
        )

    async def _fetch_layer(self, fetch: _Fetcher, layer: oci.Descriptor, final: Path) -> Path:
        scratch = self._tmp / uuid.uuid4().hex
        blob, unpacked = scratch.with_suffix(".blob"), scratch.with_suffix(".dir")
        try:
            await fetch.blob_to_file(layer, blob)
            unpacked.mkdir()
            diff_id = digests.from_hex(final.name)
            try:
                await asyncio.to_thread(unpack.unpack_layer, blob, unpacked, diff_id=diff_id)
            except unpack.DiffIdMismatch as error:
                raise fetch.error(PullFailure.DIGEST_MISMATCH, str(error)) from None
            except unpack.LayerError as error:
                raise fetch.error(PullFailure.BAD_IMAGE, f"layer {layer.digest}: {error}") from None
            with contextlib.suppress(FileExistsError, OSError):
                os.rename(unpacked, final)
            if not final.is_dir():
                raise fetch.error(PullFailure.BAD_IMAGE, f"could not place layer {final.name}")
            return final
        finally:
            blob.unlink(missing_ok=True)
            if unpacked.exists():
                await asyncio.to_thread(shutil.rmtree, unpacked, True)

    # --- artifacts: a Glance image's data, one layer that is the disk or the filesystem ------

    async def pull_artifact(
        self, image: str, *, default_registry: str = reference.DEFAULT_REGISTRY
    ) -> Path:
        """The one layer of an artifact (`openstack/images:<id>`) as a file, fetched once.

        Glance keeps an image's bytes as such an artifact (`unistack.openstack.image.data`);
        the file is named by the layer's digest, so a second server on the same image, or a
        re-tagged copy, costs nothing."""
        ref = _parse(image, default_registry)
        base = f"http://{ref.registry}/v2/{ref.repository}"
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            fetch = _Fetcher(session, base, image)
            _, manifest = await fetch.image_manifest(ref.target)
            if len(manifest.layers) != 1:
                raise fetch.error(PullFailure.BAD_IMAGE, "an image artifact has one layer")
            layer = manifest.layers[0]
            final = self._artifacts / digests.hex_of(layer.digest)
            if final.is_file():
                return final
            return await _coalesced(
                self._layers, layer.digest, lambda: self._fetch_blob(fetch, layer, final)
            )

    async def _fetch_blob(self, fetch: _Fetcher, layer: oci.Descriptor, final: Path) -> Path:
        scratch = self._tmp / f"{uuid.uuid4().hex}.blob"
        try:
            await fetch.blob_to_file(layer, scratch)
            os.replace(scratch, final)
            return final
        finally:
            scratch.unlink(missing_ok=True)

    async def unpack_artifact(
        self, image: str, *, default_registry: str = reference.DEFAULT_REGISTRY
    ) -> Path:
        """An artifact whose layer is a filesystem archive (container format `docker`),
        unpacked once into a directory: a system container's lower layer."""
        blob = await self.pull_artifact(image, default_registry=default_registry)
        final = self.layers_dir / f"artifact-{blob.name}"
        if final.is_dir():
            return final
        scratch = self._tmp / f"{uuid.uuid4().hex}.dir"
        scratch.mkdir()
        try:
            await asyncio.to_thread(unpack.unpack_layer, blob, scratch)
        except unpack.LayerError as error:
            raise ImagePullError(
                PullFailure.BAD_IMAGE, f"image {image} is not a filesystem archive: {error}"
            ) from None
        finally:
            if not final.exists():
                with contextlib.suppress(OSError):
                    os.rename(scratch, final)
            if scratch.exists():
                await asyncio.to_thread(shutil.rmtree, scratch, True)
        return final

    def _record(self, image: PulledImage) -> None:
        image_record = {
            "digest": image.digest,
            "config_digest": image.config_digest,
            "config": image.config.to_json(),
            "layers": [layer.name for layer in image.layers],
        }
        self._write(self._image_record(image.digest), image_record)
        ref_record = {"reference": image.reference, "digest": image.digest}
        self._write(self._ref_record(image.reference), ref_record)

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        temporary = self._tmp / f"{uuid.uuid4().hex}.json"
        temporary.write_bytes(orjson.dumps(document))
        os.replace(temporary, path)

    def _ref_record(self, image: str) -> Path:
        return self._refs / f"{hashlib.sha256(image.encode()).hexdigest()}.json"

    def _image_record(self, digest: str) -> Path:
        return self._images / f"{digests.hex_of(digest)}.json"


class _Fetcher:
    """HTTP calls against one repository, with registry errors turned into ImagePullError."""

    def __init__(self, session: aiohttp.ClientSession, base: str, image: str) -> None:
        self.session, self.base, self.image = session, base, image

    def error(self, reason: PullFailure, detail: str) -> ImagePullError:
        return ImagePullError(reason, f'failed to pull image "{self.image}": {detail}')

    async def image_manifest(self, target: str) -> tuple[str, oci.Manifest]:
        """The manifest for this host's platform, following an index if needed."""
        digest, manifest = await self.manifest(target)
        if not manifest.is_index:
            return digest, manifest
        os_name, architecture = oci.host_platform()
        chosen = oci.pick_platform(manifest, os_name, architecture)
        if chosen is None:
            raise self.error(PullFailure.BAD_IMAGE, f"no manifest for {os_name}/{architecture}")
        digest, manifest = await self.manifest(chosen.digest)
        if manifest.is_index:
            raise self.error(PullFailure.BAD_IMAGE, "an index points at another index")
        return digest, manifest

    async def manifest(self, target: str) -> tuple[str, oci.Manifest]:
        headers = {"Accept": MANIFEST_ACCEPT}
        data, content_type = await self._get_document(f"manifests/{target}", headers)
        digest = digests.of_bytes(data)
        if digests.is_digest(target):
            _check_digest(self, data, target)
        try:
            return digest, oci.parse_manifest(data, content_type)
        except oci.ManifestError as error:
            raise self.error(PullFailure.BAD_IMAGE, f"manifest invalid: {error}") from None

    async def document(self, path: str) -> bytes:
        data, _ = await self._get_document(path, {})
        return data

    async def blob_to_file(self, blob: oci.Descriptor, path: Path) -> None:
        """Stream a blob to `path`, checking its digest."""
        sha = hashlib.sha256()

        async def save(response: aiohttp.ClientResponse) -> None:
            with path.open("wb") as handle:
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                    sha.update(chunk)
                    handle.write(chunk)

        await self._request(f"blobs/{blob.digest}", {}, save)
        actual = digests.from_hex(sha.hexdigest())
        if actual != blob.digest:
            raise self.error(PullFailure.DIGEST_MISMATCH, f"blob {blob.digest} hashes to {actual}")

    async def _get_document(self, path: str, headers: dict[str, str]) -> tuple[bytes, str]:
        result: list[tuple[bytes, str]] = []

        async def read(response: aiohttp.ClientResponse) -> None:
            data = await response.content.read(MAX_DOCUMENT_BYTES + 1)
            if len(data) > MAX_DOCUMENT_BYTES:
                raise self.error(PullFailure.BAD_IMAGE, f"{path} exceeds {MAX_DOCUMENT_BYTES}")
            result.append((data, response.content_type))

        await self._request(path, headers, read)
        return result[0]

    async def _request(
        self,
        path: str,
        headers: dict[str, str],
        consume: Callable[[aiohttp.ClientResponse], Awaitable[None]],
    ) -> None:
        url = f"{self.base}/{path}"
        try:
            async with self.session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise await self._status_error(response)
                await consume(response)
        except (aiohttp.ClientError, TimeoutError) as error:
            detail = str(error) or type(error).__name__
            raise self.error(PullFailure.UNREACHABLE, f"registry unreachable: {detail}") from None

    async def _status_error(self, response: aiohttp.ClientResponse) -> ImagePullError:
        code, message = await _registry_error(response)
        if response.status == 404:
            return self.error(PullFailure.NOT_FOUND, f"{code or 'not found'}: {message}")
        if response.status in (401, 403):
            return self.error(PullFailure.UNAUTHORIZED, f"{code or 'unauthorized'}: {message}")
        reason = PullFailure.UNREACHABLE if response.status >= 500 else PullFailure.BAD_IMAGE
        return self.error(reason, f"registry answered {response.status}: {code} {message}")


async def _coalesced(
    tasks: dict[str, asyncio.Task[T]], key: str, start: Callable[[], Awaitable[T]]
) -> T:
    """Run `start()` once per key at a time; every caller awaits the same task."""
    task = tasks.get(key)
    if task is None:

        async def run() -> T:
            return await start()

        task = asyncio.ensure_future(run())
        tasks[key] = task
        task.add_done_callback(lambda _: tasks.pop(key, None))
    return await asyncio.shield(task)


async def _registry_error(response: aiohttp.ClientResponse) -> tuple[str, str]:
    """The first (code, message) of a spec-format error body, lower-cased as docker prints it."""
    try:
        body = orjson.loads(await response.content.read(64 * 1024))
        first = body["errors"][0]
        return str(first["code"]).lower().replace("_", " "), str(first.get("message", ""))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, aiohttp.ClientError):
        return "", response.reason or ""


def _parse(image: str, default_registry: str) -> reference.Reference:
    try:
        return reference.parse(image, default_registry=default_registry)
    except ValueError as error:
        message = f'failed to pull image "{image}": {error}'
        raise ImagePullError(PullFailure.INVALID_NAME, message) from None


def _parse_config(fetch: _Fetcher, data: bytes, layer_count: int) -> oci.ImageConfig:
    try:
        config = oci.parse_image_config(data)
    except oci.ManifestError as error:
        raise fetch.error(PullFailure.BAD_IMAGE, f"image config invalid: {error}") from None
    if len(config.diff_ids) != layer_count:
        raise fetch.error(
            PullFailure.BAD_IMAGE,
            f"config lists {len(config.diff_ids)} diff_ids for {layer_count} layers",
        )
    return config


def _check_digest(fetch: _Fetcher, data: bytes, expected: str) -> None:
    actual = digests.of_bytes(data)
    if actual != expected:
        raise fetch.error(PullFailure.DIGEST_MISMATCH, f"{expected} hashes to {actual}")


def _hex(fetch: _Fetcher, digest: str) -> str:
    try:
        return digests.hex_of(digest)
    except digests.DigestError as error:
        raise fetch.error(PullFailure.BAD_IMAGE, str(error)) from None
