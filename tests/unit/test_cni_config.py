"""CNI environment and network config decoding, with the spec's error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from unistack.dataplane import cnierrors as errors
from unistack.dataplane.cnierrors import CniError
from unistack.integration.cni import config

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def conf(**overrides: Any) -> bytes:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "pods",
        "type": "unistack-cni",
        "bridge": "unistack0",
        "isGateway": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]},
    }
    base.update(overrides)
    return json.dumps(base).encode()


def code_of(call: Any, *args: Any) -> int:
    with pytest.raises(CniError) as caught:
        call(*args)
    return caught.value.code


def test_env_is_read_for_add() -> None:
    env = config.parse_env(ENV)
    assert (env.command, env.container_id, env.netns, env.ifname) == (
        "ADD",
        "c1",
        "/run/netns/x",
        "eth0",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"CNI_COMMAND": "FROB"},
        {"CNI_COMMAND": ""},
        {"CNI_CONTAINERID": ""},
        {"CNI_CONTAINERID": "../x"},
        {"CNI_IFNAME": "a-name-longer-than-15"},
        {"CNI_NETNS": ""},
        {"CNI_PATH": ""},
    ],
)
def test_bad_env_is_code_4(change: dict[str, str]) -> None:
    assert code_of(config.parse_env, {**ENV, **change}) == errors.INVALID_ENVIRONMENT


def test_del_needs_no_netns_and_version_needs_nothing() -> None:
    assert config.parse_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert config.parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"


def test_defaults() -> None:
    net = config.parse_conf(conf())
    assert net.bridge_name == "unistack0"
    assert net.hairpin and net.is_gateway and not net.ip_masq
    assert net.cluster_cidrs == ("10.244.0.0/24",)
    assert net.data_dir == config.DEFAULT_DATA_DIR
    assert net.mtu is None and net.prev_result is None


def test_cluster_cidr_and_routes_are_read() -> None:
    ipam_conf = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.244.1.1"}],
        "dataDir": "/tmp/x",
    }
    net = config.parse_conf(conf(clusterCIDR="10.244.0.0/16,10.96.0.0/12", ipam=ipam_conf))
    assert net.cluster_cidrs == ("10.244.0.0/16", "10.96.0.0/12")
    assert [(r.dst, r.gw) for r in net.routes] == [
        ("0.0.0.0/0", None),
        ("10.96.0.0/12", "10.244.1.1"),
    ]
    assert net.data_dir == "/tmp/x"


def test_legacy_subnet_form_is_one_range_set() -> None:
    net = config.parse_conf(conf(ipam={"type": "host-local", "subnet": "10.244.2.0/24"}))
    assert str(net.range_sets[0].ranges[0].subnet) == "10.244.2.0/24"


def test_not_json_is_code_6() -> None:
    assert code_of(config.parse_conf, b"{nope") == errors.DECODE_FAILURE
    assert code_of(config.parse_conf, b"[1]") == errors.DECODE_FAILURE


def test_unknown_version_is_code_1() -> None:
    assert code_of(config.parse_conf, conf(cniVersion="2.0.0")) == errors.INCOMPATIBLE_VERSION


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": ""},
        {"type": None},
        {"ipam": {"type": "dhcp"}},
        {"ipam": {"type": "host-local"}},
        {"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/33"}]]}},
        {"mtu": 10},
        {"bridge": "a/b"},
        {"clusterCIDR": "nonsense"},
    ],
)
def test_invalid_config_is_code_7(overrides: dict[str, Any]) -> None:
    assert code_of(config.parse_conf, conf(**overrides)) == errors.INVALID_CONFIG
