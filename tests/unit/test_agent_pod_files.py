"""The files every pod gets: /etc/resolv.conf by dnsPolicy, from the cluster's DNS or the
node's own resolvers."""

from __future__ import annotations

from pathlib import Path

from unistack.agent.volumes import DnsConfig, node_resolvers, write_pod_files

NODE = """\
# the host's
nameserver 127.0.0.53
nameserver 10.255.255.53  # upstream
search corp.example lab.example
options edns0
"""


def pod(policy: str | None = None, **config: object) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if policy:
        spec["dnsPolicy"] = policy
    if config:
        spec["dnsConfig"] = config
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": spec}


def resolv_conf(tmp_path: Path, obj: dict) -> list[str]:
    servers, searches = node_resolvers(NODE)
    dns = DnsConfig(("10.96.0.10",), ("cluster.local",), node_nameservers=servers,
                    node_searches=searches)  # fmt: skip
    write_pod_files(obj, tmp_path, "10.244.0.9", dns)
    return (tmp_path / "resolv.conf").read_text().splitlines()


def test_the_node_resolvers_are_read() -> None:
    servers = ("127.0.0.53", "10.255.255.53")
    assert node_resolvers(NODE) == (servers, ("corp.example", "lab.example"))
    assert node_resolvers("") == ((), ())


def test_cluster_first_asks_the_cluster_dns(tmp_path: Path) -> None:
    lines = resolv_conf(tmp_path, pod())
    assert lines[0].startswith("search team.svc.cluster.local svc.cluster.local cluster.local")
    assert "nameserver 10.96.0.10" in lines and "nameserver 10.255.255.53" not in lines


def test_default_asks_the_nodes_resolvers(tmp_path: Path) -> None:
    lines = resolv_conf(tmp_path, pod("Default", nameservers=["192.0.2.1"]))
    assert lines == [
        "search corp.example lab.example",
        "nameserver 10.255.255.53",  # not 127.0.0.53: a pod's loopback is its own
        "nameserver 192.0.2.1",
    ]


def test_none_takes_only_the_pods_own_config(tmp_path: Path) -> None:
    lines = resolv_conf(tmp_path, pod("None", nameservers=["192.0.2.1"], searches=["x.example"]))
    assert lines == ["search x.example", "nameserver 192.0.2.1"]


def test_a_pod_on_the_hosts_network_asks_the_nodes_resolvers_unless_told(tmp_path: Path) -> None:
    on_host = pod()
    on_host["spec"]["hostNetwork"] = True
    lines = resolv_conf(tmp_path, on_host)
    assert "nameserver 10.255.255.53" in lines
    assert "nameserver 127.0.0.53" in lines  # the node's loopback is its own
    on_host["spec"]["dnsPolicy"] = "ClusterFirstWithHostNet"
    assert "nameserver 10.96.0.10" in resolv_conf(tmp_path, on_host)
