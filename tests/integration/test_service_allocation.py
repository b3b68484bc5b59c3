"""Cluster IPs and node ports through the in-process API server, as kube-apiserver assigns them."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from tests.integration.conftest import Api
from unistack.apiserver.app import ApiServer
from unistack.client.transport import AsgiTransport
from unistack.store import SqliteStore

SERVICES = "/api/v1/namespaces/default/services"


def service(name: str, **spec: Any) -> dict[str, Any]:
    body = {"type": "ClusterIP", "ports": [{"port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


async def create(api: Api, name: str, **spec: Any) -> tuple[int, Any]:
    return await api.call("POST", SERVICES, service(name, **spec))


async def test_fifty_services_get_unique_addresses_and_node_ports(api: Api) -> None:
    addresses, node_ports = set(), set()
    for i in range(50):
        status, body = await create(api, f"s{i}", type="NodePort")
        assert status == 201, body
        ip = body["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
        assert body["spec"]["clusterIPs"] == [ip] and body["spec"]["ipFamilies"] == ["IPv4"]
        addresses.add(ip)
        node_ports.add(body["spec"]["ports"][0]["nodePort"])
    assert len(addresses) == 50 and "10.96.0.1" not in addresses
    assert len(node_ports) == 50 and all(30000 <= p <= 32767 for p in node_ports)


async def test_requested_address_is_honoured_once(api: Api) -> None:
    status, body = await create(api, "dns", clusterIP="10.96.0.10")
    assert status == 201 and body["spec"]["clusterIP"] == "10.96.0.10"
    status, body = await create(api, "dns2", clusterIP="10.96.0.10")
    assert status == 422
    assert body["message"].endswith(
        "failed to allocate IP 10.96.0.10: provided IP is already allocated"
    )


async def test_address_outside_the_range_is_refused(api: Api) -> None:
    status, body = await create(api, "far", clusterIP="10.0.0.1")
    assert status == 422
    assert body["message"] == (
        'Service "far" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: '
        "failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid "
        "range. The range of valid IPs is 10.96.0.0/12"
    )


async def test_node_ports_requested_out_of_range_or_taken_are_refused(api: Api) -> None:
    status, _ = await create(api, "a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert status == 201
    status, body = await create(api, "b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert status == 422 and "provided port is already allocated" in body["message"]
    status, body = await create(api, "c", type="NodePort", ports=[{"port": 80, "nodePort": 8080}])
    assert status == 422 and "The range of valid ports is 30000-32767" in body["message"]


async def test_delete_frees_address_and_node_port(api: Api) -> None:
    ports = [{"port": 1, "nodePort": 30050}]
    spec = {"clusterIP": "10.96.0.50", "type": "NodePort", "ports": ports}
    assert (await create(api, "a", **spec))[0] == 201
    status, _ = await api.call("DELETE", f"{SERVICES}/a")
    assert status == 200
    assert (await create(api, "b", **spec))[0] == 201


async def test_failed_create_does_not_keep_its_reservation(api: Api) -> None:
    assert (await create(api, "a"))[0] == 201
    status, _ = await create(api, "a", clusterIP="10.96.0.60")  # AlreadyExists
    assert status == 409
    assert (await create(api, "b", clusterIP="10.96.0.60"))[0] == 201


async def test_headless_and_external_name_get_no_address(api: Api) -> None:
    status, body = await create(api, "headless", clusterIP="None")
    assert status == 201 and body["spec"]["clusterIP"] == "None"
    external = service("ext", type="ExternalName", externalName="example.com")
    del external["spec"]["ports"]
    status, body = await api.call("POST", SERVICES, external)
    assert status == 201, body
    assert "clusterIP" not in body["spec"]


async def test_the_kubernetes_service_exists(api: Api) -> None:
    status, body = await api.call("GET", f"{SERVICES}/kubernetes")
    assert status == 200
    assert body["spec"]["clusterIP"] == "10.96.0.1"
    assert body["spec"]["ports"][0]["targetPort"] == 6443
    status, body = await api.call("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert status == 200
    assert body["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]


async def test_the_kubernetes_endpoints_follow_where_the_server_is_advertised(
    tmp_path: Path,
) -> None:
    """Pods reach the API server through the `kubernetes` Service: its Endpoints and the
    EndpointSlice the service proxy routes by name the advertised address and port, and a
    server started elsewhere corrects them."""
    for address, port in (("10.244.0.1", 16443), ("10.245.0.1", 6443)):
        store = SqliteStore(str(tmp_path / "store.db"))
        server = ApiServer(store, advertise=(address, port))
        await server.start()
        api = Api(AsgiTransport(server), server)
        try:
            status, endpoints = await api.call(
                "GET", "/api/v1/namespaces/default/endpoints/kubernetes"
            )
            assert status == 200
            assert endpoints["subsets"] == [{
                "addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }]  # fmt: skip
            path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
            status, found = await api.call("GET", path)
            assert status == 200
            assert found["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
            assert found["endpoints"][0]["addresses"] == [address]
            assert found["ports"] == [{"name": "https", "port": port, "protocol": "TCP"}]
        finally:
            server.stop()
            store.close()


async def test_update_without_cluster_ip_keeps_it(api: Api) -> None:
    status, created = await create(api, "a", type="NodePort")
    assert status == 201
    replacement = service("a", type="NodePort")
    replacement["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    status, body = await api.call("PUT", f"{SERVICES}/a", replacement)
    assert status == 200, body
    assert body["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert body["spec"]["ports"][0]["nodePort"] == created["spec"]["ports"][0]["nodePort"]


async def test_type_change_allocates_and_releases_node_ports(api: Api) -> None:
    assert (await create(api, "a"))[0] == 201
    patch = {"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30070}]}}
    status, body = await api.call(
        "PATCH", f"{SERVICES}/a", patch, content_type="application/merge-patch+json"
    )
    assert status == 200 and body["spec"]["ports"][0]["nodePort"] == 30070, body
    back = {"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": None}]}}
    status, body = await api.call(
        "PATCH", f"{SERVICES}/a", back, content_type="application/merge-patch+json"
    )
    assert status == 200, body
    ports = [{"port": 80, "nodePort": 30070}]
    assert (await create(api, "b", type="NodePort", ports=ports))[0] == 201


async def test_dry_run_create_does_not_consume_an_address(api: Api) -> None:
    status, body = await api.call(
        "POST", SERVICES, service("a", clusterIP="10.96.0.70"), params={"dryRun": "All"}
    )
    assert status == 201 and body["spec"]["clusterIP"] == "10.96.0.70"
    assert (await create(api, "b", clusterIP="10.96.0.70"))[0] == 201


async def test_addresses_survive_a_restart(api: Api) -> None:
    assert (await create(api, "a", clusterIP="10.96.0.80"))[0] == 201
    restarted = ApiServer(api.server.store)
    await restarted.start()
    again = Api(AsgiTransport(restarted), restarted)
    assert (await create(again, "b", clusterIP="10.96.0.80"))[0] == 422
    restarted.stop()
