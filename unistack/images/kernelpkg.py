"""Debian's kernel package as a VM's kernel: the package file, `vmlinux`, and the modules.

`unistack.images.vmimage` builds the tiny VM image from a `linux-image-<version>-amd64`
package file that is downloaded (`apt-get download`, into a cache directory) but never
installed, so the host's /boot and /lib/modules stay untouched. From it:

- `vmlinux`: the uncompressed ELF kernel inside `vmlinuz` (an xz stream after the bzImage
  setup code). QEMU boots it through its PVH entry point without decompressing anything,
  seconds faster under software emulation than booting `vmlinuz`.
- the guest modules and the ones they need, in load order. The package ships no
  `modules.dep` (depmod writes it at install time), so the dependencies are read from each
  module's own `.modinfo` section (`depends=a,b`), the same field depmod reads.

The package is read as a stream (`dpkg-deb --fsys-tarfile`): nothing but the few files used
is ever written. Pure parts (`vmlinux_from_vmlinuz`, `modinfo_depends`, `load_order`) are
tested without I/O.
"""

from __future__ import annotations

import lzma
import re
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

META_PACKAGE = "linux-image-amd64"  # depends on the current linux-image-<abi>-amd64
XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
_VERSIONED = re.compile(r"linux-image-(\d[\w.+-]*-amd64)$")


class KernelPackageError(Exception):
    """The kernel package is missing, unreadable, or lacks what the VM needs."""


@dataclass(frozen=True)
class KernelFiles:
    """What the VM image takes from the package."""

    release: str  # 6.1.0-56-amd64, the directory under /lib/modules
    vmlinuz: bytes
    modules: dict[str, bytes]  # module name -> .ko bytes, for the load order's modules
    load_order: tuple[str, ...]
    depends: dict[str, tuple[str, ...]]  # of the load order's modules


def find_kernel_deb(cache: Path) -> Path | None:
    """The newest kernel package file in `cache` (by modification time), if any."""
    found = sorted(cache.glob("linux-image-*-amd64_*_amd64.deb"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def download_kernel_deb(cache: Path) -> Path:
    """`apt-get download` the kernel that `linux-image-amd64` points to, into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    depends = _run(["apt-cache", "depends", META_PACKAGE], cache).decode()
    package = versioned_package(depends)
    _run(["apt-get", "download", package], cache)
    deb = find_kernel_deb(cache)
    if deb is None:
        raise KernelPackageError(f"apt-get download {package} left no package in {cache}")
    return deb


def versioned_package(apt_cache_depends: str) -> str:
    """The `linux-image-<abi>-amd64` named in `apt-cache depends linux-image-amd64`."""
    for line in apt_cache_depends.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Depends" and _VERSIONED.match(value.strip()):
            return value.strip()
    raise KernelPackageError(f"{META_PACKAGE} names no versioned kernel package")


def vmlinux_from_vmlinuz(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage whose payload is xz-compressed (Debian's amd64)."""
    start = vmlinuz.find(XZ_MAGIC)
    if start < 0:
        raise KernelPackageError("vmlinuz holds no xz stream (not an xz-compressed kernel)")
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        kernel = decompressor.decompress(vmlinuz[start:])
    except lzma.LZMAError as error:
        raise KernelPackageError(f"vmlinuz's xz stream is corrupt: {error}") from None
    if not decompressor.eof or not kernel.startswith(ELF_MAGIC):
        raise KernelPackageError("vmlinuz's xz stream is not a whole ELF kernel")
    return kernel


def modinfo_depends(module: bytes) -> tuple[str, ...]:
    """The `depends=` of a kernel module's `.modinfo` section (names, `-` as `_`)."""
    for field in _modinfo_fields(module):
        key, _, value = field.partition(b"=")
        if key == b"depends":
            names = value.decode().split(",")
            return tuple(module_name(name) for name in names if name)
    return ()


def _modinfo_fields(module: bytes) -> list[bytes]:
    """NUL-separated `key=value` strings of the `.modinfo` section of an ELF64 module."""
    if not module.startswith(ELF_MAGIC) or module[4] != 2:
        raise KernelPackageError("not an ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", module, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from(
            "<IIQQQQ", module, shoff + index * shentsize
        )
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        end = module.index(b"\0", names_offset + name)
        if module[names_offset + name : end] == b".modinfo":
            return [field for field in module[offset : offset + size].split(b"\0") if field]
    return []


def module_name(file_or_name: str) -> str:
    """`virtio-net.ko` / `virtio_net` -> `virtio_net`, as the kernel names modules."""
    name = file_or_name.rsplit("/", 1)[-1]
    return name.removesuffix(".ko").replace("-", "_")


def load_order(wanted: Iterable[str], depends: Callable[[str], Iterable[str]]) -> list[str]:
    """`wanted` and everything they depend on, each after its dependencies (insmod order)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise KernelPackageError(f"module dependency cycle through {name}")
        visiting.add(name)
        for dependency in depends(name):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def read_kernel_package(deb: Path, wanted: Iterable[str]) -> KernelFiles:
    """vmlinuz and the wanted modules with their dependencies, from the package file.

    Two passes over the package's data: the first reads every module's dependencies (and
    vmlinuz), the second keeps the bytes of the modules in the load order only."""
    vmlinuz, release, depends = b"", "", {}
    for path, read in _members(deb):
        if path.startswith("boot/vmlinuz-"):
            vmlinuz, release = read(), path.removeprefix("boot/vmlinuz-")
        elif path.endswith(".ko"):
            depends[module_name(path)] = modinfo_depends(read())
    if not vmlinuz:
        raise KernelPackageError(f"{deb.name} holds no boot/vmlinuz-*")
    order = load_order(wanted, lambda name: _known(depends, name))
    keep = set(order)
    modules = {
        module_name(path): read()
        for path, read in _members(deb)
        if path.endswith(".ko") and module_name(path) in keep
    }
    needs = {name: depends[name] for name in order}
    return KernelFiles(release, vmlinuz, modules, tuple(order), needs)


def _known(depends: Mapping[str, tuple[str, ...]], name: str) -> tuple[str, ...]:
    try:
        return depends[name]
    except KeyError:
        raise KernelPackageError(f"the kernel package has no module {name}") from None


def _members(deb: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(path without ./, reader) for each regular file of the package's data, in order."""
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile():
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    yield member.name.removeprefix("./"), extracted.read
    if process.returncode != 0:
        raise KernelPackageError(f"dpkg-deb could not read {deb}")


def _run(argv: list[str], cwd: Path) -> bytes:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise KernelPackageError(f"{' '.join(argv)} failed: {message}")
    return result.stdout
