"""`unistack.kube.dnsrecords`: cluster DNS records from Services and EndpointSlices (pure)."""

from __future__ import annotations

from typing import Any

from unistack.kube.dns import nameservers_from_resolv_conf, parse_upstream
from unistack.kube.dnsrecords import Srv, answers_for, build_zone, lookup

Obj = dict[str, Any]
DOMAIN = "cluster.local"


def service(name: str, cluster_ip: str, namespace: str = "default", **spec: Any) -> Obj:
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": ports, **spec},
    }


def endpoint_slice(service_name: str, *endpoints: Obj) -> Obj:
    return {
        "metadata": {
            "name": f"{service_name}-x",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def endpoint(ip: str, ready: bool = True, hostname: str | None = None) -> Obj:
    found: Obj = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        found["hostname"] = hostname
    return found


ZONE = build_zone(
    [
        service("web", "10.96.0.20"),
        service("db", "None"),
        service("ext", "", type="ExternalName", externalName="example.com."),
    ],
    [
        endpoint_slice(
            "db",
            endpoint("10.1.0.1", hostname="db-0"),
            endpoint("10.1.0.2"),
            endpoint("10.1.0.3", ready=False),
        ),
    ],
    DOMAIN,
)


def values(name: str, rtype: str) -> list[object]:
    return [r.value for r in lookup(ZONE, name, rtype).answers]


def test_service_name_is_its_cluster_ip_in_any_case() -> None:
    assert values("web.default.svc.cluster.local.", "A") == ["10.96.0.20"]
    assert values("WEB.Default.SVC.cluster.LOCAL", "A") == ["10.96.0.20"]


def test_headless_service_is_its_ready_endpoints() -> None:
    assert values("db.default.svc.cluster.local", "A") == ["10.1.0.1", "10.1.0.2"]
    assert values("db-0.db.default.svc.cluster.local", "A") == ["10.1.0.1"]
    assert values("10-1-0-2.db.default.svc.cluster.local", "A") == ["10.1.0.2"]
    assert lookup(ZONE, "10-1-0-3.db.default.svc.cluster.local", "A").rcode == "NXDOMAIN"


def test_srv_records_for_named_ports() -> None:
    assert values("_http._tcp.web.default.svc.cluster.local", "SRV") == [
        Srv(0, 100, 80, "web.default.svc.cluster.local")
    ]
    headless = lookup(ZONE, "_http._TCP.db.default.svc.cluster.local", "SRV")
    assert sorted(r.value.port for r in headless.answers if isinstance(r.value, Srv)) == [8080] * 2
    assert {r.value for r in headless.additional} == {"10.1.0.1", "10.1.0.2"}


def test_pod_names_are_answered_from_the_name() -> None:
    assert values("10-1-2-3.default.pod.cluster.local", "A") == ["10.1.2.3"]
    assert lookup(ZONE, "not-an-ip.default.pod.cluster.local", "A").rcode == "NXDOMAIN"


def test_ptr_for_cluster_ips() -> None:
    assert values("20.0.96.10.in-addr.arpa", "PTR") == ["web.default.svc.cluster.local"]
    assert answers_for(ZONE, "20.0.96.10.in-addr.arpa.")
    assert not answers_for(ZONE, "21.0.96.10.in-addr.arpa.")


def test_external_name_is_a_cname() -> None:
    found = lookup(ZONE, "ext.default.svc.cluster.local", "A").answers
    assert [(r.rtype, r.value) for r in found] == [("CNAME", "example.com")]


def test_unknown_names_are_nxdomain_and_existing_names_nodata() -> None:
    assert lookup(ZONE, "nope.default.svc.cluster.local", "A").rcode == "NXDOMAIN"
    nodata = lookup(ZONE, "web.default.svc.cluster.local", "AAAA")
    assert (nodata.rcode, nodata.answers) == ("NOERROR", ())
    assert lookup(ZONE, "default.svc.cluster.local", "A").rcode == "NOERROR"
    assert answers_for(ZONE, "anything.cluster.local")
    assert not answers_for(ZONE, "example.com")


def test_upstreams_from_resolv_conf_skip_loopback() -> None:
    text = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch x\nnameserver ::1\n"
    assert nameservers_from_resolv_conf(text) == ("10.255.255.53",)
    assert parse_upstream("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_upstream("[fd00::1]:53") == ("fd00::1", 53)
