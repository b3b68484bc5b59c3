"""Keystone's extensions over the identity objects: domain configuration, projects acting as
domains, OS-TRUST (trusts and trust-scoped tokens), and bootstrap repairing the role chain.

Same in-process identity app as test_identity_api (its `keystone` fixture): the real API
server and informers, no socket.
"""

from __future__ import annotations

import time
from typing import Any

from tests.integration.test_identity_api import PASSWORD, Keystone, keystone, password_auth
from unistack.client.api import Client
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import BootstrapSettings, bootstrap, stable_id
from unistack.openstack.identity.service import iso_time

__all__ = ["keystone"]  # the fixture, used by name
Obj = dict[str, Any]
LDAP = {"identity": {"driver": "ldap"}, "ldap": {"url": "ldap://x:389/", "user_tree_dn": "ou=U"}}


async def _admin(keystone: Keystone) -> str:
    token, _ = await keystone.token("admin", PASSWORD)
    return token


async def _domain(keystone: Keystone, token: str, name: str) -> str:
    status, body, _ = await keystone.call("POST", "/v3/domains", {"domain": {"name": name}}, token)
    assert status == 201, body
    return str(body["domain"]["id"])


async def test_domain_config_create_show_update_delete(keystone: Keystone) -> None:
    token = await _admin(keystone)
    domain = await _domain(keystone, token, "ldapdom")
    path = f"/v3/domains/{domain}/config"
    status, body, _ = await keystone.call("GET", path, token=token)
    assert status == 404
    status, body, _ = await keystone.call("PUT", path, {"config": LDAP}, token)
    assert status == 201 and body["config"] == LDAP
    status, body, _ = await keystone.call("PUT", path, {"config": LDAP}, token)
    assert status == 200
    status, body, _ = await keystone.call("GET", f"{path}/ldap/url", token=token)
    assert status == 200 and body["config"] == {"url": "ldap://x:389/"}
    change = {"config": {"identity": {"driver": "sql", "list_limit": 7}}}
    status, body, _ = await keystone.call("PATCH", f"{path}/identity", change, token)
    assert status == 200 and body["config"]["identity"] == {"driver": "sql", "list_limit": 7}
    status, body, _ = await keystone.call("PATCH", f"{path}/identity", {"config": LDAP}, token)
    assert status == 400  # a group's PATCH names that group only
    status, _, _ = await keystone.call("DELETE", f"{path}/identity/driver", token=token)
    assert status == 204
    status, _, _ = await keystone.call("GET", f"{path}/identity/driver", token=token)
    assert status == 404
    status, body, _ = await keystone.call("PUT", path, {"config": {"nova": {"x": 1}}}, token)
    assert status == 403 and "nova" in body["error"]["message"]
    status, body, _ = await keystone.call("GET", f"/v3/domains/{domain}", token=token)
    assert "config" not in body["domain"]  # served only under /config
    status, _, _ = await keystone.call("DELETE", path, token=token)
    assert status == 204
    status, _, _ = await keystone.call("GET", path, token=token)
    assert status == 404


async def test_domain_config_defaults_and_secrets(keystone: Keystone) -> None:
    token = await _admin(keystone)
    status, body, _ = await keystone.call("GET", "/v3/domains/config/default", token=token)
    assert status == 200 and body["config"]["identity"]["driver"] == "sql"
    status, body, _ = await keystone.call(
        "GET", "/v3/domains/config/ldap/user_tree_dn/default", token=token
    )
    assert status == 200 and body["config"] == {"user_tree_dn": None}
    domain = await _domain(keystone, token, "secretdom")
    config = {"ldap": {"url": "ldap://y", "password": "hush"}}
    status, body, _ = await keystone.call(
        "PUT", f"/v3/domains/{domain}/config", {"config": config}, token
    )
    assert status == 201 and body["config"] == {"ldap": {"url": "ldap://y"}}


async def test_project_acting_as_domain(keystone: Keystone) -> None:
    token = await _admin(keystone)
    body = {"project": {"name": "dom-as-project", "is_domain": True, "domain_id": None}}
    status, created, _ = await keystone.call("POST", "/v3/projects", body, token)
    assert status == 201, created
    project = created["project"]
    assert project["is_domain"] is True and project["domain_id"] is None
    status, listed, _ = await keystone.call("GET", "/v3/domains", token=token)
    assert project["id"] in {d["id"] for d in listed["domains"]}
    params = {"is_domain": "true"}
    status, listed, _ = await keystone.call("GET", "/v3/projects", token=token, params=params)
    assert project["id"] in {p["id"] for p in listed["projects"]}
    status, listed, _ = await keystone.call("GET", "/v3/projects", token=token)
    assert project["id"] not in {p["id"] for p in listed["projects"]}
    path = f"/v3/projects/{project['id']}"
    status, shown, _ = await keystone.call("GET", path, token=token)
    assert status == 200 and shown["project"]["is_domain"] is True
    status, _, _ = await keystone.call("POST", "/v3/projects", body, token)
    assert status == 409
    status, _, _ = await keystone.call("DELETE", path, token=token)
    assert status == 403  # still enabled, as for any domain
    disable = {"project": {"enabled": False}}
    status, shown, _ = await keystone.call("PATCH", path, disable, token)
    assert status == 200 and shown["project"]["enabled"] is False
    status, _, _ = await keystone.call("DELETE", path, token=token)
    assert status == 204
    status, _, _ = await keystone.call("GET", f"/v3/domains/{project['id']}", token=token)
    assert status == 404


