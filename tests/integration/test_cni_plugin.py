"""The unistack-cni plugin against the real kernel, driven through ``invoke`` like the agent.

Needs root, iproute2 and nftables (skips with the reason otherwise). Every test gets its own
bridge ``unistackt<hex>``, a /24 from 10.213.0.0/16, namespaces ``unistack-test-<hex>`` and a
data dir under tmp_path; the fixture removes all of them even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from unistack.dataplane import bridge, masquerade, netns
from unistack.dataplane import cni as invoke
from unistack.dataplane import cniconf as conflist
from unistack.dataplane import cnierrors as errors
from unistack.dataplane.cnierrors import CniError
from unistack.integration.cni import server as cni_server

PLUGIN = os.path.join(os.path.dirname(sys.executable), "unistack-cni")
PING = ["ping"] if shutil.which("ping") else ["busybox", "ping"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create netns and links"),
    pytest.mark.skipif(
        not (shutil.which("ip") and shutil.which("nft")), reason="needs iproute2 and nftables"
    ),
    pytest.mark.skipif(not os.access(PLUGIN, os.X_OK), reason=f"{PLUGIN} not installed"),
]


@dataclass
class Net:
    """One throwaway pod network and everything a test made in it."""

    conf: dict[str, Any]
    bridge: str
    subnet_prefix: str
    data_dir: Path
    namespaces: list[str] = field(default_factory=list)
    containers: list[tuple[str, str]] = field(default_factory=list)

    def pod(self) -> tuple[str, str]:
        """A new (container id, netns path)."""
        name = f"unistack-test-{secrets.token_hex(4)}"
        self.namespaces.append(name)
        path = netns.LinuxNamespaces().create(name)
        container_id = f"c{secrets.token_hex(6)}"
        self.containers.append((container_id, "eth0"))
        return container_id, path

    async def add(self, container_id: str, path: str) -> dict[str, Any]:
        return await invoke.add(self.conf, container_id, path)

    def ip_file(self, address: str) -> Path:
        return self.data_dir / self.conf["name"] / address.split("/")[0]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    suffix = secrets.token_hex(2)
    third = secrets.randbelow(250) + 1
    name = f"unistack-test-{suffix}"
    path = conflist.write_default_conf(
        str(tmp_path / "net.d"),
        name=name,
        bridge=f"unistackt{suffix}",
        subnet=f"10.213.{third}.0/24",
        gateway=f"10.213.{third}.1",
        cluster_cidr="10.213.0.0/16",
        data_dir=str(tmp_path / "ipam"),
        dns={"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
    )
    made = Net(
        conflist.load_conflist(path), f"unistackt{suffix}", f"10.213.{third}.", tmp_path / "ipam"
    )
    try:
        yield made
    finally:
        _teardown(made)


def _teardown(made: Net) -> None:
    links = bridge.LinuxPodLinks()
    for container_id, ifname in made.containers:
        links.detach(bridge.host_veth_name(container_id, ifname))
    for name in made.namespaces:
        netns.LinuxNamespaces().delete(name)
    bridge.delete_bridge(made.bridge)
    masquerade.remove(made.bridge)
    shutil.rmtree(made.data_dir, ignore_errors=True)


def ping(namespace_path: str, address: str) -> bool:
    name = os.path.basename(namespace_path)
    done = netns.run_in(name, [*PING, "-c1", "-W1", address.split("/")[0]])
    return done.returncode == 0


async def test_two_pods_get_addresses_and_reach_each_other(net: Net) -> None:
    (c1, ns1), (c2, ns2) = net.pod(), net.pod()
    r1, r2 = await net.add(c1, ns1), await net.add(c2, ns2)
    a1, a2 = r1["ips"][0]["address"], r2["ips"][0]["address"]
    assert a1.startswith(net.subnet_prefix) and a2.startswith(net.subnet_prefix) and a1 != a2
    assert r1["ips"][0]["gateway"] == net.subnet_prefix + "1"
    assert r1["interfaces"][2] == {
        "name": "eth0",
        "mac": r1["interfaces"][2]["mac"],
        "sandbox": ns1,
    }
    assert r1["dns"]["nameservers"] == ["10.96.0.10"]
    assert bridge.pod_addresses(ns1, "eth0") == [a1]
    assert ping(ns1, a2) and ping(ns2, a1) and ping(ns1, net.subnet_prefix + "1")
    host_veth = r1["interfaces"][1]["name"]
    assert Path(f"/sys/class/net/{host_veth}/brport/hairpin_mode").read_text().strip() == "1"
    assert masquerade.exists(net.bridge)


async def test_check_passes_then_fails_when_the_address_is_gone(net: Net) -> None:
    container_id, path = net.pod()
    added = await net.add(container_id, path)
    await invoke.check(net.conf, container_id, path, added)
    address = added["ips"][0]["address"]
    subprocess.run(
        ["ip", "-n", os.path.basename(path), "addr", "del", address, "dev", "eth0"], check=True
    )
    with pytest.raises(CniError) as caught:
        await invoke.check(net.conf, container_id, path, added)
    assert caught.value.code == errors.CHECK_FAILED
    assert f"address {address} missing" in caught.value.details


async def test_del_releases_and_is_idempotent(net: Net) -> None:
    container_id, path = net.pod()
    added = await net.add(container_id, path)
    host_veth = added["interfaces"][1]["name"]
    assert net.ip_file(added["ips"][0]["address"]).read_text() == f"{container_id}\neth0"
    await invoke.delete(net.conf, container_id, path, prev_result=added)
    assert not net.ip_file(added["ips"][0]["address"]).exists()
    assert not bridge.link_exists(host_veth)
    await invoke.delete(net.conf, container_id, path)
    netns.LinuxNamespaces().delete(os.path.basename(path))
    await invoke.delete(net.conf, container_id, path)  # the netns is gone: still fine


async def test_a_second_add_for_the_same_container_is_rejected(net: Net) -> None:
    container_id, path = net.pod()
    await net.add(container_id, path)
    with pytest.raises(CniError) as caught:
        await net.add(container_id, path)
    assert caught.value.code == errors.DUPLICATE_ALLOCATION
    assert "duplicate allocation is not allowed" in caught.value.msg


async def test_invalid_config_comes_back_as_a_cni_error(net: Net) -> None:
    container_id, path = net.pod()
    bad = json.loads(json.dumps(net.conf))
    bad["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.213.0.0/33"}]]
    with pytest.raises(CniError) as caught:
        await invoke.add(bad, container_id, path)
    assert caught.value.code == errors.INVALID_CONFIG


def test_version_and_missing_env_over_the_real_binary() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "VERSION"}
    done = subprocess.run([PLUGIN], input=b'{"cniVersion":"1.0.0"}', env=env, capture_output=True)
    assert done.returncode == 0
    assert json.loads(done.stdout)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
    env["CNI_COMMAND"] = "ADD"
    done = subprocess.run([PLUGIN], input=b'{"cniVersion":"1.0.0"}', env=env, capture_output=True)
    assert done.returncode == 1 and done.stderr == b""
    assert json.loads(done.stdout)["code"] == errors.INVALID_ENVIRONMENT


@pytest.mark.parametrize("agent_listens", [True, False])
async def test_the_installed_thin_plugin_works_with_and_without_the_agent(
    net: Net, tmp_path: Path, agent_listens: bool
) -> None:
    socket = str(tmp_path / "cni" / "unistack-cni.sock")
    bin_dir = conflist.install_plugin(str(tmp_path / "bin"), socket)
    launcher = Path(bin_dir) / "unistack-cni"
    assert launcher.read_text().startswith(f"#!{sys.executable} -IS\n")
    written = launcher.stat().st_mtime_ns
    assert conflist.install_plugin(bin_dir, socket) == bin_dir
    assert launcher.stat().st_mtime_ns == written  # unchanged: not written again
    container_id, path = net.pod()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(cni_server.serving(socket)) if agent_listens else None
        added = await invoke.add(net.conf, container_id, path, cni_path=[bin_dir])
        await invoke.check(net.conf, container_id, path, added, cni_path=[bin_dir])
        assert net.ip_file(added["ips"][0]["address"]).exists()
        await invoke.delete(net.conf, container_id, path, cni_path=[bin_dir])
        assert not net.ip_file(added["ips"][0]["address"]).exists()
        with pytest.raises(CniError) as caught:  # errors come back as the plugin's own
            await invoke.check(net.conf, container_id, path, added, cni_path=[bin_dir])
        assert caught.value.code == errors.CHECK_FAILED
        if server is not None:
            assert server.handled == 4  # every call went to the "agent"
    assert not os.path.exists(socket)


async def test_add_and_del_latency(
    net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    container_id, path = net.pod()
    socket = str(tmp_path / "unistack-cni.sock")
    cni_path = [conflist.install_plugin(str(tmp_path / "bin"), socket)]  # as the agent runs it
    with cni_server.serving(socket):
        thin = await _time_add_and_del(net, container_id, path, cni_path)
    standalone = await _time_add_and_del(net, container_id, path, None)
    for what, (adds, dels) in (("thin, to a server", thin), ("standalone", standalone)):
        add_ms, del_ms = statistics.median(adds) * 1000, statistics.median(dels) * 1000
        with capsys.disabled():
            print(f"\nunistack-cni ({what}) median of 20: ADD {add_ms:.1f} ms, DEL {del_ms:.1f} ms")
        assert add_ms < 1000 and del_ms < 1000


async def _time_add_and_del(
    net: Net, container_id: str, path: str, cni_path: list[str] | None
) -> tuple[list[float], list[float]]:
    adds, dels = [], []
    for _ in range(20):
        start = time.perf_counter()
        await invoke.add(net.conf, container_id, path, cni_path=cni_path)
        adds.append(time.perf_counter() - start)
        start = time.perf_counter()
        await invoke.delete(net.conf, container_id, path, cni_path=cni_path)
        dels.append(time.perf_counter() - start)
    return adds, dels
