"""Servers are real machines: the openstack CLI boots system containers on tenant networks,
on a cloud of two hosts (`unistack up --hosts 2`: the second is a network namespace with its
own agent).

Two servers on one network reach each other; a security group keeps TCP out until a rule lets
it in; the console shows the guest's own boot line; servers on the two hosts reach each other
over VXLAN; a volume in one host's pool serves a server on the other. The instances' network
namespaces (`unistack-server-<id>`) are where the guests' interfaces live, so commands run
there with the host's busybox see exactly the guest's network.
Needs root, runc and nftables (without them the agent runs no instances).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, free_port, in_netns, running, start_cluster, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None,
        reason="real instances need root, runc and nftables",
    ),
]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("unistack-hosts")
    underlay = (
        "--hosts", "2", "--hosts-cidr", "10.254.13.0/24", "--vxlan-port", "4790",
        "--nbd-port", "10810",
    )  # fmt: skip
    running = start_cluster(state, free_port(), "hosts", *underlay)
    try:
        yield running
    finally:
        running.unistack("down")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "unistack-host-unistackhosts" not in left


def in_server(server_id: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """Run a host busybox applet inside the server's network namespace."""
    return subprocess.run(
        [*in_netns(f"unistack-server-{server_id}"), BUSYBOX, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def boot(cluster: Cluster, name: str, network: str, *extra: str) -> dict:
    return cluster.create_server(
        name, "--image", "busybox", "--flavor", "m1.nano", "--network", network, *extra
    )


def address_of(server: dict, network: str) -> str:
    return str(server["addresses"][network][0])


def tcp_open(client_id: str, address: str, port: int) -> bool:
    probe = in_server(client_id, "nc", "-w", "2", address, str(port), timeout=15)
    return probe.returncode == 0 and "hello" in probe.stdout


def test_servers_on_a_tenant_network_ping_and_security_groups_filter_tcp(
    hosts: Cluster,
) -> None:
    cluster = hosts
    suffix = uuid.uuid4().hex[:6]
    net, web = f"tenant-{suffix}", f"web-{suffix}"
    cluster.openstack("network", "create", net)
    cluster.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.61.0.0/24"
    )
    cluster.openstack("security", "group", "create", web)
    first = boot(cluster, f"a-{suffix}", net)
    second = boot(cluster, f"b-{suffix}", net, "--security-group", web)
    there = address_of(second, net)
    try:
        console = cluster.openstack("console", "log", "show", first["id"]).stdout
        assert f"unistack: instance {first['id']} up" in console
        # The web group has no ingress rule: nothing gets in, not even ping.
        assert in_server(first["id"], "ping", "-c", "1", "-W", "2", there).returncode != 0
        serve = "while true; do echo hello | nc -l -p 7777; done"
        with running([*in_netns(f"unistack-server-{second['id']}"), BUSYBOX, "sh", "-c", serve]):
            assert not tcp_open(first["id"], there, 7777)
            cluster.openstack(
                "security", "group", "rule", "create", web,
                "--ingress", "--protocol", "tcp", "--dst-port", "7777",
            )  # fmt: skip
            wait_for(lambda: tcp_open(first["id"], there, 7777), "the rule to let TCP in", 30)
            cluster.openstack("security", "group", "rule", "create", web, "--protocol", "icmp")
            wait_for(
                lambda: in_server(first["id"], "ping", "-c", "1", "-W", "2", there).returncode == 0,
                "the rule to let ping in",
                30,
            )
        # The first server's default group admits only its own members: the second server,
        # in another group, cannot start a ping to it — though the first server's own TCP
        # and ping to the second got their replies back (stateful).
        back = in_server(second["id"], "ping", "-c", "1", "-W", "2", address_of(first, net))
        assert back.returncode != 0, back.stdout
    finally:
        for server in (first, second):
            cluster.delete_servers(server["id"])
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert first["id"] not in netns and second["id"] not in netns
    cluster.openstack("security", "group", "delete", web)
    cluster.openstack("network", "delete", net)


def test_servers_on_two_hosts_reach_each_other_over_vxlan(hosts: Cluster) -> None:
    nodes = {h["Hypervisor Hostname"] for h in hosts.openstack_json("hypervisor", "list")}
    assert nodes == {"hosts-agent", "hosts-agent-2"}
    suffix = uuid.uuid4().hex[:6]
    net = f"spread-{suffix}"
    hosts.openstack("network", "create", net)
    hosts.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.62.0.0/24"
    )
    here = boot(hosts, f"here-{suffix}", net, "--availability-zone", "nova:hosts-agent")
    there = boot(hosts, f"there-{suffix}", net, "--availability-zone", "nova:hosts-agent-2")
    try:
        assert here["OS-EXT-SRV-ATTR:host"] == "hosts-agent"
        assert there["OS-EXT-SRV-ATTR:host"] == "hosts-agent-2"
        reply = in_server(here["id"], "ping", "-c", "2", "-W", "2", address_of(there, net))
        assert reply.returncode == 0, reply.stdout + reply.stderr
        # The second host's bridge tunnels to the first: its VXLAN device floods to host 1.
        fdb = subprocess.run(
            [*in_netns("unistack-host-unistackhosts-2"), "bridge", "fdb", "show"],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert "dst 10.254.13.1" in fdb
    finally:
        for server in (here, there):
            hosts.delete_servers(server["id"])
    hosts.openstack("network", "delete", net)


@pytest.mark.deep
def test_an_interface_attached_to_a_running_server_reaches_its_guest(hosts: Cluster) -> None:
    """`openstack server add network`: the running server gets eth1 with its new port's
    address and reaches a server of that network on the other host; `server remove
    network` takes eth1 away again."""
    suffix = uuid.uuid4().hex[:6]
    first, second = f"plug-a-{suffix}", f"plug-b-{suffix}"
    for net, cidr in ((first, "10.64.0.0/24"), (second, "10.65.0.0/24")):
        hosts.openstack("network", "create", net)
        hosts.openstack("subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", cidr)
    server = boot(hosts, f"plugged-{suffix}", first, "--availability-zone", "nova:hosts-agent")
    peer = boot(hosts, f"peer-{suffix}", second, "--availability-zone", "nova:hosts-agent-2")
    try:
        hosts.openstack("server", "add", "network", server["id"], second)
        address = address_of(hosts.openstack_json("server", "show", server["id"]), second)
        inside = guest_sh(hosts, "hosts-agent", server["id"], "ip -o -4 addr show dev eth1")
        assert f"inet {address}/24" in inside, inside
        reply = in_server(server["id"], "ping", "-c", "2", "-W", "2", address_of(peer, second))
        assert reply.returncode == 0, reply.stdout + reply.stderr

        hosts.openstack("server", "remove", "network", server["id"], second)
        links = guest_sh(hosts, "hosts-agent", server["id"], "ip -o link")
        assert " eth1" not in links and " eth0" in links, links
        shown = hosts.openstack_json("server", "show", server["id"])
        assert list(shown["addresses"]) == [first]
    finally:
        for made in (server, peer):
            hosts.delete_servers(made["id"])
    for net in (first, second):
        hosts.openstack("network", "delete", net)


def _ipv4_of(device: str, *enter: str) -> list[str]:
    shown = subprocess.run(
        [*enter, "ip", "-4", "-br", "addr", "show", "dev", device],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return shown[2:]


@pytest.mark.deep
def test_a_router_on_the_second_host_reaches_and_is_reached_from_the_machine(
    hosts: Cluster,
) -> None:
    """The machine is the public network's uplink. A router on host 2 reaches its gateway
    address over the public network's VXLAN (SNAT), and its floating IP answers the machine,
    though the server behind it runs on host 1; host 2's public bridge holds no address."""
    from unistack.agent import l3
    from unistack.dataplane import tenantnames

    suffix = uuid.uuid4().hex[:6]
    net, sg = f"uplink-{suffix}", f"uplink-{suffix}"
    routers = []
    for n in range(16):  # rendezvous hashing places each router: keep one placed on host 2
        routers.append(hosts.openstack_json("router", "create", f"{net}-{n}")["id"])
        if l3.router_host(routers[-1], ["hosts-agent", "hosts-agent-2"]) == "hosts-agent-2":
            break
    router = routers.pop()
    for other in routers:
        hosts.openstack("router", "delete", other)
    hosts.openstack("network", "create", net)
    cidr = ("--subnet-range", "10.63.0.0/24")
    hosts.openstack("subnet", "create", f"{net}-v4", "--network", net, *cidr)
    hosts.openstack("router", "add", "subnet", router, f"{net}-v4")
    hosts.openstack("router", "set", router, "--external-gateway", "public")
    public = hosts.openstack_json("subnet", "show", "public-subnet")
    bridge = tenantnames.bridge_name(public["network_id"])
    hosts.openstack("security", "group", "create", sg)
    hosts.openstack("security", "group", "rule", "create", sg, "--protocol", "icmp")
    placed = ("--availability-zone", "nova:hosts-agent", "--security-group", sg)
    server = boot(hosts, net, net, *placed)
    fip = ""
    try:
        gateway_ports = hosts.openstack_json(
            "port", "list", "--router", router, "--device-owner", "network:router_gateway"
        )
        port = hosts.openstack_json("port", "show", gateway_ports[0]["ID"])
        assert port["binding_host_id"] == "hosts-agent-2"
        assert _ipv4_of(bridge) == [f"{public['gateway_ip']}/24"]
        assert _ipv4_of(bridge, *in_netns("unistack-host-unistackhosts-2")) == []
        up = public["gateway_ip"]
        wait_for(lambda: in_server(server["id"], "ping", "-c", "1", "-W", "2", up).returncode == 0,
                 "a ping to the machine through SNAT on host 2", 30)  # fmt: skip
        fip = hosts.openstack_json("floating", "ip", "create", "public")["floating_ip_address"]
        hosts.openstack("server", "add", "floating", "ip", server["id"], fip)

        def answers() -> bool:
            ping = [BUSYBOX, "ping", "-c", "1", "-W", "2", fip]
            return subprocess.run(ping, capture_output=True, timeout=10).returncode == 0

        wait_for(answers, "the floating IP to answer the machine", 30)
        # and the server reaches its own floating IP (hairpin through the router)
        reply = in_server(server["id"], "ping", "-c", "1", "-W", "2", fip)
        assert reply.returncode == 0, reply.stdout + reply.stderr
    finally:
        hosts.delete_servers(server["id"])
        if fip:
            hosts.openstack("floating", "ip", "delete", fip)
        hosts.openstack("router", "remove", "subnet", router, f"{net}-v4")
        hosts.openstack("router", "delete", router)
    hosts.openstack("network", "delete", net)
    hosts.openstack("security", "group", "delete", sg)


def network_and_pool_volume(hosts: Cluster, name: str, cidr: str) -> tuple[dict, str]:
    """A network `name` with a subnet, and an available 1 GiB volume `name`: the volume and
    the host whose pool holds it."""
    hosts.openstack("network", "create", name)
    hosts.openstack("subnet", "create", f"{name}-v4", "--network", name, "--subnet-range", cidr)
    volume = hosts.openstack_json("volume", "create", "--size", "1", name)
    wait_for(
        lambda: hosts.openstack_json("volume", "show", volume["id"])["status"] == "available",
        "the volume is available",
    )
    where = hosts.openstack_json("volume", "show", volume["id"])["os-vol-host-attr:host"]
    node = where.partition("@")[0]
    assert node in {"hosts-agent", "hosts-agent-2"}, where
    return volume, node


def remove_with_volume(hosts: Cluster, servers: tuple[dict, ...], volume: dict) -> None:
    """The servers deleted, then their volume once it is detached."""
    for each in servers:
        hosts.delete_servers(each["id"])
    wait_for(
        lambda: hosts.openstack_json("volume", "show", volume["id"])["status"] == "available",
        "the volume is detached",
    )
    hosts.openstack("volume", "delete", volume["id"])


@pytest.mark.deep
def test_a_server_booted_with_a_volume_goes_to_the_volumes_host(hosts: Cluster) -> None:
    """A server booted with a volume (block device mapping) is scheduled to the host whose
    pool holds it, whichever host has more free RAM: there it needs no connection."""
    net = f"near-{uuid.uuid4().hex[:6]}"
    volume, node = network_and_pool_volume(hosts, net, "10.63.0.0/24")
    mapping = f"uuid={volume['id']},source_type=volume,destination_type=volume,boot_index=-1"
    server = boot(hosts, net, net, "--block-device", mapping)
    try:
        assert server["OS-EXT-SRV-ATTR:host"] == node
        attached = [v["id"] for v in server["volumes_attached"]]
        assert attached == [volume["id"]]
    finally:
        remove_with_volume(hosts, (server,), volume)
    hosts.openstack("network", "delete", net)


@pytest.mark.deep
def test_an_unshelved_server_comes_back_to_its_volumes_host(hosts: Cluster) -> None:
    """A server shelved with a volume attached is scheduled again at unshelve, and its
    volume's host is preferred: it goes there although the other host has more free RAM (a
    second server stays on the volume's host meanwhile)."""
    suffix = uuid.uuid4().hex[:6]
    net = f"shelf-{suffix}"
    volume, node = network_and_pool_volume(hosts, net, "10.64.0.0/24")

    def volume_status() -> str:
        return str(hosts.openstack_json("volume", "show", volume["id"])["status"])

    # Booted with the volume, not pinned (a server created with `--host` keeps that host).
    mapping = f"uuid={volume['id']},source_type=volume,destination_type=volume,boot_index=-1"
    server = boot(hosts, f"shelf-{suffix}", net, "--block-device", mapping)
    on_node = ("--os-compute-api-version", "2.74", "--host", node)
    filler = boot(hosts, f"filler-{suffix}", net, *on_node)
    try:
        assert server["OS-EXT-SRV-ATTR:host"] == filler["OS-EXT-SRV-ATTR:host"] == node

        def status() -> str:
            return str(hosts.openstack_json("server", "show", server["id"])["status"])

        hosts.openstack("server", "shelve", server["id"])
        wait_for(lambda: status() == "SHELVED_OFFLOADED", "the server is offloaded", 120)
        hosts.openstack("server", "unshelve", server["id"])
        wait_for(lambda: status() == "ACTIVE", "the server is back", 120)
        shown = hosts.openstack_json("server", "show", server["id"])
        assert shown["OS-EXT-SRV-ATTR:host"] == node
        assert [v["id"] for v in shown["volumes_attached"]] == [volume["id"]]
    finally:
        remove_with_volume(hosts, (server, filler), volume)
    hosts.openstack("network", "delete", net)


@pytest.mark.deep
def test_a_volume_in_one_hosts_pool_serves_a_server_on_the_other(hosts: Cluster) -> None:
    """Cinder's connection across hosts: the volume's host serves it over NBD with TLS and
    the server's host connects to it. What the far server writes to the volume, a server on
    the volume's own host reads after the move; detaching ends the connection."""
    suffix = uuid.uuid4().hex[:6]
    net = f"far-{suffix}"
    volume, node = network_and_pool_volume(hosts, net, "10.66.0.0/24")
    other = "hosts-agent-2" if node == "hosts-agent" else "hosts-agent"
    far = boot(hosts, f"far-{suffix}", net, "--os-compute-api-version", "2.74", "--host", other)
    near = boot(hosts, f"near-{suffix}", net, "--os-compute-api-version", "2.74", "--host", node)
    connections = _agent_dir(hosts, other) / "servers" / "connections"

    def volume_status() -> str:
        return str(hosts.openstack_json("volume", "show", volume["id"])["status"])

    def move(command: str, server: dict, status: str) -> None:
        hosts.openstack("server", command, "volume", server["id"], volume["id"])
        wait_for(lambda: volume_status() == status, f"the volume {status}", 60)

    try:
        assert far["OS-EXT-SRV-ATTR:host"] == other and near["OS-EXT-SRV-ATTR:host"] == node
        move("add", far, "in-use")
        assert [p.name for p in connections.glob("*.img")] == [f"{volume['id']}.img"]
        mark = f"written-on-{other}-{suffix}"
        guest_sh(hosts, other, far["id"], f"printf %s {mark} | dd of=/dev/vdb conv=fsync")
        move("remove", far, "available")
        assert list(connections.glob("*.img")) == []  # the connection ended
        move("add", near, "in-use")
        read = f"dd if=/dev/vdb bs={len(mark)} count=1 2>/dev/null"
        assert guest_sh(hosts, node, near["id"], read) == mark
        move("remove", near, "available")
    finally:
        remove_with_volume(hosts, (far, near), volume)
    hosts.openstack("network", "delete", net)


def guest_sh(cluster: Cluster, host: str, server_id: str, script: str) -> str:
    """Run `script` with the guest's own sh, inside the container server on `host`."""
    runc_root = _agent_dir(cluster, host) / "servers" / "container" / "runc"
    argv = ["runc", "--root", str(runc_root), "exec", f"unistack-server-{server_id}"]
    done = subprocess.run([*argv, "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None
    or not (Path.home() / ".cache" / "unistack" / "vm" / "manifest.json").exists(),
    reason="a VM server needs QEMU and the built-in VM image (make install builds it)",
)
@pytest.mark.skipif(
    shutil.which("genisoimage") is None or shutil.which("isoinfo") is None,
    reason="a VM's config drive needs genisoimage and isoinfo (make install installs them)",
)
def test_a_vm_server_boots_gets_its_address_and_answers_ping(hosts: Cluster) -> None:
    suffix = uuid.uuid4().hex[:6]
    net = f"vms-{suffix}"
    hosts.openstack("network", "create", net)
    hosts.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.63.0.0/24"
    )
    vm = hosts.create_server(
        f"vm-{suffix}", "--image", "unistack-vm", "--flavor", "m1.tiny", "--network", net,
        "--config-drive", "true",
    )  # fmt: skip
    peer = boot(hosts, f"peer-{suffix}", net)
    try:
        shown = vm
        address = address_of(shown, net)

        def booted() -> bool:
            console = hosts.console_output(vm["id"])
            return f"unistack: instance {vm['id']} up, eth0 {address}" in console

        wait_for(booted, "the VM's boot line on its console", 90)
        reply = in_server(peer["id"], "ping", "-c", "2", "-W", "3", address)
        assert reply.returncode == 0, reply.stdout + reply.stderr
        hypervisors = {h["Hypervisor Hostname"] for h in hosts.openstack_json("hypervisor", "list")}
        assert shown["OS-EXT-SRV-ATTR:host"] in hypervisors
        # its config drive: an ISO 9660 CD-ROM labelled config-2 holding its metadata
        drive = config_drive_of(vm["id"])
        label = subprocess.run(["blkid", "-p", "-o", "value", "-s", "LABEL", drive], **TEXT)
        assert label.stdout.strip() == "config-2"
        read = ["isoinfo", "-R", "-i", drive, "-x", "/openstack/latest/meta_data.json"]
        assert json.loads(subprocess.run(read, **TEXT).stdout)["uuid"] == vm["id"]

        # cold-migrated: its qcow2 overlay goes to the other host, rebased onto that host's
        # copy of the image, and it boots there again on the same address
        source = shown["OS-EXT-SRV-ATTR:host"]
        hosts.openstack("server", "migrate", vm["id"])
        hosts.wait_server(vm["id"], "VERIFY_RESIZE", 240, failed="ACTIVE")
        hosts.openstack("server", "resize", "confirm", vm["id"])
        moved = hosts.openstack_json("server", "show", vm["id"])
        assert moved["OS-EXT-SRV-ATTR:host"] not in (source, None), moved

        def booted_again() -> bool:
            console = hosts.console_output(vm["id"])
            return console.count(f"unistack: instance {vm['id']} up, eth0 {address}") >= 2

        wait_for(booted_again, "the migrated VM's second boot on its kept console", 120)
        reply = in_server(peer["id"], "ping", "-c", "2", "-W", "3", address)
        assert reply.returncode == 0, reply.stdout + reply.stderr

        # live-migrated back while a peer pings it: it never stops answering for long, and
        # never boots again (its console, carried along, still shows two boots)
        pinging = subprocess.Popen(
            [*in_netns(f"unistack-server-{peer['id']}"), BUSYBOX, "ping", "-i", "0.2", address],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            hosts.openstack("server", "migrate", "--live-migration", "--block-migration", vm["id"])
            hosts.wait_server(vm["id"], "ACTIVE", 240)
            back = hosts.openstack_json("server", "show", vm["id"])
            assert (back["OS-EXT-SRV-ATTR:host"], back["status"]) == (source, "ACTIVE"), back
            wait_for(answers(peer["id"], address), "the live-migrated VM answering", 30)
        finally:
            pinging.terminate()
            output = pinging.communicate(timeout=10)[0] or ""
        answered = [int(seq) for seq in re.findall(r"seq=(\d+)", output)]
        gap = max((b - a for a, b in itertools.pairwise(answered)), default=0)
        print(f"\nlive migration: {len(answered)} replies, longest silence {gap * 0.2:.1f} s")
        assert answered, output
        console = hosts.openstack("console", "log", "show", vm["id"]).stdout
        assert console.count(f"unistack: instance {vm['id']} up, eth0 {address}") == 2
        migrations = hosts.openstack_json(
            "server", "migration", "list", "--server", vm["id"],
            "--os-compute-api-version", "2.23",
        )  # fmt: skip
        live = [m for m in migrations if m["Type"] == "live-migration"]
        assert [m["Status"] for m in live] == ["completed"], migrations

        # suspended: its memory saved on its host and its QEMU gone, so nothing answers;
        # resumed, it goes on in the same boot
        hosts.openstack("server", "suspend", vm["id"])
        hosts.wait_server(vm["id"], "SUSPENDED", 60)
        silent = in_server(peer["id"], "ping", "-c", "2", "-W", "1", address)
        assert silent.returncode != 0, silent.stdout
        hosts.openstack("server", "resume", vm["id"])
        hosts.wait_server(vm["id"], "ACTIVE", 60)
        wait_for(answers(peer["id"], address), "the resumed VM answering", 30)
        console = hosts.openstack("console", "log", "show", vm["id"]).stdout
        assert console.count(f"unistack: instance {vm['id']} up, eth0 {address}") == 2

        # rescued: it boots the rescue image with its own root disk as vdb, on its address;
        # unrescued, it boots from its own disk again
        hosts.openstack("server", "rescue", "--image", "unistack-vm", vm["id"])
        hosts.wait_server(vm["id"], "RESCUE", 120)

        def rescue_booted() -> bool:
            console = hosts.console_output(vm["id"])
            tail = console[console.rfind("Power down") :]
            return f"instance {vm['id']} up, eth0 {address}" in tail and "disks vda vdb" in tail

        wait_for(rescue_booted, "the rescue boot with the server's disk as vdb", 90)
        hosts.openstack("server", "unrescue", vm["id"])
        hosts.wait_server(vm["id"], "ACTIVE", 120)
        wait_for(answers(peer["id"], address), "the unrescued VM answering", 60)
        console = hosts.console_output(vm["id"])
        assert console.count(f"unistack: instance {vm['id']} up, eth0 {address}") == 4
    finally:
        for server in (vm, peer):
            hosts.delete_servers(server["id"])
    hosts.openstack("network", "delete", net)


def answers(peer_id: str, address: str) -> Callable[[], bool]:
    """Whether `address` answers one ping from server `peer_id`'s namespace now."""
    return lambda: in_server(peer_id, "ping", "-c", "1", "-W", "1", address).returncode == 0


TEXT: dict = {"capture_output": True, "text": True, "check": True, "timeout": 10}


def config_drive_of(server_id: str) -> str:
    """The file QEMU runs the server's config drive from, read from its command line."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        if f"unistack-{server_id}" not in argv:
            continue
        nodes = [json.loads(argv[i + 1]) for i, word in enumerate(argv) if word == "-blockdev"]
        cdrom = [node for node in nodes if node.get("node-name") == "configdrive"]
        assert cdrom and "ide-cd,drive=configdrive,id=configdrive,bus=ide.1,unit=1" in argv
        return str(cdrom[0]["file"]["filename"])
    raise AssertionError(f"no QEMU process for server {server_id}")


def _agent_pid(state_dir: Path) -> int:
    """The machine's agent of this cloud (not an extra host's)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = {part.decode(errors="replace") for part in argv}
        ours = {"serve", "agent", str(state_dir)} <= words
        if ours and not words & {"--host", "--cleanup"}:
            return int(entry.name)
    raise AssertionError("no agent process found")


def _instances(state_dir: Path) -> list[str]:
    runc_root = state_dir / "agent" / "servers" / "container" / "runc"
    listed = subprocess.run(
        ["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
    )
    return sorted(listed.stdout.split())


@pytest.mark.deep
def test_killing_the_agent_loses_and_duplicates_nothing(hosts: Cluster) -> None:
    suffix = uuid.uuid4().hex[:6]
    net = f"keep-{suffix}"
    hosts.openstack("network", "create", net)
    hosts.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.64.0.0/24"
    )
    first = boot(hosts, f"one-{suffix}", net, "--availability-zone", "nova:hosts-agent")
    second = boot(hosts, f"two-{suffix}", net, "--availability-zone", "nova:hosts-agent")
    try:
        before = _instances(hosts.state_dir)
        old = _agent_pid(hosts.state_dir)
        os.kill(old, 9)
        wait_for(lambda: _agent_pid_or_none(hosts.state_dir) not in (None, old), "a new agent", 60)
        # The guests ran on; the new agent adopted them rather than starting them again.
        assert _instances(hosts.state_dir) == before
        reply = in_server(first["id"], "ping", "-c", "1", "-W", "2", address_of(second, net))
        assert reply.returncode == 0, reply.stdout + reply.stderr
        # And it answers for them: a reboot goes through the new agent.
        hosts.openstack("server", "reboot", "--wait", first["id"], timeout=120)
        assert hosts.openstack_json("server", "show", first["id"])["status"] == "ACTIVE"
        assert _instances(hosts.state_dir) == before
    finally:
        for server in (first, second):
            hosts.delete_servers(server["id"])
    hosts.openstack("network", "delete", net)


def _agent_pid_or_none(state_dir: Path) -> int | None:
    try:
        return _agent_pid(state_dir)
    except AssertionError:
        return None


def _agent_dir(cluster: Cluster, host: str) -> Path:
    """The state of `host`'s agent (the machine's, or the extra host's)."""
    if host.endswith("-2"):
        return cluster.state_dir / "hosts" / "2" / "agent"
    return cluster.state_dir / "agent"


def _guest_root(cluster: Cluster, host: str, server_id: str) -> Path:
    """Where a container server's instance lives on `host` (the machine, or an extra host)."""
    return _agent_dir(cluster, host) / "servers" / "container" / server_id


@pytest.mark.deep
def test_a_cold_migrated_server_takes_its_disk_and_address_to_the_other_host(
    hosts: Cluster,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    net = f"move-{suffix}"
    hosts.openstack("network", "create", net)
    hosts.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.65.0.0/24"
    )
    here = ("--availability-zone", "nova:hosts-agent")
    server = boot(hosts, f"move-{suffix}", net, *here)
    peer = boot(hosts, f"peer-{suffix}", net, *here)
    address = address_of(server, net)

    def host() -> str:
        return str(hosts.openstack_json("server", "show", server["id"])["OS-EXT-SRV-ATTR:host"])

    def answers() -> bool:
        reply = in_server(peer["id"], "ping", "-c", "1", "-W", "2", address)
        return reply.returncode == 0

    def migrate(*target: str) -> None:
        argv = ["server", "migrate", "--wait", *target, server["id"]]
        hosts.openstack("--os-compute-api-version", "2.56", *argv, timeout=180)
        shown = hosts.openstack_json("server", "show", server["id"])
        assert shown["status"] == "VERIFY_RESIZE", shown

    try:
        # the guest's own write, in its root filesystem (the overlay's upper layer)
        source_root = _guest_root(hosts, "hosts-agent", server["id"])
        (source_root / "rootfs" / "root" / "moved").write_text(suffix)
        migrate("--host", "hosts-agent-2")
        assert host() == "hosts-agent-2"
        there = _guest_root(hosts, "hosts-agent-2", server["id"])
        assert (there / "rootfs" / "root" / "moved").read_text() == suffix
        # the same address, now across the hosts' VXLAN
        wait_for(answers, f"the migrated server answering at {address}", 60)
        hosts.openstack("server", "resize", "revert", server["id"])
        wait_for(
            lambda: hosts.openstack_json("server", "show", server["id"])["status"] == "ACTIVE",
            "the reverted server ACTIVE",
            120,
        )
        assert host() == "hosts-agent" and not there.exists()
        wait_for(answers, "the reverted server answering on its source host", 60)

        migrate()  # the scheduler's choice: the only other host
        assert host() == "hosts-agent-2"
        hosts.openstack("server", "resize", "confirm", server["id"])
        wait_for(
            lambda: hosts.openstack_json("server", "show", server["id"])["status"] == "ACTIVE",
            "the confirmed server ACTIVE",
            60,
        )
        wait_for(lambda: not source_root.exists(), "the source copy gone", 30)
        assert (there / "rootfs" / "root" / "moved").read_text() == suffix
        wait_for(answers, "the migrated server answering", 60)
        migrations = hosts.openstack_json(
            "server",
            "migration",
            "list",
            "--server",
            server["id"],
            "--os-compute-api-version",
            "2.23",
        )
        assert sorted(m["Status"] for m in migrations) == ["confirmed", "reverted"]
    finally:
        for each in (server, peer):
            hosts.delete_servers(each["id"])
    hosts.openstack("network", "delete", net)
