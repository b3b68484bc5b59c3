"""Security groups through the compute API, answered by the Networking API."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import call


async def test_groups_and_rules_in_novas_shape(cloud: Cloud) -> None:
    tenant, other = await cloud.tenant(), await cloud.tenant()
    body = {"security_group": {"name": "web", "description": "web servers"}}
    made = await call(cloud, "POST", "/os-security-groups", tenant.token, body)
    assert made.status == 200, made.body
    group = made.body["security_group"]
    assert group["tenant_id"] == tenant.project_id and group["name"] == "web"
    rule = {
        "parent_group_id": group["id"],
        "ip_protocol": "tcp",
        "from_port": 22,
        "to_port": 22,
        "cidr": "10.0.0.0/8",
    }
    added = await call(
        cloud, "POST", "/os-security-group-rules", tenant.token, {"security_group_rule": rule}
    )
    assert added.status == 200, added.body
    assert added.body["security_group_rule"]["ip_range"] == {"cidr": "10.0.0.0/8"}
    again = await call(
        cloud, "POST", "/os-security-group-rules", tenant.token, {"security_group_rule": rule}
    )
    assert again.status == 400
    for bad in ({"ip_protocol": "gre"}, {"from_port": 70000}, {"from_port": 30, "to_port": 20}):
        wrong = await call(
            cloud,
            "POST",
            "/os-security-group-rules",
            tenant.token,
            {"security_group_rule": {**rule, **bad}},
        )
        assert wrong.status == 400, bad
    shown = await call(cloud, "GET", f"/os-security-groups/{group['id']}", tenant.token)
    assert [r["from_port"] for r in shown.body["security_group"]["rules"]] == [22]
    assert (await call(cloud, "GET", "/os-security-groups/not-a-uuid", tenant.token)).status == 400
    assert (
        await call(cloud, "GET", f"/os-security-groups/{group['id']}", other.token)
    ).status == 404
    empty = {"security_group": {"name": " ", "description": "x"}}
    assert (await call(cloud, "POST", "/os-security-groups", tenant.token, empty)).status == 400
    listed = await call(cloud, "GET", "/os-security-groups", tenant.token)
    assert "web" in {g["name"] for g in listed.body["security_groups"]}
    rule_id = added.body["security_group_rule"]["id"]
    assert (
        await call(cloud, "DELETE", f"/os-security-group-rules/{rule_id}", tenant.token)
    ).status == 202
    assert (
        await call(cloud, "DELETE", f"/os-security-groups/{group['id']}", tenant.token)
    ).status == 202
    assert (
        await call(cloud, "GET", f"/os-security-groups/{group['id']}", tenant.token)
    ).status == 404
