"""An SSH server for container servers: the host's dropbear, lent read-only to the guest.

A container server's image (the built-in busybox one, or any other) brings no SSH server.
The host's Debian `dropbear-bin` does: `locate` finds `dropbear` and `dropbearkey` and the
shared libraries `ldd` names for them. The guest gets them as read-only bind
mounts in one directory of its `/run` tmpfs (`GUEST_DIR`), never over the image's own files,
so a guest with another libc keeps its own. The two programs are lent as copies whose ELF
interpreter and RPATH name GUEST_DIR (`lend`, with Debian's `patchelf`): they then run as
ordinary programs, nothing in the guest needs them at their host paths, and dropbear's
re-execution of itself for every connection (`fexecve` of its own file, which the kernel
starts with the program's interpreter) finds the lent loader and libraries too. Started
through the loader explicitly (`ld.so --library-path`), that re-execution took the guest's
`/lib64` loader, which found no libtomcrypt, and every connection was reset, in any image
with a glibc of its own. dropbear clears the environment of the sessions it starts, so the
guest's own programs run as they would without it.

`unistack.dataplane.containerbundle` adds `bind_mounts(server)` to the runc bundle and
`unistack.dataplane.containerinit` writes `start_script(server)` as `/etc/init.d/sshd`, which
busybox init respawns: it makes the host keys once per server (in the guest's `/etc/dropbear`,
that is in the server's own upper layer in its state dir: they survive reboots, and every
server has its own) and runs dropbear in the foreground on port 22: keys
(`/root/.ssh/authorized_keys`, from the server's keys and the metadata service), and a
password only once one is set (`changePassword`, `unistack.dataplane.injection`; the image's
root has none, so until then every password is refused).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
GUEST_DIR = "/run/unistack-sshd"
HOST_KEY_DIR = "/etc/dropbear"
HOST_KEY_TYPES = ("ed25519", "ecdsa")  # made at boot; others (rsa) on demand (`-R`)
START_SCRIPT = "/etc/init.d/sshd"
SSH_PORT = 22
KEEPALIVE_S = 60
LDD_TIMEOUT_S = 10
PATCHELF = "patchelf"


@dataclass(frozen=True)
class SshServer:
    """dropbear on the host: its programs, and the loader and libraries they need."""

    dropbear: Path
    dropbearkey: Path
    loader: Path  # the ELF interpreter, e.g. /lib64/ld-linux-x86-64.so.2
    libraries: tuple[Path, ...]

    def files(self) -> tuple[Path, ...]:
        """Every host file the guest gets, each under its own name in GUEST_DIR."""
        return (self.dropbear, self.dropbearkey, self.loader, *self.libraries)


def locate(dropbear: Path = DROPBEAR, dropbearkey: Path = DROPBEARKEY) -> SshServer | None:
    """dropbear and what it links to, or None when it is not installed (or `ldd` fails)."""
    if not all(os.access(program, os.X_OK) for program in (dropbear, dropbearkey)):
        return None
    found: list[Path] = []
    for program in (dropbear, dropbearkey):
        try:
            listing = subprocess.run(
                ["ldd", str(program)],
                capture_output=True,
                text=True,
                check=True,
                timeout=LDD_TIMEOUT_S,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        found += [path for path in ldd_paths(listing) if path not in found]
    return server_of(dropbear, dropbearkey, found)


def server_of(dropbear: Path, dropbearkey: Path, paths: Iterable[Path]) -> SshServer | None:
    """Split `ldd`'s paths into the loader and the libraries; None without a loader."""
    listed = list(paths)
    loaders = [path for path in listed if path.name.startswith("ld-linux")]
    if not loaders:
        return None  # a static build would need no loader, but Debian's is dynamic
    libraries = tuple(path for path in listed if path not in loaders)
    names = [path.name for path in (*libraries, loaders[0])]
    if len(set(names)) != len(names):
        return None  # two libraries of one name cannot share GUEST_DIR
    return SshServer(dropbear, dropbearkey, loaders[0], libraries)


def ldd_paths(ldd_output: str) -> list[Path]:
    """The absolute paths in `ldd` output, in order (the vDSO has none)."""
    found = []
    for line in ldd_output.splitlines():
        words = [word for word in line.split() if word.startswith("/")]
        if words:
            found.append(Path(words[0]))
    return found


def guest_path(host_file: Path) -> str:
    return f"{GUEST_DIR}/{host_file.name}"


def bind_mounts(server: SshServer) -> list[dict[str, Any]]:
    """runc mounts: each file read-only at GUEST_DIR/<name> (after the /run tmpfs)."""
    return [
        {
            "destination": guest_path(host_file),
            "type": "bind",
            "source": str(host_file.resolve()),
            "options": ["bind", "ro", "nosuid", "nodev"],
        }
        for host_file in server.files()
    ]


def lend(server: SshServer, directory: Path) -> SshServer | None:
    """`server` with copies of dropbear and dropbearkey in `directory` whose interpreter is
    the lent loader and whose RPATH is GUEST_DIR (RPATH, not RUNPATH: it also serves the
    libraries' own dependencies); None when `patchelf` is missing or fails."""
    directory.mkdir(parents=True, exist_ok=True)
    interpreter = guest_path(server.loader)
    copies = []
    for program in (server.dropbear, server.dropbearkey):
        copy = directory / program.name
        partial = directory / f".{program.name}.tmp"
        partial.write_bytes(program.read_bytes())
        partial.chmod(0o755)
        patch = [PATCHELF, "--set-interpreter", interpreter, "--force-rpath", "--set-rpath"]
        try:
            subprocess.run(
                [*patch, GUEST_DIR, str(partial)],
                capture_output=True,
                check=True,
                timeout=LDD_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError):
            partial.unlink(missing_ok=True)
            return None
        partial.replace(copy)  # a running guest keeps the copy it was given
        copies.append(copy)
    return dataclasses.replace(server, dropbear=copies[0], dropbearkey=copies[1])


def run_command(program: Path, *args: str) -> str:
    """A shell command running the lent `program` from GUEST_DIR."""
    return shlex.join([guest_path(program), *args])


def start_script(server: SshServer, server_id: str) -> str:
    """`/etc/init.d/sshd`, respawned by init: host keys once, then dropbear in the foreground
    (-F), more host key types on demand (-R); passwords only once one is set. It logs to
    syslog, which a guest without syslogd drops: the console keeps the guest's own lines."""
    lines = [
        "#!/bin/sh",
        f"# generated by unistack for server {server_id}; rewritten at every boot",
        f"mkdir -p {HOST_KEY_DIR} && chmod 700 {HOST_KEY_DIR}",
    ]
    for kind in HOST_KEY_TYPES:
        key = f"{HOST_KEY_DIR}/dropbear_{kind}_host_key"
        make = run_command(server.dropbearkey, "-t", kind, "-f", key)
        lines.append(f"[ -s {key} ] || {make} >/dev/null 2>&1 || rm -f {key}")
    # password logins too: none succeeds until the server's password is set (changePassword)
    serve = ["-F", "-R", "-p", str(SSH_PORT), "-K", str(KEEPALIVE_S)]
    lines.append("exec " + run_command(server.dropbear, *serve, "-P", "/run/dropbear.pid"))
    return "\n".join(lines) + "\n"
