"""A Node's agent URL, as the node proxy and a migrating disk find it."""

from __future__ import annotations

from unistack.nodeagent import agent_url


def node(address: str | None, port: int | None) -> dict:
    addresses = [{"type": "Hostname", "address": "h"}]
    if address:
        addresses.append({"type": "InternalIP", "address": address})
    endpoints = {"kubeletEndpoint": {"Port": port}} if port else {}
    return {"status": {"addresses": addresses, "daemonEndpoints": endpoints}}


def test_the_internal_ip_and_the_kubelet_port() -> None:
    assert agent_url(node("10.254.0.2", 10250)) == "http://10.254.0.2:10250"
    assert agent_url(node("fd00::2", 10250)) == "http://[fd00::2]:10250"
    assert agent_url(node(None, 10250)) is None
    assert agent_url(node("10.254.0.2", None)) is None
    assert agent_url(None) is None
