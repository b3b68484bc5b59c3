"""Image references, parsed as Docker parses them, validated against the distribution grammar.

`busybox` means repository `library/busybox`, tag `latest`, on the default registry (ours is
`DEFAULT_REGISTRY`, not Docker Hub). The first path component names a registry only when it
looks like a host: it contains `.` or `:`, or is `localhost`. A reference may carry a tag, a
digest, or both (`name:tag@sha256:...`); when a digest is present it wins for fetching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unistack.images import digests

DEFAULT_REGISTRY = "127.0.0.1:5000"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: where the image lives and which version of it."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def target(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(reference: str, *, default_registry: str = DEFAULT_REGISTRY) -> Reference:
    """Parse `reference`; raise ValueError saying what is wrong with a malformed one."""
    if not reference or reference != reference.strip():
        raise ValueError(f"invalid reference format: {reference!r} is empty or has spaces")
    remainder, digest = _split_digest(reference)
    registry, path = _split_registry(remainder, default_registry)
    repository, tag = _split_tag(path)
    if registry == default_registry and "/" not in repository:
        repository = f"library/{repository}"
    _check_repository(repository, reference)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def is_repository_name(name: str) -> bool:
    """Tell whether `name` is a valid repository path (`library/busybox`)."""
    return len(name) <= MAX_NAME_LENGTH and REPOSITORY.match(name) is not None


def _split_digest(reference: str) -> tuple[str, str | None]:
    if "@" not in reference:
        return reference, None
    remainder, digest = reference.split("@", 1)
    if not digests.is_digest(digest):
        raise ValueError(f"invalid reference format: {reference!r} has a malformed digest")
    return remainder, digest


def _split_registry(reference: str, default_registry: str) -> tuple[str, str]:
    first, sep, rest = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.match(first):
            raise ValueError(f"invalid reference format: {first!r} is not a registry host")
        return first, rest
    return default_registry, reference


def _split_tag(path: str) -> tuple[str, str | None]:
    name, sep, tag = path.rpartition(":")
    if not sep or "/" in tag:
        return path, None
    if not TAG.match(tag):
        raise ValueError(f"invalid reference format: tag {tag!r} is malformed")
    return name, tag


def _check_repository(repository: str, reference: str) -> None:
    if any(c.isupper() for c in repository):
        raise ValueError(
            f"invalid reference format: repository name in {reference!r} must be lowercase"
        )
    if not is_repository_name(repository):
        raise ValueError(f"invalid reference format: {reference!r} has a malformed repository")