async def _user(keystone: Keystone, token: str, name: str) -> str:
    body = {"user": {"name": name, "password": "pw-" + name}}
    status, created, _ = await keystone.call("POST", "/v3/users", body, token)
    assert status == 201, created
    return str(created["user"]["id"])


async def _role(keystone: Keystone, token: str, name: str) -> str:
    status, created, _ = await keystone.call("POST", "/v3/roles", {"role": {"name": name}}, token)
    assert status == 201, created
    return str(created["role"]["id"])


async def _trust_setup(keystone: Keystone) -> tuple[str, Obj]:
    """A project, a trustor with two roles on it, a trustee; their ids and tokens."""
    admin = await _admin(keystone)
    _, created, _ = await keystone.call(
        "POST", "/v3/projects", {"project": {"name": "trusted"}}, admin
    )
    project = created["project"]["id"]
    trustor, trustee = (
        await _user(keystone, admin, "trustor"),
        await _user(keystone, admin, "trustee"),
    )
    delegated, kept = (
        await _role(keystone, admin, "delegated"),
        await _role(keystone, admin, "kept"),
    )
    for role in (delegated, kept):
        path = f"/v3/projects/{project}/users/{trustor}/roles/{role}"
        assert (await keystone.call("PUT", path, token=admin))[0] == 204
    trustor_token, _ = await keystone.token("trustor", "pw-trustor", "trusted")
    trustee_token, _ = await keystone.token("trustee", "pw-trustee", None)
    ids = {
        "project": project,
        "trustor": trustor,
        "trustee": trustee,
        "delegated": delegated,
        "kept": kept,
        "trustor_token": trustor_token,
        "trustee_token": trustee_token,
    }
    return admin, ids


def _trust_body(ids: Obj, **extra: Any) -> Obj:
    trust = {
        "trustor_user_id": ids["trustor"],
        "trustee_user_id": ids["trustee"],
        "project_id": ids["project"],
        "impersonation": True,
        "roles": [{"name": "delegated"}],
        **extra,
    }
    return {"trust": trust}


def _trust_scope(trust_id: str, token: str) -> Obj:
    identity = {"methods": ["token"], "token": {"id": token}}
    return {"auth": {"identity": identity, "scope": {"OS-TRUST:trust": {"id": trust_id}}}}


async def test_trust_create_show_list_roles_delete(keystone: Keystone) -> None:
    admin, ids = await _trust_setup(keystone)
    expires = iso_time(time.time() + 3600)
    body = _trust_body(ids, expires_at=expires)
    status, created, _ = await keystone.call(
        "POST", "/v3/OS-TRUST/trusts", body, ids["trustor_token"]
    )
    assert status == 201, created
    trust = created["trust"]
    assert trust["impersonation"] is True and trust["expires_at"] == expires
    assert [r["name"] for r in trust["roles"]] == ["delegated"]
    assert "v3/OS-TRUST/trusts" in trust["links"]["self"]
    path = f"/v3/OS-TRUST/trusts/{trust['id']}"
    status, shown, _ = await keystone.call("GET", path, token=ids["trustee_token"])
    assert status == 200 and shown["trust"]["trustor_user_id"] == ids["trustor"]
    params = {"trustor_user_id": ids["trustor"]}
    status, listed, _ = await keystone.call(
        "GET", "/v3/OS-TRUST/trusts", token=ids["trustor_token"], params=params
    )
    assert [t["id"] for t in listed["trusts"]] == [trust["id"]]
    status, _, _ = await keystone.call("GET", "/v3/OS-TRUST/trusts", token=ids["trustor_token"])
    assert status == 403  # every trust: admins only
    status, listed, _ = await keystone.call("GET", "/v3/OS-TRUST/trusts", token=admin)
    assert trust["id"] in {t["id"] for t in listed["trusts"]}
    status, roles, _ = await keystone.call("GET", f"{path}/roles", token=ids["trustor_token"])
    assert [r["id"] for r in roles["roles"]] == [ids["delegated"]]
    status, _, _ = await keystone.call(
        "HEAD", f"{path}/roles/{ids['delegated']}", token=ids["trustor_token"]
    )
    assert status == 200
    status, _, _ = await keystone.call(
        "GET", f"{path}/roles/{ids['kept']}", token=ids["trustor_token"]
    )
    assert status == 404
    status, _, _ = await keystone.call("DELETE", path, token=ids["trustor_token"])
    assert status == 204
    status, _, _ = await keystone.call("GET", path, token=ids["trustor_token"])
    assert status == 404


