"""Projects are isolated: another project's server cannot reach a server, nor see it.

The admin makes projects A and B with a member user each; each member, with the real
openstack CLI, makes a network with the SAME subnet range (overlapping tenant subnets are
separate L2 segments behind separate router namespaces), a router to the public network and
a server. A's server boots on a port with a fixed address no server of B has, and a
floating IP; A's default group lets ICMP in from anywhere, so only the network stands
between B and it:

- B's server reaches its own gateway and the host through SNAT (B's network works), and
  pings A's floating IP (the path between the routers exists), but not A's fixed address
  (another L2 segment: nothing answers ARP for it there);
- TCP from B to A's floating IP is dropped while A's default group admits only its own
  members, and gets through once A allows the port from 0.0.0.0/0 (so the probe can fail);
- through the API, B gets 404 for A's server and network, on show and on delete, and they
  are still there afterwards.

Each identity's commands run in one interactive `openstack` session (the CLI reading them
from stdin), the two projects' side by side, so the CLI's start-up is paid a few times, not
forty. The cloud is this module's own (`unistack up` as root, container servers), taken
down with `unistack down` at the end. Needs root, runc and nftables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, free_port, in_netns, running, start_cluster, wait_for
from tests.e2e.test_instances import BUSYBOX, address_of, in_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None,
        reason="real instances need root, runc and nftables",
    ),
]
CIDR = "10.70.0.0/24"  # both projects' subnets
A_ADDRESS = "10.70.0.77"  # A's server; B's gets the first free address of its own subnet
PORT = 7777


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running_cloud = start_cluster(
        tmp_path_factory.mktemp("unistack-tenants"), free_port(), "tenants"
    )
    try:
        yield running_cloud
    finally:
        running_cloud.unistack("down")
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert "unistacktenants" not in links


def session(
    cluster: Cluster, auth: dict[str, str], commands: list[str], check: bool = True
) -> tuple[list[Any], str]:
    """Run `commands` as `auth` (the admin when empty) in one `openstack` interactive
    session: one start-up and one login for all, instead of ~1.5 s of each per command.
    The JSON documents they printed, in order (only commands given `-f json` print one), and
    what the session wrote to stderr."""
    command = shutil.which("openstack", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("python-openstackclient is not installed")
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(cluster.state_dir / "clouds.yaml"),
        "OS_CLOUD": "unistack",
        **auth,
    }
    result = subprocess.run(
        [command], input="\n".join(commands) + "\n", capture_output=True, text=True,
        env=env, timeout=240,
    )  # fmt: skip
    if check and result.stderr.strip():  # the shell's exit status is 1 even when all went well
        raise AssertionError(f"openstack session failed:\n{result.stdout}\n{result.stderr}")
    documents, decoder, text = [], json.JSONDecoder(), result.stdout.strip()
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].lstrip()
    return documents, result.stderr


def member(project: str) -> dict[str, str]:
    """The auth of `project`'s member user, for `Cluster.openstack`."""
    return {
        "OS_USERNAME": f"{project}-member",
        "OS_PASSWORD": f"pw-{project}",
        "OS_PROJECT_NAME": project,
    }


def admin_makes(project: str) -> list[str]:
    """The project and its member user: prints both."""
    user, password = member(project)["OS_USERNAME"], member(project)["OS_PASSWORD"]
    return [
        f"project create {project} -f json",
        f"user create {user} --password {password} --project {project} -f json",
        f"role add --project {project} --user {user} member",
    ]


def member_makes(project: str) -> list[str]:
    """Network, subnet on CIDR and a router to the public network: prints all three."""
    return [
        f"network create {project}-net -f json",
        f"subnet create {project}-v4 --network {project}-net --subnet-range {CIDR} -f json",
        f"router create {project}-router --external-gateway public -f json",
        f"router add subnet {project}-router {project}-v4",
    ]


def boots(project: str, *nic: str) -> str:
    """The member's server on its network: prints it once ACTIVE."""
    return (
        f"server create {project}-server --image busybox --flavor m1.nano {' '.join(nic)}"
        " --wait -f json"
    )


def pings(server_id: str, address: str, wait: int = 2) -> bool:
    return in_server(server_id, "ping", "-c", "1", "-W", str(wait), address).returncode == 0


def tcp_hello(client_id: str, address: str, wait: int = 2) -> bool:
    """Whether the listener at `address` answers `client_id`'s connection with its hello."""
    probe = in_server(client_id, "nc", "-w", str(wait), address, str(PORT), timeout=15)
    return probe.returncode == 0 and "hello" in probe.stdout


