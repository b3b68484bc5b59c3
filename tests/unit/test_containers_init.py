"""A container server's boot files and runc bundle, decided from its spec without I/O."""

from __future__ import annotations

from pathlib import Path

from unistack.dataplane import containerbundle, containerinit
from unistack.dataplane.containerbundle import DeviceNode
from unistack.dataplane.instances import Disk, InstanceSpec, Nic

STATIC = Nic(
    "p1", "fa:16:3e:00:00:01", "eth0", ("10.0.0.5/24",), "10.0.0.1", 1450, ("10.0.0.2", "9.9.9.9")
)
DHCP = Nic("p2", "fa:16:3e:00:00:02", "eth1", dns_nameservers=("9.9.9.9", "1.1.1.1"))
SECOND_STATIC = Nic("p3", "fa:16:3e:00:00:03", "eth2", ("10.1.0.5/24",), "10.1.0.1")
SPEC = InstanceSpec(
    server_id="s-1",
    hostname="web-1",
    vcpus=2,
    memory_mb=512,
    image_layers=(Path("/images/layer0"), Path("/images/layer1")),
    netns_path="/run/netns/unistack-port",
    nics=(STATIC, DHCP, SECOND_STATIC),
    public_keys=("ssh-ed25519 AAAA one", " ssh-rsa BBBB two\n"),
    disks=(Disk("v1", "/dev/loop3", "vdb"),),
    metadata={"role": "web"},
    user_data=b"#!/bin/sh\necho \xff",
)


def files_by_path(spec: InstanceSpec) -> dict[str, containerinit.GuestFile]:
    return {guest.path: guest for guest in containerinit.guest_files(spec)}


def test_inittab_runs_rcs_at_boot_and_rck_at_shutdown_with_no_getty() -> None:
    table = files_by_path(SPEC)["/etc/inittab"].data
    entries = [line for line in table.splitlines() if not line.startswith("#")]
    assert entries == [
        "::sysinit:/etc/init.d/rcS",
        "::restart:/sbin/init",
        "::shutdown:/etc/init.d/rcK",
    ]
    assert "getty" not in table and "tty" not in table


def test_rcs_configures_fixed_ips_statically_and_the_rest_by_dhcp() -> None:
    script = files_by_path(SPEC)["/etc/init.d/rcS"].data.splitlines()
    assert script[0] == "#!/bin/sh"
    assert "ip link set dev lo up" in script
    assert "ip link set dev eth0 mtu 1450 up" in script
    assert "ip addr replace 10.0.0.5/24 dev eth0" in script
    assert "ip addr replace 10.1.0.5/24 dev eth2" in script
    # one default route: the first NIC's gateway
    assert [line for line in script if "route" in line] == [
        "ip route replace default via 10.0.0.1 dev eth0"
    ]
    (dhcp,) = [line for line in script if line.startswith("udhcpc")]
    assert "-i eth1" in dhcp and f"-s {containerinit.UDHCPC_SCRIPT}" in dhcp
    assert "hostname:web-1" in dhcp


def test_rcs_prints_the_up_line_before_fetching_metadata_in_the_background() -> None:
    script = files_by_path(SPEC)["/etc/init.d/rcS"].data.splitlines()
    up = script.index(
        'echo "unistack: instance s-1 up, eth0 $(address_of eth0), '
        'eth1 $(address_of eth1), eth2 $(address_of eth2)"'
    )
    assert script[up + 1].startswith("fetch_metadata ") and script[up + 1].endswith("&")
    fetch = "\n".join(script[:up])
    assert "http://169.254.169.254/latest/meta-data/public-keys/" in fetch
    assert "timeout 2 wget" in fetch and "wget -T" not in fetch  # busybox wget -T crashes


def test_device_names_and_hostnames_are_quoted_for_the_shell() -> None:
    odd = Nic("p", "m", "eth0;reboot", ("10.0.0.5/24",))
    spec = InstanceSpec("s", "h$(x)", 1, 64, nics=(odd, Nic("q", "m", "eth1")))
    script = files_by_path(spec)["/etc/init.d/rcS"].data
    assert "ip addr replace 10.0.0.5/24 dev 'eth0;reboot'" in script
    assert "-x hostname:'h$(x)'" in script


