"""The whole OpenStack gateway in-process, over the real in-process API server: what the
facade tests (compute, image, network, volume) call. No sockets; requests go through ASGI.

`Cloud.call` sends a request to a service path (`/image/v2/images`) with a token;
`Cloud.admin` is the bootstrap admin's token and `Cloud.tenant()` makes a project with a
member user and returns that user's token, for isolation tests. Passwords hash at bcrypt
cost 4 to keep the tests fast.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.openstack import gateway
from unistack.tokens import ensure_key_repository

Obj = dict[str, Any]
PASSWORD = "secret-admin-password"
_counter = itertools.count()


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes = b""


@dataclass
class Tenant:
    project_id: str
    user_id: str
    token: str


@dataclass
class Cloud:
    transport: AsgiTransport
    client: Client
    platform: gateway.Platform
    admin: str = ""
    admin_project_id: str = ""
    tenants: list[Tenant] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"content-type": "application/json", **(headers or {})}
        if token:
            sent["x-auth-token"] = token
        raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
        response = await self.transport.request(method, path, body=raw, headers=sent, params=params)
        lowered = {k.lower(): v for k, v in response.headers.items()}
        data: Any = None
        if response.body and "json" in lowered.get("content-type", ""):
            data = orjson.loads(response.body)
        return Reply(response.status, data, lowered, response.body)

    async def token(self, user: str, password: str, project: str, domain: str = "default") -> Obj:
        scope = {"project": {"name": project, "domain": {"id": domain}}}
        user_ref = {"name": user, "domain": {"id": domain}, "password": password}
        auth = {"identity": {"methods": ["password"], "password": {"user": user_ref}}}
        body = {"auth": {**auth, "scope": scope}}
        reply = await self.call("POST", "/identity/v3/auth/tokens", body)
        assert reply.status == 201, reply.body
        return {"token": reply.headers["x-subject-token"], **reply.body["token"]}

    async def tenant(self, role: str = "member") -> Tenant:
        """A new project with a new user holding `role` on it; the user's token."""
        name = f"tenant{next(_counter)}"
        reply = await self.call(
            "POST", "/identity/v3/projects", {"project": {"name": name}}, self.admin
        )
        project_id = reply.body["project"]["id"]
        body = {"user": {"name": name, "password": "pw", "default_project_id": project_id}}
        reply = await self.call("POST", "/identity/v3/users", body, self.admin)
        user_id = reply.body["user"]["id"]
        query = {"name": role}
        roles = await self.call("GET", "/identity/v3/roles", None, self.admin, params=query)
        role_id = roles.body["roles"][0]["id"]
        path = f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
        assert (await self.call("PUT", path, token=self.admin)).status == 204
        token = await self.token(name, "pw", name)
        tenant = Tenant(project_id, user_id, token["token"])
        self.tenants.append(tenant)
        return tenant


@pytest.fixture
async def cloud(client: Client, tmp_path: Path) -> AsyncIterator[Cloud]:
    keys = tmp_path / "fernet-keys"
    ensure_key_repository(keys)
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD)
    (tmp_path / "images").mkdir()
    settings = gateway.GatewaySettings(
        kubeconfig="",
        key_repository=str(keys),
        admin_password_file=str(password_file),
        public_url="http://unistack.local",
        hash_rounds=4,
        image_store=str(tmp_path / "images"),
    )
    app = gateway.create_app(settings, connect=lambda: client)
    async with app.router.lifespan_context(app):
        cloud = Cloud(AsgiTransport(app), client, app.state.platform)
        admin = await cloud.token("admin", PASSWORD, "admin")
        cloud.admin, cloud.admin_project_id = admin["token"], admin["project"]["id"]
        yield cloud
