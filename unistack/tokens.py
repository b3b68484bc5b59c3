"""Keystone-style Fernet tokens: what a token says, sealed so any holder of the keys can read it.

Identity issues a token by sealing its claims (who, how they authenticated, the scope, when it
was issued and expires, its audit ids) with Fernet (AES-128-CBC + HMAC-SHA256, from the
`cryptography` library), as Keystone's fernet provider does. Nothing is stored per token, so
every service (and later the Kubernetes API) validates a token locally with the same key
repository; what can change after issue (the user, the project, role assignments,
revocations) is checked against the identity objects at validation time.

The key repository is Keystone's layout: files named 0, 1, 2, ... each holding one urlsafe
base64 Fernet key; the highest number is the primary key, which seals new tokens, and every key
opens tokens (`MultiFernet`), so keys can be rotated without invalidating tokens in flight:
`rotate_keys` does it as `keystone-manage fernet_rotate` does, and `RepositoryCodec` follows
the repository's files so readers pick the new keys up without a restart.
The claims are a compact JSON array rather than Keystone's msgpack, as nothing outside
unistack reads inside a token. Besides Keystone's fields they carry the trust a token is
scoped to and, for readers that cannot see the identity objects (the Kubernetes API), the
user's name and role names as they were at issue; OpenStack services recompute roles.
Standalone: only `cryptography` and `orjson`.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

FORMAT_VERSION = 1
METHODS = ("password", "token", "application_credential", "totp", "mapped")
SYSTEM_ALL = "all"
MAX_TOKEN_LENGTH = 4096  # role names make a token longer than Keystone's ~200 chars


class TokenError(Exception):
    """The token is not one these keys sealed, or not a token at all."""


def new_audit_id() -> str:
    """Keystone's audit id: 16 random bytes, urlsafe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token asserts. Times are Unix seconds (float: sub-second, so a revocation in the
    same second as an issue does not take the newer token with it)."""

    user_id: str
    methods: tuple[str, ...]
    issued_at: float
    expires_at: float
    audit_ids: tuple[str, ...] = field(default_factory=lambda: (new_audit_id(),))
    project_id: str | None = None
    domain_id: str | None = None
    system: str | None = None  # "all" for a system-scoped token
    app_cred_id: str | None = None
    trust_id: str | None = None  # for a trust-scoped token (OS-TRUST)
    user_name: str | None = None  # as at issue, for the Kubernetes API
    role_names: tuple[str, ...] = ()  # as at issue (implied ones included)

    @property
    def scope(self) -> str:
        if self.project_id:
            return "project"
        if self.domain_id:
            return "domain"
        if self.system:
            return "system"
        return "unscoped"


def _pack(claims: Claims) -> bytes:
    return orjson.dumps(
        [
            FORMAT_VERSION,
            claims.user_id,
            list(claims.methods),
            round(claims.issued_at, 6),
            round(claims.expires_at, 6),
            list(claims.audit_ids),
            claims.project_id,
            claims.domain_id,
            claims.system,
            claims.app_cred_id,
            claims.trust_id,
            claims.user_name,
            list(claims.role_names),
        ]
    )


def _unpack(data: bytes) -> Claims:
    try:
        fields = orjson.loads(data)
        if len(fields) == 10:  # tokens sealed before trusts and names were carried
            fields += [None, None, []]
        version, user, methods, issued, expires, audits, project, domain, system, cred = fields[:10]
        trust, user_name, role_names = fields[10:]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise TokenError("malformed token payload") from exc
    if version != FORMAT_VERSION or not isinstance(user, str):
        raise TokenError("unknown token format")
    return Claims(
        user,
        tuple(methods),
        float(issued),
        float(expires),
        tuple(audits),
        project,
        domain,
        system,
        cred,
        trust,
        user_name,
        tuple(role_names),
    )


def revokes(event: Mapping[str, Any], claims: Claims) -> bool:
    """Whether a revocation event covers the token: Keystone's events name an audit id or a
    trust (every token of it), or a user's or a project's tokens issued up to a time."""
    if event.get("audit_id") and event["audit_id"] in claims.audit_ids:
        return True
    if event.get("trust_id") and event["trust_id"] == claims.trust_id:
        return True
    if claims.issued_at > float(event.get("issued_before") or 0):
        return False
    return bool(
        (event.get("user_id") and event["user_id"] == claims.user_id)
        or (event.get("project_id") and event["project_id"] == claims.project_id)
    )


class TokenCodec:
    """Seals claims into tokens and opens them, with a list of Fernet keys (primary first)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a token codec needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, claims: Claims) -> str:
        # Keystone strips the base64 padding: tokens go in headers and URLs.
        return self._fernet.encrypt(_pack(claims)).decode().rstrip("=")

    def open(self, token: str) -> Claims:
        """The token's claims; `TokenError` if these keys did not seal it. Expiry and
        revocation are the caller's to check (they need the clock and the identity objects)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("not a token")
        padded = token + "=" * (-len(token) % 4)
        try:
            return _unpack(self._fernet.decrypt(padded.encode()))
        except (InvalidToken, ValueError) as exc:
            raise TokenError("token not sealed by this cloud's keys") from exc


class RepositoryCodec(TokenCodec):
    """A `TokenCodec` over a key repository, read again when its files change (looked at at
    most every `interval` seconds), so a rotation takes effect without a restart. A
    repository found empty keeps the keys last read."""

    def __init__(self, directory: Path, interval: float = 1.0) -> None:
        self.directory = directory
        self.interval = interval
        self._checked = 0.0
        self._signature: tuple[tuple[str, int], ...] = ()
        super().__init__(load_keys(directory))
        self._signature = _signature(directory)
        self._checked = time.monotonic()

    def _follow(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.interval:
            return
        self._checked = now
        signature = _signature(self.directory)
        if signature == self._signature:
            return
        keys = load_keys(self.directory)
        if keys:
            super().__init__(keys)
            self._signature = signature

    def seal(self, claims: Claims) -> str:
        self._follow()
        return super().seal(claims)

    def open(self, token: str) -> Claims:
        self._follow()
        return super().open(token)


def _signature(directory: Path) -> tuple[tuple[str, int], ...]:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in _key_files(directory)))
    except FileNotFoundError:  # renamed while we looked: a rotation under way
        return ()


def ensure_key_repository(directory: Path) -> None:
    """Create Keystone's key layout with two keys (staged 0, primary 1) if absent."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if any(_key_files(directory)):
        return
    for index in (0, 1):
        path = directory / str(index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())


