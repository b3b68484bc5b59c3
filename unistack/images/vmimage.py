"""The built-in tiny VM image, built offline from Debian packages the Makefile installs.

`build_vm_image(dest)` writes into `dest`:

- `vmlinux` — Debian's kernel (`linux-image-<abi>-amd64`, downloaded as a package file into
  a cache directory and read there, never installed), uncompressed for QEMU's PVH boot
  (`unistack.images.kernelpkg`);
- `initrd.cpio` — a newc cpio (`unistack.images.cpio`) holding static busybox (Debian's
  `busybox-static`) with its applet links, the virtio/ext4/ACPI-button modules in load order,
  dropbear and curl with the shared libraries `ldd` names (Debian's `dropbear-bin` and
  `curl`, which cirros has and Tempest's metadata meter runs in the guest), and the boot
  scripts of `unistack.images.vminit`;
- `disk.qcow2` — a 64 MiB ext4 root disk (`mkfs.ext4 -d`, no root needed), which the qemu
  driver (`unistack.dataplane.qemu`) overlays per server and the guest mounts on /mnt;
- `manifest.json` — package versions, module list, kernel arguments, sha256 and size of each
  file, and the fingerprint of the inputs: a second build with the same inputs returns the
  manifest after a few stats.

The initramfs is left uncompressed: the 10 MB archive costs nothing to load, while inflating
its gzip form under software emulation took ~0.4 s of a ~3.7 s boot (measured: QEMU CPU time
to the `up` line, p50 of five boots, 3.31 s raw vs 3.74 s gzip).

Every byte is a function of the inputs: sorted archive members, mtime 0, owner 0:0, and the
ext4 made with a fixed UUID, hash seed and clock (`E2FSPROGS_FAKE_TIME`, then every inode's
times zeroed with `debugfs`). `unistack up` uploads the files to the image service.

Run as `python -m unistack.images.vmimage DEST [--kernel-deb FILE] [--cache DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from unistack.images import cpio, kernelpkg, vminit

FORMAT = 1
BOOT_MODULES = (  # loaded by /init, before the network comes up
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "button",  # the ACPI power button, for QMP system_powerdown
    "evdev",  # /dev/input/event* for busybox acpid
)
LATE_MODULES = (  # loaded after the `up` line: ~0.35 s under TCG that nothing before needs
    "crc32c_generic",  # ext4 and jbd2 ask the crypto API for crc32c at mount time
    "ext4",
)
# what the image's kernel wants on its command line (the qemu driver's default too):
# cryptomgr.notests skips the crypto self-tests, ~1 s of a TCG boot (initcall_debug)
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet cryptomgr.notests"
BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path(vminit.DROPBEAR)
CURL = Path("/usr/bin/curl")
DISK_MIB = 64
DISK_UUID = "6e0f3c1a-5a39-4b4e-9d0c-756e69737461"  # fixed: the same disk bytes every build
DISK_FILES = {"/etc/unistack-disk": "unistack tiny VM root disk\n"}
DISK_INODES = ("/", "/lost+found", "/etc", "/etc/unistack-disk")  # every inode on the disk
INODE_TIMES = ("atime", "mtime", "ctime", "crtime")
FAKE_TIME = {"E2FSPROGS_FAKE_TIME": "1"}  # the superblock's and new inodes' clock
DEFAULT_CACHE = Path.home() / ".cache" / "unistack" / "kernel"
VMLINUX, INITRD, DISK = "vmlinux", "initrd.cpio", "disk.qcow2"
FILES = (VMLINUX, INITRD, DISK)


class VmImageError(Exception):
    """The VM image cannot be built here (a package or tool is missing)."""


def machine_dir() -> Path:
    """Where `make` builds the VM image for every cloud of this machine (`unistack up`
    offers it as a Glance image)."""
    return Path.home() / ".cache" / "unistack" / "vm"


def build_vm_image(
    dest: Path, kernel_deb: Path | None = None, cache: Path = DEFAULT_CACHE
) -> dict[str, Any]:
    """Build (or find up to date) the VM image files in `dest`; returns the manifest."""
    deb = kernel_deb or kernelpkg.find_kernel_deb(cache) or kernelpkg.download_kernel_deb(cache)
    dropbear = DROPBEAR if DROPBEAR.exists() else None
    programs = [program for program in (dropbear, CURL) if program and program.exists()]
    inputs = fingerprint([deb, BUSYBOX, *programs])
    current = read_manifest(dest)
    if current.get("inputs") == inputs and all((dest / name).exists() for name in FILES):
        return current
    if not BUSYBOX.exists():
        raise VmImageError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    kernel = kernelpkg.read_kernel_package(deb, BOOT_MODULES + LATE_MODULES)
    dest.mkdir(parents=True, exist_ok=True)
    _write(dest / VMLINUX, kernelpkg.vmlinux_from_vmlinuz(kernel.vmlinuz))
    _write(dest / INITRD, initramfs(kernel, programs, ssh=dropbear is not None))
    make_root_disk(dest / DISK)
    manifest = {
        "format": FORMAT,
        "kernel": {"package": deb.name, "release": kernel.release},
        "modules": list(kernel.load_order),
        "busybox": package_version("busybox-static"),
        "dropbear": package_version("dropbear-bin") if dropbear else None,
        "curl": package_version("curl") if CURL in programs else None,
        "kernel_args": KERNEL_ARGS,
        "files": {name: file_digest(dest / name) for name in FILES},
        "inputs": inputs,
    }
    _write(dest / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def initramfs(kernel: kernelpkg.KernelFiles, programs: list[Path], ssh: bool) -> bytes:
    """The newc archive the VM boots from (see the module docstring): `programs` from the
    host with their libraries; `ssh` when dropbear is one of them."""
    boot, late = split_load_order(kernel, BOOT_MODULES)
    members = [
        cpio.directory("."),
        cpio.Member("dev/console", "chardev", 0o600, rdev=(5, 1)),
        cpio.Member("bin/busybox", mode=0o755, data=BUSYBOX.read_bytes()),
        *applet_links(busybox_applets(BUSYBOX)),
        *(
            cpio.Member(f"lib/modules/{name}.ko", data=kernel.modules[name])
            for name in kernel.load_order
        ),
        *(
            cpio.Member(file.path.lstrip("/"), mode=file.mode, data=file.text.encode())
            for file in vminit.guest_files(boot, late, ssh)
        ),
        *programs_with_libraries(programs),
    ]
    return cpio.archive(members)


def split_load_order(
    kernel: kernelpkg.KernelFiles, boot: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(`boot` with their dependencies, the rest), each in load order."""
    early = kernelpkg.load_order(boot, kernel.depends.__getitem__)
    return tuple(early), tuple(name for name in kernel.load_order if name not in early)


