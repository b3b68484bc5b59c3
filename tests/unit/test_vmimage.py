"""The tiny VM image's pure parts and the qemu driver's decisions, without I/O.

cpio: the newc bytes the kernel unpacks (headers, padding, parents, device node). Kernel
package: vmlinux out of an xz bzImage, `depends=` from a module's .modinfo section, load
order. Guest scripts: what /init and rcS do, in which order. Driver: the QEMU command line,
the kernel arguments carrying the server's identity, power states, console tail, spec
round trip.
"""

from __future__ import annotations

import itertools
import json
import lzma
import struct
import subprocess
from pathlib import Path

import pytest

from unistack.dataplane import qemu, qemuargs
from unistack.dataplane.instances import Disk, InstanceSpec, Nic, PowerState, RescueBoot
from unistack.images import cpio, kernelpkg, vmimage, vminit

BUSYBOX = "/bin/busybox"  # the guest's shell, as the image builder takes it from the host
needs_busybox = pytest.mark.skipif(not Path(BUSYBOX).exists(), reason="no busybox-static")


def read_newc(data: bytes) -> list[dict[str, object]]:
    """A minimal newc reader: the fields the kernel's unpacker uses."""
    entries: list[dict[str, object]] = []
    offset = 0
    while True:
        header = data[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        name_size, file_size = fields[11], fields[6]
        name = data[offset + 110 : offset + 110 + name_size - 1].decode()
        body = offset + 110 + name_size
        body += -body % 4
        if name == "TRAILER!!!":
            return entries
        entries.append(
            {
                "name": name,
                "mode": fields[1],
                "uid": fields[2],
                "mtime": fields[5],
                "data": data[body : body + file_size],
                "rdev": (fields[9], fields[10]),
            }
        )
        offset = body + file_size + (-(body + file_size) % 4)


def test_cpio_archive_is_sorted_padded_and_adds_parents() -> None:
    data = cpio.archive(
        [
            cpio.Member("bin/busybox", mode=0o755, data=b"12345"),
            cpio.symlink("usr/bin/wget", "/bin/busybox"),
            cpio.Member("dev/console", "chardev", 0o600, rdev=(5, 1)),
        ]
    )
    assert len(data) % 4 == 0
    entries = read_newc(data)
    names = [entry["name"] for entry in entries]
    assert names == ["bin", "bin/busybox", "dev", "dev/console", "usr", "usr/bin", "usr/bin/wget"]
    by_name = {entry["name"]: entry for entry in entries}
    assert by_name["bin/busybox"]["mode"] == 0o100755
    assert by_name["bin/busybox"]["data"] == b"12345"
    assert by_name["usr/bin/wget"]["mode"] == 0o120777
    assert by_name["usr/bin/wget"]["data"] == b"/bin/busybox"
    assert by_name["dev/console"]["mode"] == 0o020600
    assert by_name["dev/console"]["rdev"] == (5, 1)
    assert by_name["bin"]["mode"] == 0o040755
    assert {entry["uid"] for entry in entries} == {0}
    assert {entry["mtime"] for entry in entries} == {0}


def test_cpio_archive_is_deterministic_whatever_the_input_order() -> None:
    members = [cpio.Member("a/x", data=b"x"), cpio.Member("b", data=b"yy"), cpio.directory("a")]
    assert cpio.archive(members) == cpio.archive(list(reversed(members)))


def test_vmlinux_is_the_xz_stream_inside_vmlinuz() -> None:
    kernel = b"\x7fELF" + bytes(range(256)) * 40
    vmlinuz = b"MZ setup code" + lzma.compress(kernel, format=lzma.FORMAT_XZ) + b"\0trailer"
    assert kernelpkg.vmlinux_from_vmlinuz(vmlinuz) == kernel


def test_vmlinuz_without_xz_is_refused() -> None:
    with pytest.raises(kernelpkg.KernelPackageError, match="no xz stream"):
        kernelpkg.vmlinux_from_vmlinuz(b"MZ\x1f\x8b gzip kernel")


def elf_module(modinfo: bytes) -> bytes:
    """A minimal ELF64 with a NULL section, .modinfo and the section-name table."""
    names = b"\0.modinfo\0.shstrtab\0"
    data_offset = 64
    names_offset = data_offset + len(modinfo)
    shoff = names_offset + len(names)
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)

    sections = section(0, 0, 0) + section(1, data_offset, len(modinfo))
    sections += section(10, names_offset, len(names))
    return bytes(header) + modinfo + names + sections


