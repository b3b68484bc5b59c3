"""The real kubectl and RBAC: `get clusterroles`, the typed `create role/rolebinding` commands
(protobuf bodies), and `auth can-i` (also `--list`) as a Keystone tenant whose project is
bound to `edit` in one namespace. The API server is built as `unistack serve apiserver`
builds it (`server.build_app`, static admin token and the cloud's Fernet keys) and served
with TLS; the ClusterRole aggregation controller runs beside it, as the controllers would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.tls_apiserver import KUBECTL, Served, serve_tls
from unistack.apiserver.server import ServerSettings, build_app
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.kube.clusterroleaggregation import ClusterRoleAggregationController
from unistack.tokens import Claims, RepositoryCodec, ensure_key_repository

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
ADMIN = "unistack-test-static-token"
PROJECT = "0c4e5f1d2b3a49d8a7e6f5c4b3a29180"


@dataclass
class Setup:
    served: Served
    tenant: str  # a Keystone token of a member of PROJECT

    async def admin(self, *args: str) -> str:
        code, output = await self.served.kubectl(ADMIN, *args)
        assert code == 0, output
        return output

    async def as_tenant(self, *args: str) -> tuple[int, str]:
        return await self.served.kubectl(self.tenant, *args)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    keys = tmp_path / "fernet-keys"
    ensure_key_repository(keys)
    token_file = tmp_path / "tokens.csv"
    token_file.write_text(f"{ADMIN},unistack-admin,admin,system:masters\n")
    settings = ServerSettings(
        db_path=str(tmp_path / "store.db"), token_file=str(token_file), key_repository=str(keys)
    )
    app = build_app(settings)
    await app.start()
    now = time.time()
    claims = Claims("u-alice", ("password",), now - 1, now + 3600, ("a1",),
                    project_id=PROJECT, user_name="alice", role_names=("member",))  # fmt: skip
    tenant = RepositoryCodec(keys).seal(claims)
    aggregation = ClusterRoleAggregationController(Client(AsgiTransport(app, token=ADMIN)))
    running = asyncio.get_running_loop().create_task(aggregation.run())
    try:
        async with serve_tls(app, tmp_path) as served:
            yield Setup(served, tenant)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        app.stop()
        app.store.close()


async def test_kubectl_serves_and_enforces_rbac(setup: Setup) -> None:
    roles = await setup.admin("get", "clusterroles")
    assert roles.splitlines()[0].split() == ["NAME", "CREATED", "AT"]
    names = {line.split()[0] for line in roles.splitlines()[1:]}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery"} <= names
    bindings = await setup.admin("get", "clusterrolebindings", "-o", "wide")
    assert "ClusterRole/cluster-admin" in bindings and "system:masters" in bindings

    code, output = await setup.as_tenant("get", "pods", "-n", "team")
    assert (
        code != 0
        and (
            'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
            'in the namespace "team"'
        )
        in output
    ), output

    await setup.admin("create", "namespace", "team")
    await setup.admin("create", "namespace", "other")
    reader = ("pod-reader", "--verb=get,list", "--resource=pods")
    await setup.admin("create", "role", *reader, "-n", "team")
    group = f"--group=keystone:project:{PROJECT}"
    await setup.admin("create", "rolebinding", "dev", "--clusterrole=edit", group, "-n", "team")
    await setup.admin("create", "rolebinding", "read", "--role=pod-reader", group, "-n", "team")
    listed = await setup.admin("get", "rolebindings", "-n", "team")
    assert listed.splitlines()[0].split() == ["NAME", "ROLE", "AGE"]
    assert "ClusterRole/edit" in listed and "Role/pod-reader" in listed
    role = await setup.admin("get", "role", "pod-reader", "-n", "team", "-o", "yaml")
    assert "- pods" in role and "- list" in role

    async def tenant_may(*args: str) -> str:
        return (await setup.as_tenant("auth", "can-i", *args))[1].strip()

    for _ in range(100):  # edit's rules are aggregated, and bindings followed, by watches
        if await tenant_may("create", "deployments.apps", "-n", "team") == "yes":
            break
        await asyncio.sleep(0.1)
    assert await tenant_may("create", "deployments.apps", "-n", "team") == "yes"
    assert await tenant_may("list", "pods", "-n", "other") == "no"
    assert await tenant_may("create", "rolebindings", "-n", "team") == "no"
    config_map = ("configmap", "c", "--from-literal=a=b")
    code, output = await setup.as_tenant("create", *config_map, "-n", "team")
    assert code == 0, output
    code, output = await setup.as_tenant("get", "configmaps", "-n", "other")
    assert code != 0 and "Forbidden" in output

    code, output = await setup.as_tenant("auth", "can-i", "--list", "-n", "team")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split()[:2] == ["Resources", "Non-Resource"]
    assert any(line.split()[0] == "deployments.apps" for line in lines[1:]), output
    assert any(line.split()[0] == "selfsubjectrulesreviews.authorization.k8s.io" for line in lines)
    assert any("/apis/*" in line for line in lines)


async def test_kubectl_acts_as_another_user_only_with_the_impersonate_verb(setup: Setup) -> None:
    """`--as`, `--as-group`: the admin may be anyone; the tenant may not impersonate."""
    whoami = await setup.admin("auth", "whoami", "--as", "jane", "--as-group", "devs", "-o", "json")
    info = json.loads(whoami)["status"]["userInfo"]
    assert info == {"username": "jane", "groups": ["devs", "system:authenticated"]}
    account = "system:serviceaccount:team:builder"
    info = json.loads(await setup.admin("auth", "whoami", "--as", account, "-o", "json"))
    assert info["status"]["userInfo"]["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ]
    # acting as jane, the admin has jane's rights: none
    code, output = await setup.served.kubectl(ADMIN, "get", "pods", "-n", "team", "--as", "jane")
    assert code != 0 and 'User "jane" cannot list resource "pods"' in output, output
    code, output = await setup.served.kubectl(
        ADMIN, "auth", "can-i", "list", "pods", "--as", "jane"
    )
    assert (code, output.strip()) == (1, "no")
    code, output = await setup.as_tenant("get", "pods", "--as", "jane")
    assert (
        code != 0
        and (
            'users "jane" is forbidden: User "alice" cannot impersonate resource "users" '
            'in API group "" at the cluster scope'
        )
        in output
    ), output