async def test_trust_requests_that_keystone_refuses(keystone: Keystone) -> None:
    _, ids = await _trust_setup(keystone)
    post = "/v3/OS-TRUST/trusts"
    bad_time = _trust_body(ids, expires_at="bad.123Z")
    assert (await keystone.call("POST", post, bad_time, ids["trustor_token"]))[0] == 400
    not_mine = _trust_body(ids)
    assert (await keystone.call("POST", post, not_mine, ids["trustee_token"]))[0] == 403
    not_held = _trust_body(ids, roles=[{"name": "admin"}])
    assert (await keystone.call("POST", post, not_held, ids["trustor_token"]))[0] == 403
    redelegate = _trust_body(ids, allow_redelegation=True)
    assert (await keystone.call("POST", post, redelegate, ids["trustor_token"]))[0] == 403
    no_impersonation_flag = _trust_body(ids)
    del no_impersonation_flag["trust"]["impersonation"]
    assert (await keystone.call("POST", post, no_impersonation_flag, ids["trustor_token"]))[
        0
    ] == 400


async def test_trust_scoped_tokens(keystone: Keystone) -> None:
    admin, ids = await _trust_setup(keystone)
    post = "/v3/OS-TRUST/trusts"
    for impersonation, expected_user in ((True, "trustor"), (False, "trustee")):
        body = _trust_body(ids, impersonation=impersonation, remaining_uses=1)
        status, created, _ = await keystone.call("POST", post, body, ids["trustor_token"])
        trust_id = created["trust"]["id"]
        scope = _trust_scope(trust_id, ids["trustee_token"])
        status, issued, headers = await keystone.call("POST", "/v3/auth/tokens", scope)
        assert status == 201, issued
        token = issued["token"]
        assert token["user"]["id"] == ids[expected_user]
        assert token["project"]["id"] == ids["project"]
        assert [r["name"] for r in token["roles"]] == ["delegated"]  # not "kept"
        assert token["OS-TRUST:trust"]["id"] == trust_id
        assert token["OS-TRUST:trust"]["trustee_user"] == {"id": ids["trustee"]}
        trust_token = headers["x-subject-token"]
        again = await keystone.call("POST", "/v3/auth/tokens", scope)
        assert again[0] == 403  # its one use is spent
        rescope = {"auth": {"identity": {"methods": ["token"], "token": {"id": trust_token}}}}
        assert (await keystone.call("POST", "/v3/auth/tokens", rescope))[0] == 403
        assert (await keystone.call("POST", post, body, trust_token))[0] == 403  # no redelegation
        check = {"x-subject-token": trust_token}
        status, _, _ = await keystone.call("GET", "/v3/auth/tokens", token=admin, headers=check)
        assert status == 200
        await keystone.call("DELETE", f"{post}/{trust_id}", token=ids["trustor_token"])
        status, _, _ = await keystone.call("GET", "/v3/auth/tokens", token=admin, headers=check)
        assert status == 404  # the trust is gone, and its tokens with it
    other_scope = _trust_scope("nope", ids["trustee_token"])
    assert (await keystone.call("POST", "/v3/auth/tokens", other_scope))[0] == 404


async def test_trust_token_needs_the_trustee_and_an_unexpired_trust(keystone: Keystone) -> None:
    admin, ids = await _trust_setup(keystone)
    body = _trust_body(ids)
    status, created, _ = await keystone.call(
        "POST", "/v3/OS-TRUST/trusts", body, ids["trustor_token"]
    )
    trust_id = created["trust"]["id"]
    as_trustor = _trust_scope(trust_id, ids["trustor_token"])
    assert (await keystone.call("POST", "/v3/auth/tokens", as_trustor))[0] == 403
    scope = _trust_scope(trust_id, ids["trustee_token"])
    status, _, headers = await keystone.call("POST", "/v3/auth/tokens", scope)
    assert status == 201
    path = f"/v3/projects/{ids['project']}/users/{ids['trustor']}/roles/{ids['delegated']}"
    assert (await keystone.call("DELETE", path, token=admin))[0] == 204
    check = {"x-subject-token": headers["x-subject-token"]}
    status, _, _ = await keystone.call("GET", "/v3/auth/tokens", token=admin, headers=check)
    assert status == 404  # the trustor no longer holds the delegated role


async def test_bootstrap_restores_the_default_role_chain(
    keystone: Keystone, client: Client
) -> None:
    admin_id = stable_id("role", "admin")
    role = await client.get(kinds.ROLES.ref, admin_id)
    role["spec"]["implies"] = []
    await client.update(kinds.ROLES.ref, role)
    await bootstrap(client, BootstrapSettings(PASSWORD, hash_rounds=4))
    repaired = await client.get(kinds.ROLES.ref, admin_id)
    assert repaired["spec"]["implies"] == [stable_id("role", "manager")]
    _, data, _ = await keystone.call("POST", "/v3/auth/tokens", password_auth("admin", PASSWORD))
    assert {r["name"] for r in data["token"]["roles"]} == {"admin", "manager", "member", "reader"}