def rotate_keys(directory: Path, max_active: int = 3) -> tuple[int, list[int]]:
    """Keystone's `fernet_rotate`: the staged key (0), which every reader already has, becomes
    the primary (the highest number plus one), a new staged key is written as 0, and the
    oldest secondary keys go until `max_active` remain (staged and primary included). Tokens
    sealed with a key still there stay valid. Returns the new primary's number and the
    numbers removed. Each file is written whole before it is renamed into place."""
    if max_active < 2:
        raise ValueError("a key repository keeps at least a staged and a primary key")
    ensure_key_repository(directory)
    numbers = sorted(int(p.name) for p in _key_files(directory))
    primary = max(numbers) + 1
    os.replace(directory / "0", directory / str(primary))
    _write_key(directory / "0")
    secondaries = [n for n in numbers if n not in (0, max(numbers))] + [max(numbers)]
    keep = max_active - 2  # besides the staged key and the new primary
    removed = secondaries[: max(len(secondaries) - keep, 0)]
    for number in removed:
        (directory / str(number)).unlink()
    return primary, removed


def _write_key(path: Path) -> None:
    candidate = path.with_name(f".{path.name}.new")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(candidate, path)


def _key_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []


def load_keys(directory: Path) -> list[bytes]:
    """The repository's keys, primary (highest number) first."""
    files = sorted(_key_files(directory), key=lambda p: int(p.name), reverse=True)
    return [path.read_bytes().strip() for path in files]
