"""Service-account token Secrets against the in-process API server: the tokens controller
fills a `kubernetes.io/service-account-token` Secret with a token that authenticates as its
ServiceAccount, the CA and the namespace; deleting the Secret revokes the token; a Secret
whose ServiceAccount is missing, or goes, is deleted."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Api
from tests.integration.harness import eventually, running
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator
from unistack.client.api import Client, NotFound
from unistack.client.resources import NAMESPACES, SECRETS, SERVICEACCOUNTS
from unistack.client.transport import AsgiTransport
from unistack.kube.tokens import NAME_ANNOTATION, TOKEN_TYPE, UID_ANNOTATION, TokensController
from unistack.store import SqliteStore

Obj = dict[str, Any]
ADMIN = "static-admin-token"
NS = "team"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"{ADMIN},unistack-admin,admin,system:masters\n")
    store = SqliteStore(str(tmp_path / "store.db"))
    served = ApiServer(store, authenticator=TokenFileAuthenticator(tokens))
    await served.start()
    try:
        yield served
    finally:
        served.stop()
        store.close()


def token_secret(name: str, account: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TOKEN_TYPE,
        "metadata": {"name": name, "namespace": NS, "annotations": {NAME_ANNOTATION: account}},
    }


async def whoami(server: ApiServer, token: str) -> tuple[int, Any]:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    api = Api(AsgiTransport(server, token=token), server)
    return await api.call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)


async def _exists(client: Client, name: str) -> bool:
    try:
        await client.get(SECRETS, name, NS)
    except NotFound:
        return False
    return True


async def test_a_token_secret_is_filled_and_revoked_with_it(server: ApiServer) -> None:
    client = Client(AsgiTransport(server, token=ADMIN))
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    await client.create(NAMESPACES, namespace)
    account = await client.create(SERVICEACCOUNTS, {"metadata": {"name": "robot", "namespace": NS}})
    await client.create(SECRETS, token_secret("robot-token", "robot"))

    async def filled() -> bool:
        secret = await client.get(SECRETS, "robot-token", NS)
        return bool((secret.get("data") or {}).get("token"))

    async with running(TokensController(client, CA)):
        await eventually(filled, timeout=20)
        secret = await client.get(SECRETS, "robot-token", NS)
        data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        assert data["namespace"] == NS and data["ca.crt"] == CA
        uid = secret["metadata"]["annotations"][UID_ANNOTATION]
        assert uid == account["metadata"]["uid"]
        status, review = await whoami(server, data["token"])
        assert status == 201, review
        assert review["status"]["userInfo"]["username"] == "system:serviceaccount:team:robot"

        # the Secret goes: so does its token
        await client.delete(SECRETS, "robot-token", NS)
        await eventually(lambda: _refused(server, data["token"]), timeout=10)

        # a Secret for an account that does not exist, then one whose account goes
        await client.create(SECRETS, token_secret("ghost-token", "ghost"))
        await client.create(SECRETS, token_secret("robot-token-2", "robot"))
        await eventually(lambda: _gone(client, "ghost-token"), timeout=20)
        await eventually(lambda: filled_named(client, "robot-token-2"), timeout=20)
        await client.delete(SERVICEACCOUNTS, "robot", NS)
        await eventually(lambda: _gone(client, "robot-token-2"), timeout=20)


async def filled_named(client: Client, name: str) -> bool:
    secret = await client.get(SECRETS, name, NS)
    return bool((secret.get("data") or {}).get("token"))


async def _gone(client: Client, name: str) -> bool:
    return not await _exists(client, name)


async def _refused(server: ApiServer, token: str) -> bool:
    return (await whoami(server, token))[0] == 401