def http_status(cluster: Cluster, method: str, path: str, token: str) -> int:
    """The status of a raw API request with `token`, `path` under the gateway."""
    clouds = yaml.safe_load((cluster.state_dir / "clouds.yaml").read_text())
    gateway = clouds["clouds"]["unistack"]["auth"]["auth_url"].rstrip("/").rsplit("/identity")[0]
    request = urllib.request.Request(gateway + path, method=method, headers={"X-Auth-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_another_projects_server_cannot_reach_or_see_a_server(tenants: Cluster) -> None:
    cluster = tenants
    as_a, as_b = member("alpha"), member("beta")
    (*_, public), _ = session(
        cluster,
        {},
        [*admin_makes("alpha"), *admin_makes("beta"), "subnet show public-subnet -f json"],
    )
    a_commands = [
        *member_makes("alpha"),
        "port create alpha-port --network alpha-net"
        f" --fixed-ip subnet=alpha-v4,ip-address={A_ADDRESS} -f json",
        "floating ip create public --port alpha-port -f json",
        # A's default group: ICMP from anywhere; TCP only from members of the group
        "security group rule create default --ingress --protocol icmp"
        " --remote-ip 0.0.0.0/0 -f json",
        boots("alpha", "--port", "alpha-port"),
    ]
    b_commands = [*member_makes("beta"), boots("beta", "--network", "beta-net")]
    with ThreadPoolExecutor(2) as pool:  # the two projects' sessions side by side
        making_a = pool.submit(session, cluster, as_a, a_commands)
        making_b = pool.submit(session, cluster, as_b, b_commands)
        (net_a, *_, fip, _, a), _ = making_a.result()
        (*_, b), _ = making_b.result()
        assert a["status"] == b["status"] == "ACTIVE", (a, b)
        a_id, b_id, fip_address = a["id"], b["id"], fip["floating_ip_address"]
        # B's view through the API, asked while the data plane is probed
        b_sees = pool.submit(
            session, cluster, as_b,
            ["server list -f json", "network list -f json", f"server show {a_id}",
             "token issue -f json"],
            check=False,
        )  # fmt: skip
        assert address_of(a, "alpha-net") == A_ADDRESS
        b_address = address_of(b, "beta-net")  # the same range, another segment
        assert b_address.startswith("10.70.0.") and b_address != A_ADDRESS

        # B's overlapping network works: its gateway, the host's address through SNAT
        host_address = public["gateway_ip"]
        wait_for(lambda: pings(b_id, "10.70.0.1"), "B's server to ping its own gateway", 30)
        wait_for(lambda: pings(b_id, host_address), "B's server to reach the host (SNAT)", 30)
        wait_for(lambda: pings(a_id, host_address), "A's server to reach the host (SNAT)", 30)
        # ... and reaches A's floating IP (ICMP is allowed), never A's fixed address
        wait_for(lambda: pings(b_id, fip_address), "B's server to ping A's floating IP", 30)
        assert not pings(b_id, A_ADDRESS, wait=1)

        serve = f"while true; do echo hello | nc -l -p {PORT}; done"
        with running([*in_netns(f"unistack-server-{a_id}"), BUSYBOX, "sh", "-c", serve]):
            wait_for(lambda: tcp_hello(a_id, "127.0.0.1"), "A's listener", 10)
            assert not tcp_hello(b_id, fip_address)
            assert not tcp_hello(b_id, A_ADDRESS, wait=1)
            cluster.openstack(
                "security", "group", "rule", "create", "default", "--ingress",
                "--protocol", "tcp", "--dst-port", str(PORT), "--remote-ip", "0.0.0.0/0", **as_a,
            )  # fmt: skip
            wait_for(lambda: tcp_hello(b_id, fip_address), "the rule to let B's TCP in", 30)
            assert not tcp_hello(b_id, A_ADDRESS, wait=1)

        # The API: B neither sees nor touches A's server and network
        (servers, networks, token), refused = b_sees.result()
    assert a_id not in {s["ID"] for s in servers}
    assert net_a["id"] not in {n["ID"] for n in networks}
    assert refused.strip() == f"No Server found for {a_id}"
    for method in ("GET", "DELETE"):
        assert http_status(cluster, method, f"/compute/v2.1/servers/{a_id}", token["id"]) == 404
        network_path = f"/network/v2.0/networks/{net_a['id']}"
        assert http_status(cluster, method, network_path, token["id"]) == 404
    # ... and they are still there
    (servers, network), _ = session(
        cluster, as_a, ["server list -f json", f"network show {net_a['id']} -f json"]
    )
    assert [(s["ID"], s["Status"]) for s in servers] == [(a_id, "ACTIVE")]
    assert network["id"] == net_a["id"]
