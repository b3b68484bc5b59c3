"""Image references parse as Docker parses them, onto our default registry."""

from __future__ import annotations

import pytest

from unistack.images import reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "reg:1", "library/busybox", "latest", None),
        ("busybox:1.36", "reg:1", "library/busybox", "1.36", None),
        ("foo/bar:1.2", "reg:1", "foo/bar", "1.2", None),
        ("host:5000/x/y@" + DIGEST, "host:5000", "x/y", None, DIGEST),
        ("name:tag@" + DIGEST, "reg:1", "library/name", "tag", DIGEST),
        ("localhost/app", "localhost", "app", "latest", None),
        ("registry.example.com/a/b/c", "registry.example.com", "a/b/c", "latest", None),
        ("a_b-c__d/e.f", "reg:1", "a_b-c__d/e.f", "latest", None),
    ],
)
def test_parse_fills_in_docker_defaults(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = reference.parse(text, default_registry="reg:1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_target_prefers_the_digest() -> None:
    assert reference.parse("x:1@" + DIGEST).target == DIGEST
    assert reference.parse("x:1").target == "1"


def test_str_is_the_fully_qualified_reference() -> None:
    assert str(reference.parse("busybox")) == f"{reference.DEFAULT_REGISTRY}/library/busybox:latest"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        (" busybox", "spaces"),
        ("BusyBox", "lowercase"),
        ("busybox@sha256:abc", "digest"),
        ("busybox:-bad", "tag"),
        ("foo//bar", "repository"),
        ("foo/-bar", "repository"),
        ("bad_host:99999x/foo", "registry host"),
        ("x" * 300, "repository"),
    ],
)
def test_malformed_references_are_refused_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        reference.parse(text)
