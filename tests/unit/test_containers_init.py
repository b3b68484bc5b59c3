"""A container server's boot files and runc bundle, decided from its spec without I/O."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from unistack.dataplane import containerbundle, containerinit, initprocess, sshd
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
        containerinit.LSBLK,
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
    drive = dataclasses.replace(
        SPEC, config_drive={"ec2/latest/user-data": b"\xff"}, personality={"/a": b"\x00"}
    )
    assert containerbundle.decode_spec(containerbundle.encode_spec(drive)) == drive
    minimal = InstanceSpec("s", "h", 1, 64, image_file=Path("/i.qcow2"))
    assert containerbundle.decode_spec(containerbundle.encode_spec(minimal)) == minimal


def test_disks_are_recorded_once_per_volume() -> None:
    again = Disk("v1", "/dev/loop9", "vdc")
    other = Disk("v2", "/dev/loop4", "vdd")
    spec = containerbundle.with_disk(containerbundle.with_disk(SPEC, again), other)
    assert spec.disks == (again, other)
    assert containerbundle.without_disk(spec, "v1").disks == (other,)
    assert containerbundle.without_disk(spec, "nope").disks == spec.disks


SSH_SERVER = sshd.SshServer(
    Path("/usr/sbin/dropbear"),
    Path("/usr/bin/dropbearkey"),
    Path("/lib64/ld-linux-x86-64.so.2"),
    (Path("/lib/x86_64-linux-gnu/libtomcrypt.so.1"), Path("/lib/x86_64-linux-gnu/libc.so.6")),
)


def test_init_respawns_sshd_after_rcs_when_the_host_lends_dropbear() -> None:
    files = {g.path: g for g in containerinit.guest_files(SPEC, SSH_SERVER)}
    entries = [line for line in files["/etc/inittab"].data.splitlines() if line[0] != "#"]
    assert entries[:2] == ["::sysinit:/etc/init.d/rcS", "::respawn:/etc/init.d/sshd"]
    script = files[sshd.START_SCRIPT]
    assert script.mode == 0o755
    last = script.data.splitlines()[-1]
    # the lent copy runs as it is: its interpreter and RPATH are in /run/unistack-sshd (`lend`)
    assert last.startswith("exec /run/unistack-sshd/dropbear -F -R -p 22")
    assert "/etc/dropbear/dropbear_ed25519_host_key" in script.data  # made before it listens
    assert "-E" not in last.split()  # it logs to syslog: the console keeps the guest's lines
    assert "respawn" not in files_by_path(SPEC)["/etc/inittab"].data  # no sshd, no entry


def test_bundle_lends_dropbear_read_only_under_run() -> None:
    config = containerbundle.bundle_config(SPEC, cgroups_path="/x", ssh_server=SSH_SERVER)
    lent = [m for m in config["mounts"] if m["destination"].startswith(sshd.GUEST_DIR)]
    assert [m["destination"] for m in lent] == [
        "/run/unistack-sshd/dropbear",
        "/run/unistack-sshd/dropbearkey",
        "/run/unistack-sshd/ld-linux-x86-64.so.2",
        "/run/unistack-sshd/libtomcrypt.so.1",
        "/run/unistack-sshd/libc.so.6",
    ]
    assert all(m["type"] == "bind" and "ro" in m["options"] for m in lent)
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations.index("/run") < destinations.index(lent[0]["destination"])
    bare = containerbundle.bundle_config(SPEC, cgroups_path="/x")
    assert not [m for m in bare["mounts"] if m["destination"].startswith(sshd.GUEST_DIR)]


def test_ldd_output_gives_the_loader_and_the_libraries() -> None:
    listing = (
        "\tlinux-vdso.so.1 (0x00007f4cf22b1000)\n"
        "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f4cf2155000)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4cf1f37000)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f4cf22b3000)\n"
    )
    paths = sshd.ldd_paths(listing)
    assert paths == [
        Path("/lib/x86_64-linux-gnu/libz.so.1"),
        Path("/lib/x86_64-linux-gnu/libc.so.6"),
        Path("/lib64/ld-linux-x86-64.so.2"),
    ]
    server = sshd.server_of(Path("/d"), Path("/k"), paths)
    assert server is not None and server.loader == Path("/lib64/ld-linux-x86-64.so.2")
    assert server.libraries == tuple(paths[:2])
    assert sshd.server_of(Path("/d"), Path("/k"), paths[:2]) is None  # no loader
    clash = [*paths, Path("/opt/libz.so.1")]
    assert sshd.server_of(Path("/d"), Path("/k"), clash) is None  # one name, two files


def test_bundle_shows_the_flavors_vcpus_in_cpuinfo() -> None:
    host = "".join(f"processor\t: {n}\nmodel name\t: x\n\n" for n in range(4))
    assert containerbundle.guest_cpuinfo(host, 2) == (
        "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n\n"
    )
    assert containerbundle.guest_cpuinfo(host, 8).count("processor") == 4
    config = containerbundle.bundle_config(SPEC, cgroups_path="/x")
    (cpuinfo,) = [m for m in config["mounts"] if m["destination"] == "/proc/cpuinfo"]
    assert (cpuinfo["type"], cpuinfo["source"]) == ("bind", containerbundle.CPUINFO)


def test_a_long_fqdn_hostname_is_cut_to_the_kernels_limit() -> None:
    fqdn = "x" * 52 + "-guest-test.domaintest.com"
    spec = dataclasses.replace(SPEC, hostname=fqdn)
    assert containerbundle.bundle_config(spec, cgroups_path="/x")["hostname"] == fqdn[:64]
    assert files_by_path(spec)["/etc/hostname"].data == fqdn[:64] + "\n"


def test_lsblk_stand_in_is_written_only_when_the_image_has_none(tmp_path: Path) -> None:
    image, upper = tmp_path / "image", tmp_path / "upper"
    (image / "usr" / "bin").mkdir(parents=True)
    upper.mkdir()
    stand_in = [g for g in containerinit.guest_files(SPEC) if g.path == containerinit.LSBLK]
    containerinit.write_guest_files(upper, [image], stand_in)
    assert (upper / "usr/bin/lsblk").read_text().startswith("#!/bin/sh")
    (upper / "usr/bin/lsblk").unlink()
    (image / "usr/bin/lsblk").write_text("real")
    containerinit.write_guest_files(upper, [image], stand_in)
    assert not (upper / "usr/bin/lsblk").exists()


def test_boot_clock_prefix_and_start_time() -> None:
    argv = ["runc", "run", "x"]
    assert initprocess.in_new_boot_clock(argv, 5000.7) == [
        "unshare", "--time", "--boottime", "-4999", *argv
    ]  # fmt: skip
    assert initprocess.in_new_boot_clock(argv, None) == argv
    stat = "42 (init (x)) S 1 42 42 0 -1 4194560 " + " ".join(["0"] * 12) + " 12345 99"
    assert initprocess.start_time(stat) == 12345


def test_settle_start_time_records_the_hosts_reading_for_runc(tmp_path: Path) -> None:
    pid = os.getpid()
    (tmp_path / "pid").write_text(str(pid))
    state = {"id": "c", "init_process_pid": pid, "init_process_start": 1, "other": [1]}
    (tmp_path / "state.json").write_bytes(orjson.dumps(state))
    (tmp_path / "state.json").chmod(0o600)
    initprocess.settle_start_time(tmp_path, tmp_path / "pid")
    settled = orjson.loads((tmp_path / "state.json").read_bytes())
    host_reading = initprocess.start_time(Path(f"/proc/{pid}/stat").read_text())
    assert settled == {**state, "init_process_start": host_reading}
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "pid").write_text("1")  # another process: runc's state is left alone
    initprocess.settle_start_time(tmp_path, tmp_path / "pid")
    assert orjson.loads((tmp_path / "state.json").read_bytes()) == settled


@pytest.mark.skipif(
    shutil.which(sshd.PATCHELF) is None or sshd.locate() is None, reason="needs patchelf, dropbear"
)
def test_lent_dropbear_names_the_lent_loader_and_libraries(tmp_path: Path) -> None:
    """The copies run as ordinary programs in the guest: the kernel starts them (and
    dropbear's re-execution of itself) with the lent loader, which looks in GUEST_DIR."""
    located = sshd.locate()
    assert located is not None
    lent = sshd.lend(located, tmp_path)
    assert lent is not None and lent.dropbear.parent == tmp_path
    for program in (lent.dropbear, lent.dropbearkey):
        asked = [sshd.PATCHELF, "--print-interpreter", "--print-rpath", str(program)]
        shown = subprocess.run(asked, capture_output=True, text=True, check=True).stdout
        assert shown.split() == [f"{sshd.GUEST_DIR}/{located.loader.name}", sshd.GUEST_DIR]
    assert located.dropbear.read_bytes() != lent.dropbear.read_bytes()  # the host's untouched


def test_a_config_drive_is_the_bundles_tree_read_only_at_cloud_inits_seed(
    tmp_path: Path,
) -> None:
    """A container cannot mount a drive: its files are bind-mounted where cloud-init's
    ConfigDrive source reads a seeded one; without a drive there is no mount and no tree."""
    files = {"openstack/latest/meta_data.json": b'{"uuid": "s-1"}'}
    spec = dataclasses.replace(SPEC, config_drive=files)
    mounts = containerbundle.bundle_config(spec, cgroups_path="/x")["mounts"]
    seeded = [m for m in mounts if m["destination"] == "/var/lib/cloud/seed/config_drive"]
    assert seeded == [containerbundle.config_drive_mount()]
    assert "ro" in seeded[0]["options"] and seeded[0]["source"] == "config-drive"
    host_cpuinfo = tmp_path / "cpuinfo.host"
    host_cpuinfo.write_text("processor\t: 0\n\n")
    containerbundle.write_host_files(tmp_path, spec, host_cpuinfo)
    written = tmp_path / "config-drive" / "openstack" / "latest" / "meta_data.json"
    assert written.read_bytes() == files["openstack/latest/meta_data.json"]
    containerbundle.write_host_files(tmp_path, SPEC, host_cpuinfo)
    assert not (tmp_path / "config-drive").exists()
    plain = containerbundle.bundle_config(SPEC, cgroups_path="/x")["mounts"]
    assert all(m["destination"] != "/var/lib/cloud/seed/config_drive" for m in plain)
