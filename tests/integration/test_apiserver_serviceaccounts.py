"""Service-account tokens, issued and accepted by the in-process API server over HTTP.

The server authenticates a static admin token (system:masters) as `unistack serve apiserver`
does, and service-account tokens it signed. A token names its ServiceAccount to RBAC, lives
only while its ServiceAccount (and the pod it is bound to) lives, and can be checked by anyone
with the issuer's published keys. The real kubectl asks for one (`create token`, a protobuf
TokenRequest) and uses it (`auth whoami`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.integration.conftest import Api
from tests.integration.tls_apiserver import KUBECTL, serve_tls
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator
from unistack.apiserver.serviceaccounts import ISSUER, TokenIssuer
from unistack.client.transport import AsgiTransport
from unistack.store import SqliteStore

Obj = dict[str, Any]
ADMIN_TOKEN = "static-admin-token"
NS = "team"
ACCOUNTS = f"/api/v1/namespaces/{NS}/serviceaccounts"
ROBOT = "system:serviceaccount:team:robot"


@dataclass
class Cluster:
    server: ApiServer
    admin: Api

    def as_token(self, token: str) -> Api:
        return Api(AsgiTransport(self.server, token=token), self.server)

    async def token(self, account: str = "robot", spec: Obj | None = None) -> Obj:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}
        status, answer = await self.admin.call(
            "POST", f"{ACCOUNTS}/{account}/token", {**body, "spec": spec or {}}
        )
        assert status == 201, answer
        return dict(answer)

    async def whoami(self, token: str) -> tuple[int, Any]:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        return await self.as_token(token).call("POST", path, review)


async def _create(api: Api, path: str, body: Obj) -> Obj:
    status, created = await api.call("POST", path, body)
    assert status == 201, created
    return dict(created)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"{ADMIN_TOKEN},unistack-admin,admin,system:masters\n")
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(store, authenticator=TokenFileAuthenticator(tokens))
    await server.start()
    admin = Api(AsgiTransport(server, token=ADMIN_TOKEN), server)
    try:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        await _create(admin, "/api/v1/namespaces", body)
        await _create(admin, ACCOUNTS, {"metadata": {"name": "robot"}})
        yield Cluster(server, admin)
    finally:
        server.stop()
        store.close()


async def eventually_status(call: Any, expected: int, timeout: float = 5.0) -> Any:
    """Poll `call` until it answers `expected` (the followers apply events asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await call()
        if status == expected or asyncio.get_running_loop().time() > deadline:
            assert status == expected, body
            return body
        await asyncio.sleep(0.05)


async def test_a_token_names_its_service_account_to_rbac(cluster: Cluster) -> None:
    answer = await cluster.token()
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["audiences"] == [ISSUER]
    assert answer["spec"]["expirationSeconds"] == 3600
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    token = answer["status"]["token"]
    me = await eventually_status(lambda: cluster.whoami(token), 201)
    info = me["status"]["userInfo"]
    assert info["username"] == ROBOT
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:team",
                              "system:authenticated"]  # fmt: skip
    robot = cluster.as_token(token)
    status, refused = await robot.call("GET", f"/api/v1/namespaces/{NS}/pods")
    assert status == 403
    assert refused["message"] == (
        f'pods is forbidden: User "{ROBOT}" cannot list resource "pods" in API group "" '
        'in the namespace "team"'
    )
    binding = {
        "metadata": {"name": "robot-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
    }  # fmt: skip
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"
    await _create(cluster.admin, path, binding)
    await eventually_status(lambda: robot.call("GET", f"/api/v1/namespaces/{NS}/pods"), 200)
    # the binding is namespaced: elsewhere it is still refused
    assert (await robot.call("GET", "/api/v1/namespaces/default/pods"))[0] == 403


async def test_deleting_the_service_account_revokes_its_tokens(cluster: Cluster) -> None:
    token = (await cluster.token())["status"]["token"]
    await eventually_status(lambda: cluster.whoami(token), 201)
    assert (await cluster.admin.call("DELETE", f"{ACCOUNTS}/robot"))[0] == 200
    await eventually_status(lambda: cluster.whoami(token), 401)
    # a new ServiceAccount of the same name is another: the old token stays dead
    await _create(cluster.admin, ACCOUNTS, {"metadata": {"name": "robot"}})
    fresh = (await cluster.token())["status"]["token"]
    await eventually_status(lambda: cluster.whoami(fresh), 201)
    assert (await cluster.whoami(token))[0] == 401


async def test_a_pod_bound_token_lives_as_long_as_its_pod(cluster: Cluster) -> None:
    pods = f"/api/v1/namespaces/{NS}/pods"
    containers = [{"name": "app", "image": "busybox"}]
    pod = await _create(cluster.admin, pods, {
        "metadata": {"name": "web"},
        "spec": {"serviceAccountName": "robot", "containers": containers},
    })  # fmt: skip
    uid = pod["metadata"]["uid"]
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid}
    answer = await cluster.token(spec={"boundObjectRef": ref, "expirationSeconds": 3607})
    token = answer["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": uid}
    assert claims["exp"] - claims["iat"] == 3607
    await eventually_status(lambda: cluster.whoami(token), 201)
    # a stale uid is a conflict; a pod of another account cannot have this one's token
    stale = {**ref, "uid": "0000"}
    status, conflict = await cluster.admin.call(
        "POST", f"{ACCOUNTS}/robot/token", {"spec": {"boundObjectRef": stale}}
    )
    assert status == 409 and "does not match the UID in record" in conflict["message"]
    other_pod = {"metadata": {"name": "other"}, "spec": {"containers": containers}}
    await _create(cluster.admin, pods, other_pod)
    other = {"kind": "Pod", "name": "other"}
    status, refused = await cluster.admin.call(
        "POST", f"{ACCOUNTS}/robot/token", {"spec": {"boundObjectRef": other}}
    )
    assert status == 400 and "different serviceaccount name" in refused["message"]
    # the pod goes (unscheduled, so at once): its token goes with it
    assert (await cluster.admin.call("DELETE", f"{pods}/web"))[0] == 200
    await eventually_status(lambda: cluster.whoami(token), 401)


