"""`kubectl --token <keystone token>` against the API server, with the identity service
writing to that same server: tokens from `POST /v3/auth/tokens` are accepted, a non-admin
without RBAC bindings is refused (`test_kubectl_rbac` binds one), and revoking a token or
deleting its user ends it on the Kubernetes API too. The API server is built as `unistack
serve apiserver` builds it (`server.build_app`) and served by uvicorn with TLS on a loopback
port (`tls_apiserver`; kubectl sends bearer tokens only over TLS); kubectl is the real binary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_identity_api import PASSWORD, Keystone, password_auth
from tests.integration.tls_apiserver import KUBECTL, Served, serve_tls
from unistack.apiserver.server import ServerSettings, build_app
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.iaas import crds
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import BootstrapSettings, bootstrap
from unistack.iaas.identity.directory import Directory
from unistack.openstack.identity.app import create_app
from unistack.openstack.identity.service import IdentityService, IdentitySettings
from unistack.tokens import TokenCodec, ensure_key_repository, load_keys

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
STATIC_TOKEN = "unistack-test-static-token"


@dataclass
class Setup:
    keystone: Keystone
    served: Served

    async def kubectl(self, token: str, *args: str) -> tuple[int, str]:
        return await self.served.kubectl(token, *args)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    keys = tmp_path / "fernet-keys"
    ensure_key_repository(keys)
    token_file = tmp_path / "tokens.csv"
    token_file.write_text(f"{STATIC_TOKEN},unistack-admin,admin,system:masters\n")
    settings = ServerSettings(
        db_path=str(tmp_path / "store.db"), token_file=str(token_file), key_repository=str(keys)
    )
    app = build_app(settings)
    await app.start()
    client = Client(AsgiTransport(app, token=STATIC_TOKEN))
    await crds.install(client, kinds.ALL)
    await bootstrap(client, BootstrapSettings(PASSWORD, hash_rounds=4))
    directory = Directory(client)
    await directory.start()
    codec = TokenCodec(load_keys(keys))
    service = IdentityService(client, directory, codec, IdentitySettings(hash_rounds=4))
    try:
        async with serve_tls(app, tmp_path) as served:
            keystone = Keystone(AsgiTransport(create_app(service)), directory)
            yield Setup(keystone, served)
    finally:
        await directory.stop()
        app.stop()
        app.store.close()


async def _refused(setup: Setup, token: str) -> str:
    """kubectl's output once the API server refuses the token (revocations follow a watch)."""
    for _ in range(50):
        code, output = await setup.kubectl(token, "get", "namespaces", "-o", "name")
        if code != 0:
            return output
        await asyncio.sleep(0.1)
    raise AssertionError("the token was still accepted")


async def test_kubectl_with_keystone_tokens(setup: Setup) -> None:
    keystone = setup.keystone
    admin_token, _ = await keystone.token("admin", PASSWORD)
    code, output = await setup.kubectl(admin_token, "get", "namespaces", "-o", "name")
    assert code == 0, output
    assert "namespace/default" in output

    code, output = await setup.kubectl("not-a-keystone-token", "get", "namespaces")
    assert code != 0 and "Unauthorized" in output

    # A tenant's token is a Kubernetes user too; without the admin role or an RBAC binding it
    # may do nothing.
    status, body, _ = await keystone.call(
        "POST", "/v3/users", {"user": {"name": "tenant", "password": "pw"}}, admin_token
    )
    assert status == 201, body
    tenant_id = body["user"]["id"]
    status, roles, _ = await keystone.call(
        "GET", "/v3/roles", token=admin_token, params={"name": "member"}
    )
    member = roles["roles"][0]["id"]
    status, projects, _ = await keystone.call(
        "GET", "/v3/projects", token=admin_token, params={"name": "admin"}
    )
    project = projects["projects"][0]["id"]
    grant = f"/v3/projects/{project}/users/{tenant_id}/roles/{member}"
    assert (await keystone.call("PUT", grant, token=admin_token))[0] == 204
    status, _, headers = await keystone.call(
        "POST", "/v3/auth/tokens", password_auth("tenant", "pw")
    )
    tenant_token = headers["x-subject-token"]
    code, output = await setup.kubectl(tenant_token, "get", "namespaces")
    assert code != 0 and "Forbidden" in output and '"tenant"' in output

    # Revoking the admin token ends it on the Kubernetes API as well.
    check = {"x-subject-token": admin_token}
    other_admin, _ = await keystone.token("admin", PASSWORD)
    status, _, _ = await keystone.call(
        "DELETE", "/v3/auth/tokens", token=other_admin, headers=check
    )
    assert status == 204
    assert "Unauthorized" in await _refused(setup, admin_token)
    code, output = await setup.kubectl(other_admin, "get", "namespaces", "-o", "name")
    assert code == 0, output  # other tokens of the same user still work

    # Deleting the user ends all of their tokens.
    status, _, _ = await keystone.call("DELETE", f"/v3/users/{tenant_id}", token=other_admin)
    assert status == 204
    assert "Unauthorized" in await _refused(setup, tenant_token)
