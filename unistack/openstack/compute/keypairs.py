"""Keypairs (`/os-keypairs`): a user's SSH public keys, imported or generated, as Nova v2.1.

Keypairs belong to the user who made them (names are unique per user); the object lives in
the namespace of the project the user was scoped to. Without a `public_key` Nova generates an
RSA key and returns the private half once (until 2.92, which requires the key). The
fingerprint is OpenSSH's MD5 form (`aa:bb:...`) of the key blob; a key that does not parse
is a 400. From 2.2 a keypair has a `type` (`ssh`, or `x509`: a PEM certificate, made
self-signed when none is given) and its
creation answers 201; from 2.10 an admin may list, show, make and delete another user's
keypairs (`user_id`); from 2.35 the list is paged (`limit`, `marker`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import Duplicate, spec_of
from unistack.openstack.auth import AuthContext, require_admin, require_project
from unistack.openstack.compute.service import (
    ComputeService,
    microversion,
    next_link,
    now_text,
    page,
)
from unistack.openstack.microversion import Version
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


def generate_x509() -> tuple[str, str]:
    """A new RSA key and a self-signed certificate for it, as Nova makes an x509 keypair:
    (private key PEM, certificate PEM)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Generated-by-Nova")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


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
        """Whose keypairs: from 2.10 an admin may name another user (`user_id`)."""
        wanted = request.query_params.get("user_id")
        if not wanted or wanted == context.user_id or not microversion(request).at_least("2.10"):
            return context.user_id
        require_admin(context, "os_compute_api:os-keypairs:index")
        return wanted

    async def list_keypairs(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        user_id = self._user(context, request)
        version = microversion(request)
        mine = [
            spec_of(obj)
            for obj in self.records.all(kinds.KEYPAIRS)
            if spec_of(obj).get("user_id") == user_id
        ]
        mine.sort(key=lambda spec: str(spec["name"]))
        if version.at_least("2.35"):
            mine, marker = page(mine, request, key=lambda spec: str(spec["name"]))
        else:
            marker = None
        items = [{"keypair": _entry(spec, version)} for spec in mine]
        body: Obj = {"keypairs": items}
        if marker is not None:
            body["keypairs_links"] = next_link(request, "os-keypairs", marker)
        return json_response(body)

    async def show_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        obj = self.owned(self._user(context, request), request.path_params["name"])
        return json_response({"keypair": _detail(obj, microversion(request))})

    async def delete_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        obj = self.owned(self._user(context, request), request.path_params["name"])
        await self.records.delete(kinds.KEYPAIRS, obj["metadata"]["name"])
        return Response(status_code=204 if microversion(request).at_least("2.2") else 202)

    async def create_keypair(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = require_project(context)
        body = (await read_json(request)).get("keypair")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute keypair.")
        version = microversion(request)
        _check_create_keys(body, version)
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255 or not _NAME.match(name):
            raise bad_request(f"Invalid input for field/attribute name. Value: {name}.")
        key_type = _key_type(body.get("type", "ssh"))
        user_id = self._owner(context, body.get("user_id"))
        self._check_quota(user_id)
        if version.at_least("2.92") and body.get("public_key") is None:
            raise bad_request("Invalid input for field/attribute keypair. 'public_key' is required")
        answer = self._key_material(body.get("public_key"), key_type)
        if self.records.indexed(kinds.KEYPAIRS, "owner", f"{user_id}/{name}"):
            raise conflict(f"Key pair '{name}' already exists.")
        spec = {
            "name": name,
            "user_id": user_id,
            "project_id": project_id,
            "public_key": answer["public_key"],
            "fingerprint": answer["fingerprint"],
            "type": key_type,
            "created_at": now_text(),
        }
        try:
            await self.records.create(kinds.KEYPAIRS, str(uuid.uuid4()), spec)
        except Duplicate as exc:
            raise conflict(f"Key pair '{name}' already exists.") from exc
        shown = {"name": name, "user_id": user_id, **answer}
        if version.at_least("2.2"):
            shown["type"] = key_type
        return json_response({"keypair": shown}, 201 if version.at_least("2.2") else 200)

    def _owner(self, context: AuthContext, user_id: Any) -> str:
        """From 2.10 an admin may make a keypair for another user."""
        if user_id is None or user_id == context.user_id:
            return context.user_id
        require_admin(context, "os_compute_api:os-keypairs:create")
        return str(user_id)

    def _key_material(self, public_key: Any, key_type: str = "ssh") -> Obj:
        if public_key is None and key_type == "x509":
            private, certificate = generate_x509()
            answer = {"public_key": certificate, "fingerprint": x509_fingerprint(certificate)}
            return answer | {"private_key": private}
        if isinstance(public_key, str) and key_type == "x509":
            return {"public_key": public_key, "fingerprint": x509_fingerprint(public_key)}
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


_CREATE_KEYS_SINCE = (("2.1", "name"), ("2.1", "public_key"), ("2.2", "type"))


def _check_create_keys(body: Obj, version: Version) -> None:
    allowed = {key for minimum, key in _CREATE_KEYS_SINCE if version.at_least(minimum)}
    if version.at_least("2.10"):
        allowed.add("user_id")
    for key in body:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute keypair. Additional properties are not "
                f"allowed ('{key}' was unexpected)"
            )


def _key_type(value: Any) -> str:
    if value not in ("ssh", "x509"):
        raise bad_request(f"Invalid input for field/attribute type. Value: {value}.")
    return str(value)


def x509_fingerprint(text: str) -> str:
    """The SHA-1 fingerprint of a PEM certificate, as Nova shows an x509 keypair's."""
    try:
        cert = x509.load_pem_x509_certificate(text.encode())
    except ValueError as exc:
        raise bad_request("Keypair data is invalid: failed to generate fingerprint") from exc
    digest = cert.fingerprint(hashes.SHA1()).hex()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _entry(spec: Obj, version: Version) -> Obj:
    entry = {k: spec[k] for k in ("name", "public_key", "fingerprint")}
    if version.at_least("2.2"):
        entry["type"] = spec.get("type") or "ssh"
    return entry


def _detail(obj: Obj, version: Version) -> Obj:
    spec = spec_of(obj)
    shown = {
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
    if version.at_least("2.2"):
        shown["type"] = spec.get("type") or "ssh"
    return shown
