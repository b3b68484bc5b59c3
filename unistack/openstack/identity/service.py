"""What the identity handlers share: the API client, the directory, the token codec, and the
writes (create, update with compare-and-swap, delete), each answered only once the
directory shows it (read-your-writes), so a client that creates then lists sees its object;
and `revoke`, the revocation event Keystone records when tokens must stop working (a user's
or project's disabled or deleted, a password changed, a trust deleted)."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from unistack.client.api import Client
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds
from unistack.iaas.identity.directory import Directory
from unistack.iaas.records import Busy, Duplicate, Missing, Records
from unistack.openstack.auth import AuthContext, TokenValidator
from unistack.openstack.web import conflict, not_found
from unistack.tokens import TokenCodec

Obj = dict[str, Any]


@dataclass(frozen=True)
class IdentitySettings:
    token_ttl: float = 3600.0  # Keystone's [token] expiration
    hash_rounds: int = 12  # Keystone's [identity] password_hash_rounds for bcrypt


def new_id() -> str:
    return uuid.uuid4().hex


def iso_time(epoch: float) -> str:
    """Keystone's timestamp format: microseconds and a Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    value = text.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class IdentityService:
    client: Client
    directory: Directory
    codec: TokenCodec
    settings: IdentitySettings

    @functools.cached_property
    def validator(self) -> TokenValidator:
        return TokenValidator(self.codec, self.directory)

    def caller(self, request: Request) -> AuthContext:
        return self.validator.authenticate(request.headers.get("x-auth-token"))

    def get(self, kind: Kind, object_id: str | None, what: str) -> Obj:
        """An object by id, or Keystone's 404: "Could not find project: ID."."""
        found = self.directory.get(kind, object_id)
        if found is None:
            raise not_found(f"Could not find {what}: {object_id}.")
        return found

    @functools.cached_property
    def records(self) -> Records:
        """Writes through the directory's own informers, so each answers once they show it."""
        return Records(self.client, kinds.ALL, informers=self.directory.shared)

    async def create(self, kind: Kind, object_id: str, spec: Obj, what: str) -> Obj:
        name = kinds.object_name(object_id)
        if name != object_id:
            spec = {**spec, "id": object_id}
        try:
            return await self.records.create(kind, name, spec)
        except Duplicate as exc:
            raise conflict(
                f"Conflict occurred attempting to store {what} - Duplicate ID, {object_id}."
            ) from exc

    async def update(
        self, kind: Kind, object_id: str, change: Callable[[Obj], None], what: str
    ) -> Obj:
        """Apply `change` to a copy of the object's spec and write it (retried on conflicts)."""
        self.get(kind, object_id, what)
        try:
            return await self.records.update(
                kind, kinds.object_name(object_id), lambda obj: change(obj["spec"])
            )
        except Missing as exc:
            raise not_found(f"Could not find {what}: {object_id}.") from exc
        except Busy as exc:
            raise conflict(
                f"{what} {object_id} is being changed by someone else; try again."
            ) from exc

    async def delete(self, kind: Kind, object_id: str) -> None:
        with contextlib.suppress(Missing):
            await self.records.delete(kind, kinds.object_name(object_id))

    async def revoke(self, **match: str) -> None:
        """Tokens issued until now that match (`user_id`, `project_id`, `trust_id`) stop
        working, here and wherever else tokens are read (the Kubernetes API)."""
        spec: Obj = {"issued_before": time.time(), "user_id": None, **match}
        await self.create(kinds.REVOCATIONS, new_id(), spec, "revocation event")
