"""The image store: content addressing, verified uploads, atomic writes, named manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from unistack.images import digests
from unistack.images import store as storage


@pytest.fixture
def store(tmp_path: Path) -> storage.ImageStore:
    return storage.ImageStore(tmp_path / "store")


def test_blobs_are_stored_under_their_digest(store: storage.ImageStore) -> None:
    digest = store.put_blob(b"hello")
    assert digest == digests.of_bytes(b"hello")
    assert store.blob_path(digest) == store.root / "blobs" / "sha256" / digests.hex_of(digest)
    assert store.blob_size(digest) == 5
    with store.open_blob(digest) as handle:
        assert handle.read() == b"hello"


def test_put_blob_refuses_content_that_does_not_match_its_digest(
    store: storage.ImageStore,
) -> None:
    wrong = digests.of_bytes(b"other")
    with pytest.raises(storage.DigestMismatch):
        store.put_blob(b"hello", wrong)
    assert store.blob_size(wrong) is None
    assert list((store.root / "uploads").iterdir()) == []


def test_unknown_blob(store: storage.ImageStore) -> None:
    with pytest.raises(storage.BlobUnknown):
        store.open_blob(digests.of_bytes(b"absent"))
    with pytest.raises(storage.NameInvalid):
        store.blob_size("sha256:../../etc/passwd")


def test_chunked_upload_becomes_a_blob_when_the_digest_matches(
    store: storage.ImageStore,
) -> None:
    upload = store.start_upload()
    assert store.append_upload(upload, b"hel") == 3
    assert store.append_upload(upload, b"lo") == 5
    assert store.upload_size(upload) == 5
    digest = store.finish_upload(upload, digests.of_bytes(b"hello"))
    assert store.blob_path(digest).read_bytes() == b"hello"
    with pytest.raises(storage.UploadUnknown):
        store.upload_size(upload)


def test_upload_with_the_wrong_digest_never_becomes_visible(store: storage.ImageStore) -> None:
    upload = store.start_upload()
    store.append_upload(upload, b"hello")
    wrong = digests.of_bytes(b"bye")
    with pytest.raises(storage.DigestMismatch):
        store.finish_upload(upload, wrong)
    assert store.blob_size(wrong) is None
    assert store.blob_size(digests.of_bytes(b"hello")) is None


def test_cancelled_and_unknown_uploads(store: storage.ImageStore) -> None:
    upload = store.start_upload()
    store.cancel_upload(upload)
    with pytest.raises(storage.UploadUnknown):
        store.append_upload(upload, b"x")
    with pytest.raises(storage.UploadUnknown):
        store.upload_size("../../blobs")


def test_manifests_by_tag_and_digest_keep_their_media_type(store: storage.ImageStore) -> None:
    data = b'{"schemaVersion":2}'
    digest = store.put_manifest("library/busybox", "latest", data, "application/x-test")
    by_tag = store.get_manifest("library/busybox", "latest")
    by_digest = store.get_manifest("library/busybox", digest)
    assert by_tag == by_digest == storage.StoredManifest(digest, "application/x-test", data)
    assert store.blob_size(digest) == len(data)
    assert store.has_manifest("library/busybox", digest)
    assert not store.has_manifest("other/repo", digest)


def test_manifest_put_by_digest_must_match(store: storage.ImageStore) -> None:
    with pytest.raises(storage.DigestMismatch):
        store.put_manifest("a/b", digests.of_bytes(b"x"), b"y", "t")


def test_deleting_a_tag_keeps_the_manifest_but_deleting_the_digest_drops_its_tags(
    store: storage.ImageStore,
) -> None:
    digest = store.put_manifest("a/b", "one", b"{}", "t")
    store.put_manifest("a/b", "two", b"{}", "t")
    store.delete_manifest("a/b", "one")
    assert store.list_tags("a/b") == ["two"]
    assert store.get_manifest("a/b", digest).data == b"{}"
    store.delete_manifest("a/b", digest)
    assert store.list_tags("a/b") == []
    with pytest.raises(storage.ManifestUnknown):
        store.get_manifest("a/b", digest)


def test_listing_tags_and_repositories(store: storage.ImageStore) -> None:
    store.put_manifest("library/busybox", "latest", b"{}", "t")
    store.put_manifest("library/busybox", "1.0", b"{}", "t")
    store.put_manifest("x", "_manifests", b"{}", "t")
    assert store.list_tags("library/busybox") == ["1.0", "latest"]
    assert store.list_repositories() == ["library/busybox", "x"]
    with pytest.raises(storage.NameUnknown):
        store.list_tags("library/absent")


@pytest.mark.parametrize("name", ["../escape", "/abs", "Upper", "a//b", "a/_manifests"])
def test_malformed_repository_names_are_refused(store: storage.ImageStore, name: str) -> None:
    with pytest.raises(storage.NameInvalid):
        store.put_manifest(name, "latest", b"{}", "t")


def test_malformed_tags_are_refused(store: storage.ImageStore) -> None:
    with pytest.raises(storage.NameInvalid):
        store.put_manifest("a/b", "../x", b"{}", "t")


def test_atomic_writes_leave_no_temporaries(store: storage.ImageStore) -> None:
    store.put_blob(b"a")
    store.put_manifest("a/b", "t", b"{}", "t")
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