async def test_bad_token_requests_get_kubernetes_errors(cluster: Cluster) -> None:
    path = f"{ACCOUNTS}/robot/token"
    status, short = await cluster.admin.call("POST", path, {"spec": {"expirationSeconds": 60}})
    assert status == 422 and short["reason"] == "Invalid"
    assert "may not specify a duration less than 10 minutes" in short["message"]
    status, missing = await cluster.admin.call("POST", f"{ACCOUNTS}/ghost/token", {"spec": {}})
    assert status == 404 and missing["message"] == 'serviceaccounts "ghost" not found'
    status, gone = await cluster.admin.call(
        "POST", path, {"spec": {"boundObjectRef": {"kind": "Pod", "name": "ghost"}}}
    )
    assert status == 404 and gone["message"] == 'pods "ghost" not found'
    status, kind = await cluster.admin.call(
        "POST", path, {"spec": {"boundObjectRef": {"kind": "Deployment", "name": "x"}}}
    )
    assert status == 422 and "spec.boundObjectRef.kind" in kind["message"]
    # a token for someone else's audience is not accepted here
    other = (await cluster.token(spec={"audiences": ["vault"]}))["status"]["token"]
    assert (await cluster.whoami(other))[0] == 401
    # nor one with the same claims signed by another key
    genuine = jwt.decode(other, options={"verify_signature": False})
    forged = TokenIssuer.ephemeral()
    claims = {**genuine, "aud": [ISSUER]}
    token = jwt.encode(claims, forged.key, "ES256", headers={"kid": forged.key_id})
    assert (await cluster.whoami(token))[0] == 401
    # nor with the algorithm stripped
    unsigned = jwt.encode(claims, None, "none")
    assert (await cluster.whoami(unsigned))[0] == 401


async def test_the_issuer_publishes_the_keys_that_check_its_tokens(cluster: Cluster) -> None:
    status, config = await cluster.admin.call("GET", "/.well-known/openid-configuration")
    assert status == 200 and config["issuer"] == ISSUER
    assert config["jwks_uri"] == f"{ISSUER}/openid/v1/jwks"
    status, jwks = await cluster.admin.call("GET", "/openid/v1/jwks")
    assert status == 200
    token = (await cluster.token())["status"]["token"]
    # any service account may read them (system:service-account-issuer-discovery)
    robot = cluster.as_token(token)
    assert (await eventually_status(lambda: robot.call("GET", "/openid/v1/jwks"), 200)) == jwks
    # and they verify the token independently of the server
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=ISSUER, issuer=ISSUER)
    assert claims["sub"] == ROBOT


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_creates_a_token_and_uses_it(cluster: Cluster, tmp_path: Path) -> None:
    async with serve_tls(cluster.server, tmp_path) as served:
        code, token = await served.kubectl(
            ADMIN_TOKEN, "create", "token", "robot", "-n", NS, "--duration=20m"
        )
        assert code == 0, token
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 1200
        code, whoami = await served.kubectl(token.strip(), "auth", "whoami", "-o", "json")
        assert code == 0, whoami
        assert '"username": "system:serviceaccount:team:robot"' in whoami
        code, refused = await served.kubectl(token.strip(), "get", "pods", "-n", NS)
        assert code == 1 and f'User "{ROBOT}" cannot list resource "pods"' in refused
        code, missing = await served.kubectl(ADMIN_TOKEN, "create", "token", "ghost", "-n", NS)
        assert code == 1 and 'serviceaccounts "ghost" not found' in missing


async def test_a_token_review_says_whose_a_token_is(cluster: Cluster) -> None:
    path = "/apis/authentication.k8s.io/v1/tokenreviews"

    async def review(token: str, *audiences: str) -> Obj:
        spec: Obj = {"token": token, **({"audiences": list(audiences)} if audiences else {})}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status, answer = await cluster.admin.call("POST", path, body)
        assert status == 201, answer
        return dict(answer["status"])

    token = (await cluster.token())["status"]["token"]
    await eventually_status(lambda: cluster.whoami(token), 201)
    known = await review(token)
    assert known["authenticated"] is True and known["audiences"] == [ISSUER]
    assert known["user"]["username"] == ROBOT
    assert (await review(ADMIN_TOKEN))["user"]["groups"][0] == "system:masters"
    assert await review("not-a-token") == {"user": {}}
    # a token for a component's own audience is that component's to review
    vault = (await cluster.token(spec={"audiences": ["vault"]}))["status"]["token"]
    assert (await review(vault, "vault"))["user"]["username"] == ROBOT
    assert await review(vault) == {"user": {}}
    assert await review(token, "vault") == {"user": {}}
    # only those allowed to ask may: a service account without bindings may not
    asked = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
             "spec": {"token": token}}  # fmt: skip
    assert (await cluster.as_token(token).call("POST", path, asked))[0] == 403