def test_hostname_resolv_conf_and_keys() -> None:
    files = files_by_path(SPEC)
    assert files["/etc/hostname"].data == "web-1\n"
    resolv = files["/etc/resolv.conf"].data
    assert resolv == "nameserver 10.0.0.2\nnameserver 9.9.9.9\nnameserver 1.1.1.1\n"
    keys = files[containerinit.AUTHORIZED_KEYS]
    assert keys.data == "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n"
    assert (keys.mode, keys.parent_mode, keys.merge_lines) == (0o600, 0o700, True)
    assert files["/etc/init.d/rcS"].mode == 0o755


def test_no_resolv_conf_or_keys_when_the_spec_has_none() -> None:
    bare = InstanceSpec("s", "h", 1, 64, nics=(Nic("p", "m", "eth0"),))
    assert set(files_by_path(bare)) == {
        "/etc/hostname",
        "/etc/inittab",
        "/etc/init.d/rcS",
        "/etc/init.d/rcK",
        containerinit.UDHCPC_SCRIPT,
    }


def test_merged_lines_keep_existing_keys_and_add_missing_ones() -> None:
    assert containerinit.merged_lines("", "a\nb\n") == "a\nb\n"
    assert containerinit.merged_lines("a\nc", "a\nb\n") == "a\nc\nb\n"
    assert containerinit.merged_lines("b\na\n", "a\nb\n") == "b\na\n"


def test_bundle_runs_busybox_init_in_the_ports_namespace_with_flavor_limits() -> None:
    node = DeviceNode("vdb", 7, 3)
    config = containerbundle.bundle_config(
        SPEC, cgroups_path="/unistack/servers/s-1", devices=(node,), pids_limit=1000
    )
    assert config["process"]["args"] == ["/sbin/init"]
    assert config["hostname"] == "web-1"
    assert config["root"] == {"path": "rootfs", "readonly": False}
    linux = config["linux"]
    assert linux["namespaces"] == [
        {"type": "pid"},
        {"type": "mount"},
        {"type": "uts"},
        {"type": "ipc"},
        {"type": "cgroup"},
        {"type": "network", "path": "/run/netns/unistack-port"},
    ]
    assert linux["cgroupsPath"] == "/unistack/servers/s-1"
    resources = linux["resources"]
    assert resources["memory"] == {"limit": 512 * 1024 * 1024, "swap": 512 * 1024 * 1024}
    assert resources["cpu"] == {"quota": 200_000, "period": 100_000, "shares": 2048}
    assert resources["pids"] == {"limit": 1000}
    assert resources["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": 3, "access": "rw"},
    ]
    assert linux["devices"] == [
        {
            "path": "/dev/vdb",
            "type": "b",
            "major": 7,
            "minor": 3,
            "fileMode": 0o660,
            "uid": 0,
            "gid": 0,
        }
    ]


def test_bundle_capabilities_are_a_system_containers_without_sys_admin() -> None:
    caps = containerbundle.bundle_config(SPEC, cgroups_path="/x")["process"]["capabilities"]
    assert "CAP_NET_ADMIN" in caps["bounding"] and "CAP_NET_RAW" in caps["bounding"]
    assert "CAP_SYS_ADMIN" not in caps["bounding"] and "CAP_SYS_MODULE" not in caps["bounding"]
    assert caps["effective"] == caps["bounding"] == caps["permitted"]


def test_bundle_without_a_port_gets_a_new_network_namespace() -> None:
    spec = InstanceSpec("s", "h", 1, 64)
    config = containerbundle.bundle_config(spec, cgroups_path="/x", cgroup_namespace=False)
    kinds = config["linux"]["namespaces"]
    assert {"type": "network"} in kinds and {"type": "cgroup"} not in kinds
    read_only = DeviceNode("vdc", 7, 4, read_only=True)
    assert containerbundle.device_rule(read_only)["access"] == "r"
    assert containerbundle.device_entry(read_only)["fileMode"] == 0o440


def test_spec_json_round_trips() -> None:
    assert containerbundle.decode_spec(containerbundle.encode_spec(SPEC)) == SPEC
    minimal = InstanceSpec("s", "h", 1, 64, image_file=Path("/i.qcow2"))
    assert containerbundle.decode_spec(containerbundle.encode_spec(minimal)) == minimal


def test_disks_are_recorded_once_per_volume() -> None:
    again = Disk("v1", "/dev/loop9", "vdc")
    other = Disk("v2", "/dev/loop4", "vdd")
    spec = containerbundle.with_disk(containerbundle.with_disk(SPEC, again), other)
    assert spec.disks == (again, other)
    assert containerbundle.without_disk(spec, "v1").disks == (other,)
    assert containerbundle.without_disk(spec, "nope").disks == spec.disks