def test_modinfo_depends_reads_the_modinfo_section() -> None:
    module = elf_module(b"license=GPL\0depends=virtio,virtio-ring\0name=virtio_net\0")
    assert kernelpkg.modinfo_depends(module) == ("virtio", "virtio_ring")
    assert kernelpkg.modinfo_depends(elf_module(b"depends=\0name=crc16\0")) == ()


def test_load_order_puts_dependencies_first_once() -> None:
    graph = {
        "virtio_net": ("net_failover", "virtio", "virtio_ring"),
        "net_failover": ("failover",),
        "virtio_blk": ("virtio", "virtio_ring"),
        "virtio": (),
        "virtio_ring": (),
        "failover": (),
    }
    order = kernelpkg.load_order(["virtio_net", "virtio_blk"], lambda name: graph[name])
    assert sorted(order) == sorted(graph)
    for name, needs in graph.items():
        assert all(order.index(need) < order.index(name) for need in needs)


def test_load_order_refuses_a_cycle() -> None:
    graph = {"a": ("b",), "b": ("a",)}
    with pytest.raises(kernelpkg.KernelPackageError, match="cycle"):
        kernelpkg.load_order(["a"], lambda name: graph[name])


def test_split_load_order_defers_what_boot_modules_do_not_need() -> None:
    depends = {
        "virtio": (),
        "virtio_net": ("virtio",),
        "crc16": (),
        "ext4": ("crc16",),
        "button": (),
    }
    order = ("virtio", "virtio_net", "crc16", "ext4", "button")
    kernel = kernelpkg.KernelFiles("6.1.0-56-amd64", b"", {}, order, depends)
    boot, late = vmimage.split_load_order(kernel, ("virtio_net", "button"))
    assert boot == ("virtio", "virtio_net", "button")
    assert late == ("crc16", "ext4")


def test_versioned_package_from_apt_cache_depends() -> None:
    output = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Depends: other\n"
    assert kernelpkg.versioned_package(output) == "linux-image-6.1.0-56-amd64"


def test_programs_bring_their_libraries_once_each() -> None:
    programs = [Path("/usr/bin/env"), Path("/usr/bin/true"), Path("/usr/bin/env")]
    programs = [program for program in programs if program.is_file()]
    if not programs or b"ELF" not in programs[0].read_bytes()[:4]:
        pytest.skip("needs dynamically linked /usr/bin/env and /usr/bin/true")
    members = vmimage.programs_with_libraries(programs)
    paths = [member.path for member in members]
    assert len(paths) == len(set(paths)) and paths[0] == "usr/bin/env"
    assert any(path.endswith("libc.so.6") for path in paths)
    assert any("ld-linux" in path for path in paths)  # the loader the binary names


def test_applet_links_never_replace_busybox() -> None:
    links = vmimage.applet_links(["bin/sh", "sbin/init", "bin/busybox", "bin/sh"])
    assert [(link.path, link.data) for link in links] == [
        ("bin/sh", b"/bin/busybox"),
        ("sbin/init", b"/bin/busybox"),
    ]


def test_init_loads_modules_in_order_then_hands_over_to_busybox_init() -> None:
    script = vminit.init_script(("virtio", "virtio_pci", "ext4"))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/busybox sh"
    mounts = [line for line in lines if line.startswith("mount -t")]
    assert [line.split()[2] for line in mounts] == ["proc", "sysfs", "devtmpfs"]
    loads = [line.split()[1] for line in lines if line.startswith("insmod")]
    assert loads == ["/lib/modules/virtio.ko", "/lib/modules/virtio_pci.ko", "/lib/modules/ext4.ko"]
    assert lines[-1] == "exec /sbin/init"


