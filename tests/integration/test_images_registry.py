"""The registry API in process (no sockets): uploads, manifests, listings, spec-format errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from unistack.images import digests, oci, registry
from unistack.images import store as storage

Reply = tuple[int, dict[str, str], bytes]


class InProcess:
    """Drive the ASGI app directly, feeding the body in two chunks to exercise streaming."""

    def __init__(self, app: registry.Registry) -> None:
        self.app = app

    async def __call__(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }
        half = len(body) // 2
        chunks = [
            {"type": "http.request", "body": body[:half], "more_body": True},
            {"type": "http.request", "body": body[half:], "more_body": False},
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = sent[0]
        reply_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], reply_headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def call(tmp_path: Path) -> InProcess:
    return InProcess(registry.Registry(storage.ImageStore(tmp_path)))


def error_code(body: bytes) -> str:
    document = orjson.loads(body)
    assert set(document["errors"][0]) == {"code", "message", "detail"}
    return str(document["errors"][0]["code"])


async def push_blob(call: InProcess, name: str, data: bytes) -> str:
    digest = digests.of_bytes(data)
    status, headers, _ = await call("POST", f"/v2/{name}/blobs/uploads/")
    assert status == 202
    location = headers["location"]
    status, headers, _ = await call("PATCH", location, data)
    assert (status, headers["range"]) == (202, f"0-{len(data) - 1}")
    status, headers, _ = await call("PUT", f"{location}?digest={digest}")
    assert (status, headers["docker-content-digest"]) == (201, digest)
    return digest


async def push_image(call: InProcess, name: str, tag: str) -> tuple[str, bytes]:
    config = await push_blob(call, name, b'{"config":{}}')
    layer = await push_blob(call, name, b"layer-bytes")
    manifest = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": config, "size": 13},
            "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": layer, "size": 11}],
        }
    )
    status, headers, _ = await call(
        "PUT", f"/v2/{name}/manifests/{tag}", manifest, {"content-type": oci.OCI_MANIFEST}
    )
    assert status == 201, headers
    assert headers["location"] == f"/v2/{name}/manifests/{digests.of_bytes(manifest)}"
    return headers["docker-content-digest"], manifest


async def test_base_endpoint_announces_the_api_version(call: InProcess) -> None:
    status, headers, _ = await call("GET", "/v2/")
    assert status == 200
    assert headers["docker-distribution-api-version"] == "registry/2.0"


async def test_pushed_image_reads_back_by_tag_and_digest(call: InProcess) -> None:
    digest, manifest = await push_image(call, "library/app", "v1")
    for ref in ("v1", digest):
        status, headers, body = await call("GET", f"/v2/library/app/manifests/{ref}")
        assert (status, body, headers["content-type"]) == (200, manifest, oci.OCI_MANIFEST)
        assert headers["docker-content-digest"] == digest
    status, headers, body = await call("HEAD", "/v2/library/app/manifests/v1")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(manifest)))


async def test_blob_get_head_and_range(call: InProcess) -> None:
    digest = await push_blob(call, "a/b", b"0123456789")
    status, headers, body = await call("GET", f"/v2/a/b/blobs/{digest}")
    assert (status, body, headers["docker-content-digest"]) == (200, b"0123456789", digest)
    status, headers, body = await call("HEAD", f"/v2/a/b/blobs/{digest}")
    assert (status, body, headers["content-length"]) == (200, b"", "10")
    status, headers, body = await call(
        "GET", f"/v2/a/b/blobs/{digest}", headers={"range": "bytes=2-4"}
    )
    assert (status, body, headers["content-range"]) == (206, b"234", "bytes 2-4/10")


async def test_monolithic_upload_and_cross_repository_mount(call: InProcess) -> None:
    digest = digests.of_bytes(b"whole")
    status, headers, _ = await call("POST", f"/v2/a/b/blobs/uploads/?digest={digest}", b"whole")
    assert (status, headers["location"]) == (201, f"/v2/a/b/blobs/{digest}")
    status, headers, _ = await call("POST", f"/v2/c/d/blobs/uploads/?mount={digest}&from=a/b")
    assert (status, headers["location"]) == (201, f"/v2/c/d/blobs/{digest}")
    absent = digests.of_bytes(b"absent")
    status, headers, _ = await call("POST", f"/v2/c/d/blobs/uploads/?mount={absent}&from=a/b")
    assert status == 202 and "docker-upload-uuid" in headers


async def test_upload_status_cancel_and_wrong_digest(call: InProcess) -> None:
    _, headers, _ = await call("POST", "/v2/a/b/blobs/uploads/")
    location = headers["location"]
    await call("PATCH", location, b"abc", {"content-range": "0-2"})
    status, headers, _ = await call("GET", location)
    assert (status, headers["range"]) == (204, "0-2")
    status, headers, _ = await call("PATCH", location, b"x", {"content-range": "0-0"})
    assert (status, headers["range"]) == (416, "0-2")
    status, _, body = await call("PUT", f"{location}?digest={digests.of_bytes(b'nope')}")
    assert (status, error_code(body)) == (400, "DIGEST_INVALID")
    _, headers, _ = await call("POST", "/v2/a/b/blobs/uploads/")
    assert (await call("DELETE", headers["location"]))[0] == 204
    status, _, body = await call("GET", headers["location"])
    assert (status, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN")


async def test_manifest_referring_to_missing_blobs_is_refused(call: InProcess) -> None:
    missing = digests.of_bytes(b"missing")
    manifest = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.DOCKER_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": missing, "size": 1},
            "layers": [],
        }
    )
    status, _, body = await call("PUT", "/v2/a/b/manifests/v1", manifest)
    assert (status, error_code(body)) == (400, "MANIFEST_BLOB_UNKNOWN")
    index = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_INDEX,
            "manifests": [{"mediaType": oci.OCI_MANIFEST, "digest": missing, "size": 1}],
        }
    )
    status, _, body = await call("PUT", "/v2/a/b/manifests/v1", index)
    assert (status, error_code(body)) == (400, "MANIFEST_BLOB_UNKNOWN")


async def test_index_of_pushed_manifests_is_accepted(call: InProcess) -> None:
    digest, manifest = await push_image(call, "a/b", "amd64")
    index = orjson.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": oci.OCI_MANIFEST,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    )
    status, _, _ = await call(
        "PUT", "/v2/a/b/manifests/multi", index, {"content-type": oci.OCI_INDEX}
    )
    assert status == 201
    _, headers, _ = await call("GET", "/v2/a/b/manifests/multi")
    assert headers["content-type"] == oci.OCI_INDEX


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "code"),
    [
        ("GET", "/v2/a/b/blobs/" + digests.of_bytes(b"x"), b"", 404, "BLOB_UNKNOWN"),
        ("GET", "/v2/a/b/blobs/sha256:short", b"", 400, "DIGEST_INVALID"),
        ("GET", "/v2/a/b/manifests/latest", b"", 404, "MANIFEST_UNKNOWN"),
        ("GET", "/v2/a/b/tags/list", b"", 404, "NAME_UNKNOWN"),
        ("GET", "/v2/Bad/Name/tags/list", b"", 400, "NAME_INVALID"),
        ("PUT", "/v2/a/b/manifests/v1", b"not json", 400, "MANIFEST_INVALID"),
        ("PUT", "/v2/a/b/manifests/v1", b'{"mediaType":"text/plain"}', 400, "MANIFEST_INVALID"),
        ("DELETE", "/v2/a/b/blobs/" + digests.of_bytes(b"x"), b"", 405, "UNSUPPORTED"),
        ("PATCH", "/v2/a/b/blobs/uploads/0123", b"x", 404, "BLOB_UPLOAD_UNKNOWN"),
        ("GET", "/v2/_catalog?n=x", b"", 400, "PAGINATION_NUMBER_INVALID"),
        ("GET", "/v2/nowhere", b"", 404, "NOT_FOUND"),
    ],
)
async def test_errors_use_the_spec_format(
    call: InProcess, method: str, target: str, body: bytes, status: int, code: str
) -> None:
    got_status, headers, got_body = await call(method, target, body)
    assert (got_status, error_code(got_body)) == (status, code)
    assert headers["content-type"] == "application/json"


async def test_unexpected_failures_answer_500_without_a_traceback(
    call: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object) -> list[str]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(call.app.store, "list_repositories", explode)
    status, _, body = await call("GET", "/v2/_catalog")
    assert (status, error_code(body)) == (500, "UNKNOWN")
    assert b"secret" not in body and b"Traceback" not in body


async def test_tags_and_catalog_paginate_with_a_link_header(call: InProcess) -> None:
    for tag in ("a", "b", "c"):
        await push_image(call, "x/y", tag)
    await push_image(call, "z", "latest")
    status, headers, body = await call("GET", "/v2/x/y/tags/list?n=2")
    assert status == 200
    assert orjson.loads(body) == {"name": "x/y", "tags": ["a", "b"]}
    assert headers["link"] == '</v2/x/y/tags/list?n=2&last=b>; rel="next"'
    _, headers, body = await call("GET", "/v2/x/y/tags/list?n=2&last=b")
    assert orjson.loads(body)["tags"] == ["c"] and "link" not in headers
    _, _, body = await call("GET", "/v2/_catalog")
    assert orjson.loads(body) == {"repositories": ["x/y", "z"]}


async def test_deleting_a_manifest(call: InProcess) -> None:
    digest, _ = await push_image(call, "a/b", "v1")
    assert (await call("DELETE", f"/v2/a/b/manifests/{digest}"))[0] == 202
    status, _, body = await call("GET", "/v2/a/b/manifests/v1")
    assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN")
