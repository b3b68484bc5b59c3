"""The Keystone v3 API over the identity objects, against the real in-process API server.

The app is the one the gateway mounts at /identity; requests go through the ASGI interface
without a socket. Password hashing runs at bcrypt cost 4 to keep the tests fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.iaas import crds
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import BootstrapSettings, CatalogEntry, bootstrap
from unistack.iaas.identity.directory import Directory
from unistack.openstack.identity.app import create_app
from unistack.openstack.identity.service import IdentityService, IdentitySettings
from unistack.tokens import TokenCodec

Obj = dict[str, Any]
PASSWORD = "secret-admin-password"


@dataclass
class Keystone:
    transport: AsgiTransport
    directory: Directory

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = {"content-type": "application/json", **(headers or {})}
        if token:
            sent["x-auth-token"] = token
        raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
        response = await self.transport.request(method, path, body=raw, headers=sent, params=params)
        data = orjson.loads(response.body) if response.body else None
        return response.status, data, {k.lower(): v for k, v in response.headers.items()}

    async def token(
        self, user: str, password: str, project: str | None = "admin", **scope: Any
    ) -> tuple[str, Obj]:
        body = password_auth(user, password, project, **scope)
        status, data, headers = await self.call("POST", "/v3/auth/tokens", body)
        assert status == 201, data
        return headers["x-subject-token"], data["token"]


def password_auth(user: str, password: str, project: str | None = "admin", **scope: Any) -> Obj:
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
    }
    auth: Obj = {"identity": identity}
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    elif scope:
        auth["scope"] = scope
    return {"auth": auth}


@pytest.fixture
async def keystone(client: Client, tmp_path: Path) -> AsyncIterator[Keystone]:
    await crds.install(client, kinds.ALL)
    catalog = [CatalogEntry("identity", "keystone", "http://unistack.local/identity")]
    await bootstrap(client, BootstrapSettings(PASSWORD, services=catalog, hash_rounds=4))
    directory = Directory(client)
    await directory.start()
    codec = TokenCodec([Fernet.generate_key()])
    service = IdentityService(client, directory, codec, IdentitySettings(hash_rounds=4))
    yield Keystone(AsgiTransport(create_app(service)), directory)
    await directory.stop()


async def test_version_documents(keystone: Keystone) -> None:
    status, body, headers = await keystone.call("GET", "/")
    assert status == 300
    assert body["versions"]["values"][0]["id"] == "v3.14"
    assert headers["x-openstack-request-id"].startswith("req-")
    status, body, _ = await keystone.call("GET", "/v3")
    assert status == 200 and body["version"]["status"] == "stable"
    assert body["version"]["links"][0]["href"].endswith("/v3/")


async def test_admin_token_has_roles_catalog_and_validates(keystone: Keystone) -> None:
    token, body = await keystone.token("admin", PASSWORD)
    assert body["project"]["name"] == "admin"
    assert {r["name"] for r in body["roles"]} == {"admin", "manager", "member", "reader"}
    identity = next(e for e in body["catalog"] if e["type"] == "identity")
    assert {e["interface"] for e in identity["endpoints"]} == {"public", "internal", "admin"}
    assert body["expires_at"].endswith("Z") and body["methods"] == ["password"]
    status, checked, headers = await keystone.call(
        "GET", "/v3/auth/tokens", token=token, headers={"x-subject-token": token}
    )
    assert status == 200 and checked["token"]["user"]["id"] == body["user"]["id"]
    assert headers["x-subject-token"] == token
    status, _, _ = await keystone.call(
        "HEAD", "/v3/auth/tokens", token=token, headers={"x-subject-token": token}
    )
    assert status == 200


async def test_wrong_password_and_unknown_user_look_the_same(keystone: Keystone) -> None:
    wrong = await keystone.call("POST", "/v3/auth/tokens", password_auth("admin", "nope"))
    unknown = await keystone.call("POST", "/v3/auth/tokens", password_auth("ghost", "nope"))
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert wrong[1]["error"]["title"] == "Unauthorized"


async def test_bad_requests_get_keystone_errors(keystone: Keystone) -> None:
    token, _ = await keystone.token("admin", PASSWORD)
    status, body, _ = await keystone.call("POST", "/v3/auth/tokens", b"{not json")
    assert status == 400 and body["error"]["code"] == 400
    status, body, _ = await keystone.call("POST", "/v3/projects", {"project": {}}, token)
    assert status == 400 and "name" in body["error"]["message"]
    big = {"project": {"name": "x", "description": "y" * 200_000}}
    status, body, _ = await keystone.call("POST", "/v3/projects", big, token)
    assert status == 413
    status, body, _ = await keystone.call("GET", "/v3/projects", token="garbage")
    assert status == 401
    status, body, _ = await keystone.call("GET", "/v3/projects/nope", token=token)
    assert status == 404 and body["error"]["message"] == "Could not find project: nope."
    status, body, _ = await keystone.call("GET", "/v3/no-such-thing", token=token)
    assert status == 404 and body["error"]["code"] == 404
    names = [p["spec"]["name"] for p in keystone.directory.all(kinds.PROJECTS)]
    assert names == ["admin"]  # nothing half-written


async def test_project_user_role_assignment_and_the_new_users_token(keystone: Keystone) -> None:
    admin, _ = await keystone.token("admin", PASSWORD)
    status, body, _ = await keystone.call(
        "POST", "/v3/projects", {"project": {"name": "demo", "description": "d"}}, admin
    )
    assert status == 201, body
    project = body["project"]
    assert project["domain_id"] == "default" and project["parent_id"] == "default"
    status, body, _ = await keystone.call(
        "POST", "/v3/projects", {"project": {"name": "demo"}}, admin
    )
    assert status == 409
    user_body = {"user": {"name": "alice", "password": "pw-alice", "email": "a@example.org"}}
    status, body, _ = await keystone.call("POST", "/v3/users", user_body, admin)
    assert status == 201 and "password" not in body["user"] and "password_hash" not in body["user"]
    assert body["user"]["email"] == "a@example.org"
    user = body["user"]
    status, body, _ = await keystone.call(
        "GET", "/v3/roles", token=admin, params={"name": "member"}
    )
    member = body["roles"][0]
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{member['id']}"
    # No role yet: a token for the project is refused.
    status, _, _ = await keystone.call(
        "POST", "/v3/auth/tokens", password_auth("alice", "pw-alice", "demo")
    )
    assert status == 401
    assert (await keystone.call("PUT", grant, token=admin))[0] == 204
    assert (await keystone.call("HEAD", grant, token=admin))[0] == 204
    token, body = await keystone.token("alice", "pw-alice", "demo")
    assert {r["name"] for r in body["roles"]} == {"member", "reader"}
    status, body, _ = await keystone.call(
        "GET", "/v3/role_assignments", token=admin, params={"user.id": user["id"], "effective": ""}
    )
    assert {a["role"]["id"] for a in body["role_assignments"]} >= {member["id"]}
    # A member cannot administer.
    status, body, _ = await keystone.call("GET", "/v3/users", token=token)
    assert status == 403 and "identity:list_users" in body["error"]["message"]
    # But can see their own projects and themselves.
    status, body, _ = await keystone.call("GET", "/v3/auth/projects", token=token)
    assert [p["name"] for p in body["projects"]] == ["demo"]
    assert (await keystone.call("GET", f"/v3/users/{user['id']}", token=token))[0] == 200
    # Taking the role away invalidates the token at once.
    assert (await keystone.call("DELETE", grant, token=admin))[0] == 204
    status, _, _ = await keystone.call(
        "GET", "/v3/auth/tokens", token=admin, headers={"x-subject-token": token}
    )
    assert status == 404


async def test_revoked_token_and_changed_password_stop_working(keystone: Keystone) -> None:
    admin, _ = await keystone.token("admin", PASSWORD)
    second, _ = await keystone.token("admin", PASSWORD)
    assert (
        await keystone.call(
            "DELETE", "/v3/auth/tokens", token=admin, headers={"x-subject-token": second}
        )
    )[0] == 204
    status, _, _ = await keystone.call(
        "GET", "/v3/auth/tokens", token=admin, headers={"x-subject-token": second}
    )
    assert status == 404
    status, body, _ = await keystone.call(
        "POST", "/v3/users", {"user": {"name": "bob", "password": "one"}}, admin
    )
    bob = body["user"]["id"]
    bob_token, _ = await keystone.token("bob", "one", None)
    change = {"user": {"password": "two", "original_password": "one"}}
    assert (await keystone.call("POST", f"/v3/users/{bob}/password", change, bob_token))[0] == 204
    status, _, _ = await keystone.call(
        "GET", "/v3/auth/tokens", token=admin, headers={"x-subject-token": bob_token}
    )
    assert status == 404
    await keystone.token("bob", "two", None)


async def test_implied_roles_and_group_grants(keystone: Keystone) -> None:
    admin, body = await keystone.token("admin", PASSWORD)
    project_id = body["project"]["id"]
    roles = {}
    for name in ("observer", "auditor"):
        status, created, _ = await keystone.call(
            "POST", "/v3/roles", {"role": {"name": name}}, admin
        )
        assert status == 201
        roles[name] = created["role"]["id"]
    path = f"/v3/roles/{roles['auditor']}/implies/{roles['observer']}"
    assert (await keystone.call("PUT", path, token=admin))[0] == 201
    loop = f"/v3/roles/{roles['observer']}/implies/{roles['auditor']}"
    assert (await keystone.call("PUT", loop, token=admin))[0] == 403
    _, group, _ = await keystone.call("POST", "/v3/groups", {"group": {"name": "ops"}}, admin)
    _, user, _ = await keystone.call(
        "POST", "/v3/users", {"user": {"name": "carol", "password": "c"}}, admin
    )
    group_id, user_id = group["group"]["id"], user["user"]["id"]
    assert (await keystone.call("PUT", f"/v3/groups/{group_id}/users/{user_id}", token=admin))[
        0
    ] == 204
    grant = f"/v3/projects/{project_id}/groups/{group_id}/roles/{roles['auditor']}"
    assert (await keystone.call("PUT", grant, token=admin))[0] == 204
    _, token = await keystone.token("carol", "c")
    assert {r["name"] for r in token["roles"]} == {"auditor", "observer"}
    status, body, _ = await keystone.call("GET", "/v3/role_inferences", token=admin)
    assert any(r["prior_role"]["id"] == roles["auditor"] for r in body["role_inferences"])


async def test_domain_rules_and_application_credentials(keystone: Keystone) -> None:
    admin, _ = await keystone.token("admin", PASSWORD)
    _, body, _ = await keystone.call("POST", "/v3/domains", {"domain": {"name": "other"}}, admin)
    domain = body["domain"]["id"]
    status, body, _ = await keystone.call("DELETE", f"/v3/domains/{domain}", token=admin)
    assert status == 403 and "disable" in body["error"]["message"]
    patch = {"domain": {"enabled": False}}
    assert (await keystone.call("PATCH", f"/v3/domains/{domain}", patch, admin))[0] == 200
    assert (await keystone.call("DELETE", f"/v3/domains/{domain}", token=admin))[0] == 204
    _, token_body = await keystone.token("admin", PASSWORD)
    user_id = token_body["user"]["id"]
    credential = {"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}}
    status, body, _ = await keystone.call(
        "POST", f"/v3/users/{user_id}/application_credentials", credential, admin
    )
    assert status == 201, body
    secret, credential_id = (
        body["application_credential"]["secret"],
        body["application_credential"]["id"],
    )
    login = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": credential_id, "secret": secret},
            }
        }
    }
    status, body, _ = await keystone.call("POST", "/v3/auth/tokens", login)
    assert status == 201, body
    assert {r["name"] for r in body["token"]["roles"]} == {"reader"}
    assert body["token"]["application_credential"]["id"] == credential_id
    wrong = orjson.loads(orjson.dumps(login))
    wrong["auth"]["identity"]["application_credential"]["secret"] = "x"
    assert (await keystone.call("POST", "/v3/auth/tokens", wrong))[0] == 401


async def test_concurrent_token_issue(keystone: Keystone) -> None:
    results = await asyncio.gather(*(keystone.token("admin", PASSWORD) for _ in range(4)))
    assert len({token for token, _ in results}) == 4
