"""What the identity handlers share: the API client, the directory, the token codec, and the
writes (create, update with compare-and-swap, delete), each answered only once the
directory shows it (read-your-writes), so a client that creates then lists sees its object."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from unistack.client.api import AlreadyExists, Client, Conflict, NotFound
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import new_object
from unistack.iaas.identity.directory import Directory
from unistack.openstack.auth import AuthContext, TokenValidator
from unistack.openstack.web import conflict, not_found
from unistack.tokens import TokenCodec

Obj = dict[str, Any]
UPDATE_ATTEMPTS = 5


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

    async def create(self, kind: Kind, object_id: str, spec: Obj, what: str) -> Obj:
        name = kinds.object_name(object_id)
        if name != object_id:
            spec = {**spec, "id": object_id}
        try:
            created = await self.client.create(kind.ref, new_object(kind, name, spec))
        except AlreadyExists as exc:
            raise conflict(
                f"Conflict occurred attempting to store {what} - Duplicate ID, {object_id}."
            ) from exc
        await self.directory.settle(kind, created)
        return created

    async def update(
        self, kind: Kind, object_id: str, change: Callable[[Obj], None], what: str
    ) -> Obj:
        """Apply `change` to a copy of the object's spec and write it (retried on conflicts)."""
        for attempt in range(UPDATE_ATTEMPTS):
            current = self.get(kind, object_id, what)
            updated = {**current, "spec": dict(current.get("spec") or {})}
            change(updated["spec"])
            try:
                written = await self.client.update(kind.ref, updated)
            except Conflict:
                await asyncio.sleep(0.02 * (attempt + 1))
                continue
            except NotFound as exc:
                raise not_found(f"Could not find {what}: {object_id}.") from exc
            await self.directory.settle(kind, written)
            return written
        raise conflict(f"{what} {object_id} is being changed by someone else; try again.")

    async def delete(self, kind: Kind, object_id: str) -> None:
        name = kinds.object_name(object_id)
        with contextlib.suppress(NotFound):
            await self.client.delete(kind.ref, name)
        await self.directory.settle(kind, None, name)
