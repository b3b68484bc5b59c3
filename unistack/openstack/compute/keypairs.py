"""Keypairs (`/os-keypairs`): a user's SSH public keys, imported or generated, as Nova v2.1.

Keypairs belong to the user who made them (names are unique per user); the object lives in
the namespace of the project the user was scoped to. Without a `public_key` Nova generates an
RSA key and returns the private half once. The fingerprint is OpenSSH's MD5 form
(`aa:bb:...`) of the key blob; a key that does not parse is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import Duplicate, spec_of
from unistack.openstack.auth import AuthContext, require_project
from unistack.openstack.compute.service import ComputeService, now_text
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    conflict,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
_NAME = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")
DEFAULT_KEYPAIR_QUOTA = 100


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint of an OpenSSH public key line; 400 when it is not one."""
    try:
        key = serialization.load_ssh_public_key(public_key.strip().encode())
        blob = base64.b64decode(public_key.strip().split()[1])
    except (ValueError, IndexError, binascii.Error, TypeError) as exc:
        raise bad_request("Keypair data is invalid: failed to generate fingerprint") from exc
    del key
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def generate() -> tuple[str, str]:
    """A new RSA key: (private key PEM, OpenSSH public key line)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pem, f"{public.decode()} Generated-by-Nova"


class Keypairs:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-keypairs", self.list_keypairs, methods=["GET"]),
            Route("/v2.1/os-keypairs", self.create_keypair, methods=["POST"]),
            Route("/v2.1/os-keypairs/{name}", self.show_keypair, methods=["GET"]),
            Route("/v2.1/os-keypairs/{name}", self.delete_keypair, methods=["DELETE"]),
        ]

    def owned(self, user_id: str, name: str) -> Obj:
        found = self.records.indexed(kinds.KEYPAIRS, "owner", f"{user_id}/{name}")
        if not found:
            raise not_found(f"Keypair {name} not found for user {user_id}")
        return found[0]

    def _user(self, context: AuthContext, request: Request) -> str:
        wanted = request.query_params.get("user_id")
        return wanted if wanted and context.is_admin else context.user_id

    async def list_keypairs(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        user_id = self._user(context, request)
        mine = [
            spec_of(obj)
            for obj in self.records.all(kinds.KEYPAIRS)
            if spec_of(obj).get("user_id") == user_id
        ]
        mine.sort(key=lambda spec: str(spec["name"]))
        fields = ("name", "public_key", "fingerprint")
        items = [{"keypair": {k: spec[k] for k in fields}} for spec in mine]
        return json_response({"keypairs": items})

    async def show_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        obj = self.owned(self._user(context, request), request.path_params["name"])
        return json_response({"keypair": _detail(obj)})

    async def delete_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        obj = self.owned(self._user(context, request), request.path_params["name"])
        await self.records.delete(kinds.KEYPAIRS, obj["metadata"]["name"])
        return Response(status_code=202)

    async def create_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = require_project(context)
        body = (await read_json(request)).get("keypair")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute keypair.")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255 or not _NAME.match(name):
            raise bad_request(f"Invalid input for field/attribute name. Value: {name}.")
        self._check_quota(context.user_id)
        answer = self._key_material(body.get("public_key"))
        if self.records.indexed(kinds.KEYPAIRS, "owner", f"{context.user_id}/{name}"):
            raise conflict(f"Key pair '{name}' already exists.")
        spec = {
            "name": name,
            "user_id": context.user_id,
            "project_id": project_id,
            "public_key": answer["public_key"],
            "fingerprint": answer["fingerprint"],
            "type": "ssh",
            "created_at": now_text(),
        }
        try:
            await self.records.create(kinds.KEYPAIRS, str(uuid.uuid4()), spec)
        except Duplicate as exc:
            raise conflict(f"Key pair '{name}' already exists.") from exc
        return json_response({"keypair": {"name": name, "user_id": context.user_id, **answer}})

    def _key_material(self, public_key: Any) -> Obj:
        if public_key is None:
            private, public = generate()
            return {
                "public_key": public,
                "fingerprint": fingerprint(public),
                "private_key": private,
            }
        if not isinstance(public_key, str) or not public_key.strip():
            raise bad_request("Keypair data is invalid: failed to generate fingerprint")
        return {"public_key": public_key, "fingerprint": fingerprint(public_key)}

    def _check_quota(self, user_id: str) -> None:
        count = sum(
            1 for obj in self.records.all(kinds.KEYPAIRS) if spec_of(obj).get("user_id") == user_id
        )
        if count >= DEFAULT_KEYPAIR_QUOTA:
            raise OpenStackError(403, "Quota exceeded, too many key pairs.")


def _detail(obj: Obj) -> Obj:
    spec = spec_of(obj)
    return {
        "name": spec["name"],
        "public_key": spec["public_key"],
        "fingerprint": spec["fingerprint"],
        "user_id": spec["user_id"],
        "deleted": False,
        "created_at": spec.get("created_at") or now_text(),
        "updated_at": None,
        "deleted_at": None,
        "id": kinds.integer_id(obj["metadata"]["name"]),
    }
