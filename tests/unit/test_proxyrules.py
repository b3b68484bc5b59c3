"""`unistack.agent.proxyrules.render`: Services and EndpointSlices into one nftables table.

Assertions are on the structure of the text (map entries, chains, numgen modulus). The last
test loads the table into the kernel in check mode (`nft -c`), which needs root and nft.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from unistack.agent.proxyrules import ProxySettings, chain_name, render, service_ports
from unistack.dataplane.nftables import replace_table_script

Obj = dict[str, Any]
SETTINGS = ProxySettings()


def service(name: str = "web", ip: str = "10.96.0.20", **spec: Any) -> Obj:
    ports = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "type": "ClusterIP", "ports": ports, **spec},
    }


def endpoint(
    ip: str,
    ready: bool = True,
    serving: bool | None = None,
    terminating: bool = False,
) -> Obj:
    serving = ready if serving is None else serving
    conditions = {"ready": ready, "serving": serving, "terminating": terminating}
    return {"addresses": [ip], "conditions": conditions, "targetRef": {"kind": "Pod"}}


def endpoint_slice(service_name: str, *endpoints: Obj, port: int = 8080) -> Obj:
    return {
        "metadata": {
            "name": f"{service_name}-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def map_elements(text: str, name: str, keyword: str = "map") -> str:
    match = re.search(rf"{keyword} {name} {{.*?}}\n", text, re.S)
    assert match, f"no {keyword} {name}"
    return match.group(0)


def chain_body(text: str, name: str) -> str:
    match = re.search(rf"chain {re.escape(name)} {{\n(.*?)\t}}", text, re.S)
    assert match, f"no chain {name}"
    return match.group(1)


def test_cluster_ip_maps_to_a_service_chain_spreading_over_ready_endpoints() -> None:
    slices = [
        endpoint_slice(
            "web", endpoint("10.1.0.1"), endpoint("10.1.0.2"), endpoint("10.1.0.3", ready=False)
        )
    ]
    text = render([service()], slices, SETTINGS)
    svc_chain = service_ports(service(), slices)[0].chain
    assert f"10.96.0.20 . tcp . 80 : goto {svc_chain}" in map_elements(text, "service-ips")
    body = chain_body(text, svc_chain)
    assert "numgen random mod 2 vmap" in body
    assert "dnat to 10.1.0.1:8080" in text and "dnat to 10.1.0.2:8080" in text
    assert "10.1.0.3" not in text


def test_target_port_comes_from_the_slice_port_of_the_same_name() -> None:
    text = render([service()], [endpoint_slice("web", endpoint("10.1.0.1"), port=9999)], SETTINGS)
    assert "meta l4proto tcp dnat to 10.1.0.1:9999" in text


def test_serving_terminating_endpoints_are_the_fallback_when_none_is_ready() -> None:
    slices = [
        endpoint_slice(
            "web",
            endpoint("10.1.0.1", ready=False, serving=True, terminating=True),
            endpoint("10.1.0.2", ready=False, serving=False),
        )
    ]
    text = render([service()], slices, SETTINGS)
    assert "dnat to 10.1.0.1:8080" in text
    assert "10.1.0.2" not in text
    assert "numgen random mod 1 vmap" in text


def test_a_ready_endpoint_wins_over_terminating_ones() -> None:
    slices = [
        endpoint_slice(
            "web",
            endpoint("10.1.0.1", ready=False, serving=True, terminating=True),
            endpoint("10.1.0.2"),
        )
    ]
    text = render([service()], slices, SETTINGS)
    assert "10.1.0.1" not in text and "dnat to 10.1.0.2:8080" in text


def test_no_endpoints_means_reject_in_a_filter_chain() -> None:
    text = render([service()], [endpoint_slice("web", endpoint("10.1.0.1", ready=False))], SETTINGS)
    assert "10.96.0.20 . tcp . 80" in map_elements(text, "no-endpoint-services", "set")
    assert "elements" not in map_elements(text, "service-ips")
    assert "reject with tcp reset" in chain_body(text, "reject-chain")
    assert "type filter hook output" in chain_body(text, "filter-output")


def test_node_port_matches_local_addresses_and_marks_for_masquerade() -> None:
    svc = service(type="NodePort")
    svc["spec"]["ports"][0]["nodePort"] = 30080
    slices = [endpoint_slice("web", endpoint("10.1.0.1"))]
    text = render([svc], slices, SETTINGS)
    port = service_ports(svc, slices)[0]
    assert f"tcp . 30080 : goto {port.external_chain}" in map_elements(text, "service-nodeports")
    assert "jump mark-for-masquerade" in chain_body(text, port.external_chain)
    assert "fib daddr type local" in chain_body(text, "services")
    assert "masquerade" in chain_body(text, "masquerading")
    assert "hook postrouting priority srcnat" in chain_body(text, "nat-postrouting")


def test_node_port_of_a_cluster_ip_service_is_ignored() -> None:
    svc = service()
    svc["spec"]["ports"][0]["nodePort"] = 30080
    text = render([svc], [endpoint_slice("web", endpoint("10.1.0.1"))], SETTINGS)
    assert "30080" not in text


def test_hairpin_traffic_is_marked_in_the_endpoint_chain() -> None:
    slices = [endpoint_slice("web", endpoint("10.1.0.1"))]
    port = service_ports(service(), slices)[0]
    body = chain_body(render([service()], slices, SETTINGS), port.endpoint_chain(port.endpoints[0]))
    assert "ip saddr 10.1.0.1 jump mark-for-masquerade" in body


def test_external_ips_lead_to_the_external_chain() -> None:
    svc = service(externalIPs=["192.0.2.9"])
    slices = [endpoint_slice("web", endpoint("10.1.0.1"))]
    port = service_ports(svc, slices)[0]
    text = render([svc], slices, SETTINGS)
    assert f"192.0.2.9 . tcp . 80 : goto {port.external_chain}" in text


def test_headless_external_name_and_sctp_get_no_rules() -> None:
    headless = service("db", ip="None")
    external = service("ext", ip="", type="ExternalName", externalName="example.com")
    sctp = service("sctp", ip="10.96.0.30")
    sctp["spec"]["ports"][0]["protocol"] = "SCTP"
    slices = [endpoint_slice(n, endpoint("10.1.0.1")) for n in ("db", "ext", "sctp")]
    text = render([headless, external, sctp], slices, SETTINGS)
    assert "10.1.0.1" not in text and "elements" not in text


def test_iifnames_restrict_prerouting_and_table_name_is_a_setting() -> None:
    settings = ProxySettings(table="unistack-proxy-b", iifnames=("unistackbr0",))
    text = render([service()], [], settings)
    assert text.startswith("table ip unistack-proxy-b {")
    assert 'iifname { "unistackbr0" } jump services' in chain_body(text, "nat-prerouting")
    assert "jump services" in chain_body(text, "nat-output")


def test_render_is_stable_and_chain_names_are_identifiers() -> None:
    slices = [endpoint_slice("web", endpoint("10.1.0.2"), endpoint("10.1.0.1"))]
    assert render([service()], slices, SETTINGS) == render([service()], slices[::-1], SETTINGS)
    name = chain_name("svc", "ns/some name:with*odd/chars")
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_./-]*", name)
    assert name == chain_name("svc", "ns/some name:with*odd/chars")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and the nft binary"
)
def test_the_table_passes_nft_check() -> None:
    svc = service(type="LoadBalancer", externalIPs=["192.0.2.9"])
    svc["spec"]["ports"] += [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]
    svc["spec"]["ports"][0]["nodePort"] = 30080
    empty = service("empty", ip="10.96.0.21", type="NodePort")
    empty["spec"]["ports"][0]["nodePort"] = 30081
    slices = [endpoint_slice("web", endpoint("10.1.0.1"), endpoint("10.1.0.2"))]
    slices[0]["ports"].append({"name": "dns", "port": 5353, "protocol": "UDP"})
    settings = ProxySettings(table="unistack-check", iifnames=("eth0",), cluster_cidr="10.1.0.0/16")
    script = replace_table_script("ip", settings.table, render([svc, empty], slices, settings))
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=script, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