def test_boot_script_configures_then_announces_then_backgrounds() -> None:
    script = vminit.rc_start(("crc32c_generic", "ext4"), with_dropbear=True)
    order = [
        script.index("acpid -c /etc/acpi"),
        script.index("ADDRESS=$(kernel_arg ip)"),
        script.index('ip addr replace "$ADDRESS" dev eth0'),
        script.index("ip route replace 169.254.169.254"),
        script.index("udhcpc -i eth0"),
        script.index(f"{vminit.DROPBEAR} -R"),
        script.index('echo "unistack: instance${ID:+ $ID} up, eth0 $(address_of eth0)"'),
        script.index("insmod /lib/modules/crc32c_generic.ko"),
        script.index("insmod /lib/modules/ext4.ko"),
        script.index("mount -t ext4 /dev/vda /mnt"),
        script.index("fetch_metadata </dev/null"),  # the keys: no login before the disk
    ]
    assert order == sorted(order)
    assert " -T " not in vminit.metadata_function()  # busybox wget -T segfaults
    assert vminit.DROPBEAR not in vminit.rc_start((), with_dropbear=False)


def test_guest_files_make_the_power_button_power_off() -> None:
    files = {file.path: file for file in vminit.guest_files(("button",), ("ext4",), False)}
    assert files["/etc/acpi/PWRF/00000080"].text.endswith("exec poweroff\n")
    assert files["/etc/acpi/PWRF/00000080"].mode == 0o755
    assert "::ctrlaltdel:/sbin/reboot" in files["/etc/inittab"].text
    assert files["/init"].mode == 0o755


def guest_file(path: str) -> vminit.GuestFile:
    return next(f for f in vminit.guest_files((), (), True) if f.path == path)