def busybox_applets(busybox: Path) -> list[str]:
    """`bin/sh`, `sbin/init`, ...: where busybox's applets go (`busybox --list-full`)."""
    listing = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in listing.splitlines() if line.strip()]


def applet_links(applets: Iterable[str]) -> list[cpio.Member]:
    """A symlink to /bin/busybox per applet — made at build time, so nothing in the guest
    (such as `busybox --install`) can ever replace the busybox binary itself."""
    return [
        cpio.symlink(path, "/bin/busybox")
        for path in sorted(set(applets))
        if path.strip("/") != "bin/busybox"
    ]


def programs_with_libraries(programs: Iterable[Path]) -> list[cpio.Member]:
    """Dynamically linked programs and every library `ldd` names for them (the loader at
    the path the programs ask for it), at the same paths, each once."""
    # Here, not at the top: `images.python` loads the image builder and `packaging`, and
    # every OpenStack API process imports this module for `machine_dir` alone.
    from unistack.images import python

    found = list(dict.fromkeys(programs))
    paths = [*found, *python.shared_libraries(found)]
    return [
        cpio.Member(str(path).lstrip("/"), mode=0o755, data=path.read_bytes()) for path in paths
    ]


def make_root_disk(target: Path) -> None:
    """A small ext4 (a marker file on it), as qcow2; deterministic, no root needed."""
    with tempfile.TemporaryDirectory(prefix="unistack-vmdisk-") as scratch:
        tree, raw = Path(scratch) / "tree", Path(scratch) / "disk.raw"
        for path, text in DISK_FILES.items():
            (tree / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (tree / path.lstrip("/")).write_text(text)
        with raw.open("wb") as disk:
            disk.truncate(DISK_MIB << 20)
        options = f"root_owner=0:0,hash_seed={DISK_UUID}"
        mkfs = ["mkfs.ext4", "-q", "-F", "-L", "unistack-root", "-U", DISK_UUID, "-E", options]
        _tool([*mkfs, "-d", str(tree), str(raw)], FAKE_TIME)
        # mkfs -d copies each source's ctime, which no one can set: zero them afterwards.
        fixes = "".join(f"sif {inode} {time} 0\n" for inode in DISK_INODES for time in INODE_TIMES)
        (Path(scratch) / "fix-times").write_text(fixes)
        _tool(["debugfs", "-w", "-f", str(Path(scratch) / "fix-times"), str(raw)], FAKE_TIME)
        temporary = target.with_name(f".{target.name}.tmp")
        _tool(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(temporary)])
        os.replace(temporary, target)


def fingerprint(paths: Iterable[Path]) -> str:
    """What decides the output: the format, the guest scripts, each input's size and mtime."""
    digest = hashlib.sha256(f"format {FORMAT} {KERNEL_ARGS}".encode())
    for file in vminit.guest_files(BOOT_MODULES, LATE_MODULES, True):
        digest.update(file.path.encode() + file.text.encode())
    for path in paths:
        info = path.stat()
        digest.update(f"{path.resolve()} {info.st_size} {info.st_mtime_ns}".encode())
    return digest.hexdigest()


def read_manifest(dest: Path) -> dict[str, Any]:
    try:
        manifest = orjson.loads((dest / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": path.stat().st_size}


def package_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    query = ["dpkg-query", "-W", "-f", "${Version}", package]
    result = subprocess.run(query, capture_output=True, text=True, check=False)
    version = result.stdout.strip() if result.returncode == 0 else ""
    return version or None


def _write(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


def _tool(argv: list[str], env: dict[str, str] | None = None) -> None:
    if not shutil.which(argv[0]):
        raise VmImageError(f"{argv[0]} is missing (Debian: e2fsprogs, qemu-utils)")
    environment = {**os.environ, **(env or {})}
    result = subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        raise VmImageError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build unistack's tiny VM image files.")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--kernel-deb", type=Path, help="a linux-image-*-amd64 package file")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="kernel package dir")
    args = parser.parse_args(argv)
    try:
        manifest = build_vm_image(args.dest, args.kernel_deb, args.cache)
    except (VmImageError, kernelpkg.KernelPackageError, OSError) as error:
        print(f"vmimage: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(manifest["files"], option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
