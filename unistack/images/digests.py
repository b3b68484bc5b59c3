"""Content digests (`sha256:<64 hex>`): the names of everything in the store and on the wire.

Only sha256 is accepted; other algorithms are valid in the OCI grammar but no client we
serve produces them, and accepting them would mean paths we never test.
"""

from __future__ import annotations

import hashlib
import re

ALGORITHM = "sha256"
_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")


class DigestError(ValueError):
    """A string is not a sha256 digest we accept."""


def hex_of(digest: str) -> str:
    """Return the hex part of a `sha256:<hex>` digest, or raise DigestError."""
    match = _DIGEST.match(digest)
    if match is None:
        raise DigestError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex>")
    return match.group(1)


def is_digest(value: str) -> bool:
    """Tell whether `value` is a well-formed sha256 digest."""
    return _DIGEST.match(value) is not None


def of_bytes(data: bytes) -> str:
    """The digest of a byte string."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def from_hex(hexdigest: str) -> str:
    """The digest string for a sha256 hex value."""
    return f"{ALGORITHM}:{hexdigest}"