@needs_busybox
def test_sudo_runs_its_command_as_it_is(tmp_path: Path) -> None:
    """Tempest runs its guest checks through sudo; busybox has none, and root needs none."""
    sudo = guest_file("/usr/bin/sudo")
    assert sudo.mode == 0o755
    script = tmp_path / "sudo"
    script.write_text(sudo.text)
    done = subprocess.run(
        [BUSYBOX, "sh", str(script), "sh", "-c", "echo $((6 * 7)) > out; cat out"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout == "42\n"


def fake_block(root: Path, name: str, dev: str, sectors: int, ro: int = 0) -> None:
    (root / name).mkdir(parents=True)
    for field, value in (("dev", dev), ("size", sectors), ("ro", ro), ("removable", 0)):
        (root / name / field).write_text(f"{value}\n")


@needs_busybox
def test_lsblk_lists_the_disks_where_tempest_looks_for_them(tmp_path: Path) -> None:
    """Tempest's `get_disks` runs `lsblk -lb --nodeps` and keeps the rows with `disk`
    under the header's TYPE; `check_disks` then counts the attached volume's name (vdb)."""
    sys_block = tmp_path / "block"
    fake_block(sys_block, "vda", "253:0", 131072)
    fake_block(sys_block, "vdb", "253:16", 2097152, ro=1)
    fake_block(sys_block, "ram0", "1:0", 8192)
    lsblk = guest_file("/usr/bin/lsblk")
    script = tmp_path / "lsblk"
    script.write_text(lsblk.text.replace("/sys/block", str(sys_block)))
    output = subprocess.run(
        [BUSYBOX, "sh", str(script), "-lb", "--nodeps"], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    header, *rows = output.splitlines()
    type_at = header.find("TYPE")
    assert [row.split()[0] for row in rows if row[type_at : type_at + 4] == "disk"] == [
        "vda",
        "vdb",
    ]
    assert rows[1].split()[:5] == ["vdb", "253:16", "0", str(1 << 30), "1"]
    assert output.count("vdb") == 1


def spec(**changes: object) -> InstanceSpec:
    nic = Nic(
        "port-1",
        "fa:16:3e:00:00:01",
        "unistackp0a1b2c",
        ("fd00::5/64", "10.0.0.5/24"),
        "10.0.0.1",
        1450,
        ("10.0.0.2", "10.0.0.3"),
    )
    values: dict[str, object] = {
        "server_id": "5f0c",
        "hostname": "web one",
        "vcpus": 2,
        "memory_mb": 512,
        "image_file": Path("/images/disk.qcow2"),
        "kernel": Path("/images/vmlinux"),
        "initrd": Path("/images/initrd.gz"),
        "nics": (nic,),
    }
    values.update(changes)
    return InstanceSpec(**values)  # type: ignore[arg-type]


def test_kernel_command_line_carries_identity_and_first_nic() -> None:
    line = qemuargs.kernel_command_line(spec(), tsc=2600000)
    assert line.split() == [
        "console=ttyS0",
        "panic=-1",
        "quiet",
        "cryptomgr.notests",
        "tsc_early_khz=2600000",
        "tsc=reliable",
        "unistack.id=5f0c",
        "unistack.hostname=webone",
        "unistack.mtu=1450",
        "unistack.ip=10.0.0.5/24",
        "unistack.gw=10.0.0.1",
        "unistack.dns=10.0.0.2,10.0.0.3",
    ]


def test_kernel_command_line_without_fixed_ips_leaves_dhcp_to_the_guest() -> None:
    dhcp = Nic("port-1", "fa:16:3e:00:00:01", "unistackp0a1b2c")
    line = qemuargs.kernel_command_line(
        spec(nics=(dhcp,), kernel_args="console=ttyS0 root=/dev/vda")
    )
    assert (
        line
        == "console=ttyS0 root=/dev/vda unistack.id=5f0c unistack.hostname=webone unistack.mtu=1500"
    )


def test_qemu_argv_wires_monitor_console_root_nics_and_disks() -> None:
    paths = qemuargs.InstancePaths(Path("/var/lib/vms/5f0c"))
    disk = Disk("vol-1", "/pool/volumes/vol-1", "vdb", read_only=True)
    argv = qemuargs.qemu_argv(spec(), paths, disks=[disk], accel="tcg", binary="qemu-x")
    assert argv[0] == "qemu-x"
    pairs = dict(itertools.pairwise(argv))
    assert pairs["-accel"] == "tcg" and "-cpu" not in argv
    assert pairs["-m"] == "512" and pairs["-smp"] == "2"
    assert "-daemonize" in argv and pairs["-pidfile"] == "/var/lib/vms/5f0c/qemu.pid"
    assert pairs["-qmp"] == "unix:/var/lib/vms/5f0c/qmp.sock,server=on,wait=off"
    assert "logfile=/var/lib/vms/5f0c/console.log" in pairs["-chardev"]
    assert pairs["-kernel"] == "/images/vmlinux" and pairs["-initrd"] == "/images/initrd.gz"
    assert "unistack.ip=10.0.0.5/24" in pairs["-append"]
    assert pairs["-netdev"] == (
        "tap,id=net-unistackp0a1b2c,ifname=unistackp0a1b2c,script=no,downscript=no,vhost=off"
    )
    devices = [value for flag, value in itertools.pairwise(argv) if flag == "-device"]
    assert devices[0] == "virtio-blk-pci,drive=root,id=root"
    assert json.loads(devices[1]) == {
        "driver": "virtio-net-pci",
        "netdev": "net-unistackp0a1b2c",
        "mac": "fa:16:3e:00:00:01",
        "id": "nic-unistackp0a1b2c",
    }
    node, device = qemuargs.disk_names("vol-1")
    assert f'"drive": "{node}"' in devices[2] and f'"id": "{device}"' in devices[2]
    blockdevs = [value for flag, value in itertools.pairwise(argv) if flag == "-blockdev"]
    assert '"filename": "/var/lib/vms/5f0c/root.qcow2"' in blockdevs[0]
    assert '"read-only": true' in blockdevs[1] and '"driver": "raw"' in blockdevs[1]


def test_the_ephemeral_disk_comes_right_after_the_root_disk() -> None:
    """virtio disks take their names in PCI order: the ephemeral disk is the guest's vdb
    whether the root is the image's overlay or a boot volume, and volumes come after it."""
    paths = qemuargs.InstancePaths(Path("/v/x"))
    volume = Disk("vol-1", "/pool/vol-1", "vdc")

    def drives(argv: list[str]) -> list[str]:
        devices = [value for flag, value in itertools.pairwise(argv) if flag == "-device"]
        return [d for d in devices if "virtio-blk" in d]

    from_image = drives(qemuargs.qemu_argv(spec(ephemeral_gb=2), paths, disks=[volume]))
    assert from_image[0] == "virtio-blk-pci,drive=root,id=root"
    assert from_image[1] == "virtio-blk-pci,drive=ephemeral0,id=ephemeral0,serial=ephemeral0"
    assert qemuargs.disk_names("vol-1")[0] in from_image[2]
    boot = Disk("vol-boot", "/pool/vol-boot", "vda")
    argv = qemuargs.qemu_argv(spec(ephemeral_gb=2), paths, disks=[volume, boot], root_format=None)
    from_volume = drives(argv)
    assert qemuargs.disk_names("vol-boot")[0] in from_volume[0]
    assert "drive=ephemeral0" in from_volume[1] and len(from_volume) == 3
    blockdevs = [value for flag, value in itertools.pairwise(argv) if flag == "-blockdev"]
    assert '"filename": "/v/x/disk.eph0"' in blockdevs[1]
    assert "ephemeral0" not in " ".join(qemuargs.qemu_argv(spec(), paths))


def test_qemu_argv_uses_the_host_cpu_with_kvm_and_skips_absent_parts() -> None:
    paths = qemuargs.InstancePaths(Path("/v/x"))
    argv = qemuargs.qemu_argv(
        spec(kernel=None, initrd=None, nics=()), paths, accel="kvm", root_format=None
    )
    assert argv[argv.index("-accel") + 1 :][:3] == ["kvm", "-cpu", "host"]
    assert "-kernel" not in argv and "-append" not in argv and "-netdev" not in argv
    assert "-blockdev" not in argv


def test_a_rescue_boots_the_rescue_disk_first_or_a_stable_one_last_on_its_bus() -> None:
    paths = qemuargs.InstancePaths(Path("/v/x"))
    volume = Disk("vol-1", "/pool/vol-1", "vdb")

    def devices(argv: list[str]) -> list[str]:
        return [value for flag, value in itertools.pairwise(argv) if flag == "-device"]

    legacy = qemuargs.qemu_argv(spec(nics=()), paths, rescue=RescueBoot(image_file=Path("/i")))
    assert devices(legacy) == [
        "virtio-blk-pci,drive=root,id=root",
        "virtio-blk-pci,drive=rescued,id=rescued",
    ]
    blockdevs = [value for flag, value in itertools.pairwise(legacy) if flag == "-blockdev"]
    assert '"filename": "/v/x/disk.rescue"' in blockdevs[0]
    assert '"filename": "/v/x/root.qcow2"' in blockdevs[1]

    stable = RescueBoot(image_file=Path("/i"), device="cdrom", bus="scsi")
    argv = qemuargs.qemu_argv(spec(nics=()), paths, disks=[volume], rescue=stable)
    found = devices(argv)
    assert found[0] == "virtio-blk-pci,drive=root,id=root"
    assert qemuargs.disk_names("vol-1")[0] in found[1]
    assert found[2:] == [
        "virtio-scsi-pci,id=rescue-scsi",
        "scsi-cd,drive=rescue,id=rescue,bootindex=1,bus=rescue-scsi.0",
    ]
    assert '"read-only": true' in argv[argv.index("-blockdev", argv.index(found[1])) + 1]
    usb = qemuargs.rescue_device(Path("/r"), "disk", "usb")
    assert usb[-3:] == [
        "qemu-xhci,id=rescue-usb",
        "-device",
        "usb-storage,drive=rescue,id=rescue,bootindex=1,bus=rescue-usb.0",
    ]
    assert qemuargs.rescue_device(Path("/r"), "cdrom", "")[-1].startswith("ide-cd,")
    assert qemuargs.rescue_device(Path("/r"), "disk", "")[-1].startswith("virtio-blk-pci,")
    with pytest.raises(ValueError, match="cdrom on the virtio bus"):
        qemuargs.rescue_device(Path("/r"), "cdrom", "virtio")


def test_disk_names_fit_qmp_limits() -> None:
    node, device = qemuargs.disk_names("0b6b3c3e-6a5c-4c43-8f0e-3f3d2c1b0a99")
    assert len(node) <= 31 and node[0].isalpha() and device[0].isalpha()
    assert qemuargs.disk_names("a") != qemuargs.disk_names("b")


def test_in_netns_wraps_with_nsenter() -> None:
    assert qemuargs.in_netns(["qemu"], None) == ["qemu"]
    assert qemuargs.in_netns(["qemu"], "/run/netns/x") == [
        "nsenter",
        "--net=/run/netns/x",
        "--",
        "qemu",
    ]


def test_power_state_from_query_status() -> None:
    assert qemu.power_state("running") is PowerState.RUNNING
    assert qemu.power_state("paused") is PowerState.PAUSED
    assert qemu.power_state("shutdown") is PowerState.SHUTDOWN
    assert qemu.power_state("guest-panicked") is PowerState.CRASHED


def test_console_tail_folds_serial_line_endings() -> None:
    text = "booting\r\nunistack: up\r\n/ # "
    assert qemu.console_tail(text, None) == ["booting", "unistack: up", "/ # "]
    assert qemu.console_tail(text, 1) == ["/ # "]


def test_spec_survives_the_json_round_trip() -> None:
    original = spec(
        disks=(Disk("vol-1", "/p/vol-1", "vdb"),),
        user_data=b"#!/bin/sh\n\xff",
        public_keys=("ssh-ed25519 AAAA x",),
        metadata={"role": "web"},
        config_drive={"openstack/latest/user_data": b"\xff\x00"},
        personality={"/etc/motd": b"\x00hi"},
    )
    assert qemu.spec_from_json(qemu.spec_to_json(original)) == original


def test_a_config_drive_is_a_read_only_cdrom_on_the_second_ide_bus() -> None:
    """Nova's default for a config drive: an IDE CD-ROM, the guest's sr0; none without."""
    paths = qemuargs.InstancePaths(Path("/srv/i/5f0c"))
    argv = qemuargs.qemu_argv(spec(config_drive={"openstack/latest/meta_data.json": b"{}"}), paths)
    nodes = [json.loads(argv[i + 1]) for i, word in enumerate(argv) if word == "-blockdev"]
    cdrom = next(node for node in nodes if node["node-name"] == "configdrive")
    assert cdrom["read-only"] is True and cdrom["driver"] == "raw"
    assert cdrom["file"]["filename"] == "/srv/i/5f0c/disk.config"
    assert "ide-cd,drive=configdrive,id=configdrive,bus=ide.1,unit=1" in argv
    assert "configdrive" not in " ".join(qemuargs.qemu_argv(spec(), paths))


def test_instance_process_is_recognised_by_its_pidfile_argument() -> None:
    pidfile = Path("/v/x/qemu.pid")
    ours = b"qemu-system-x86_64\0-pidfile\0/v/x/qemu.pid\0-m\0256\0"
    assert qemu.is_instance_process(ours, pidfile)
    assert not qemu.is_instance_process(b"bash\0-c\0sleep 1\0", pidfile)
    assert not qemu.is_instance_process(b"qemu\0-pidfile\0/v/x/qemu.pid.old\0", pidfile)


def test_tsc_khz_from_cpuinfo() -> None:
    assert qemuargs.tsc_khz("model name\t: AMD EPYC\ncpu MHz\t\t: 2445.426\n") == 2445426
    assert qemuargs.tsc_khz("processor: 0\n") is None


def test_driver_default_kernel_args_are_the_images() -> None:
    assert qemuargs.DEFAULT_KERNEL_ARGS == vmimage.KERNEL_ARGS
