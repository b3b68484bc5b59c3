"""Run iproute2 and nftables: the one place the data plane execs a binary.

Why exec ``ip`` instead of netlink from Python: pyroute2 costs ~330 ms to import, far too much
for a CNI plugin exec'd once per pod, while ``ip -batch -`` applies a whole list of changes in
one exec of ~2 ms of CPU. Used by ``netns``, ``bridge``, ``masquerade`` and ``routes``.

Why ``os.posix_spawnp`` instead of ``subprocess``: importing ``subprocess`` (with selectors,
threading, signal, locale) costs ~8 ms of CPU, which every exec of the CNI plugin paid for two
or three short commands. ``run`` needs no more than a spawn: stdin and stderr are memfds, so
neither side can block on a full pipe, and stdout is a pipe read to its end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

NETNS_DIRS = ("/run/netns", "/var/run/netns")


class CommandError(Exception):
    """A command exited non-zero; ``stderr`` says why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.argv)}: exit {returncode}: {self.stderr}")


def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run ``argv`` to completion and return its stdout; raise CommandError on failure."""
    stdin_fd, stderr_fd = _memfd(stdin or ""), _memfd("")
    stdout_r, stdout_w = os.pipe()
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                (os.POSIX_SPAWN_DUP2, stdout_w, 1),
                (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
            ],
        )
        os.close(stdout_w)
        stdout_w = -1
        stdout = _read_to_end(stdout_r)
        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if returncode != 0:
            os.lseek(stderr_fd, 0, os.SEEK_SET)
            raise CommandError(argv, returncode, _read_to_end(stderr_fd))
        return stdout
    finally:
        for fd in (stdin_fd, stderr_fd, stdout_r, stdout_w):
            if fd >= 0:
                os.close(fd)


def _memfd(content: str) -> int:
    """An anonymous file holding ``content``, positioned at its start."""
    fd = os.memfd_create("unistack-iproute")
    os.write(fd, content.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_to_end(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def ip_argv(netns: str | None = None) -> list[str]:
    """The argv prefix running ``ip`` in ``netns``: a name, a path, or None for the host.

    ``ip -n`` takes names only, so a namespace outside /run/netns (``/proc/PID/ns/net``, as
    some runtimes pass) goes through ``nsenter``.
    """
    if netns is None:
        return ["ip"]
    if "/" not in netns:
        return ["ip", "-n", netns]
    if os.path.dirname(netns) in NETNS_DIRS:
        return ["ip", "-n", os.path.basename(netns)]
    return ["nsenter", f"--net={netns}", "ip"]


def ip(*args: str, netns: str | None = None) -> str:
    """Run one ``ip`` command."""
    return run([*ip_argv(netns), *args])


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    """Run one ``ip -j`` query and decode it (an empty output is an empty list)."""
    out = run([*ip_argv(netns), "-j", *args])
    decoded: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return decoded


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Apply ``lines`` (``ip`` commands without the leading ``ip``) in one exec."""
    if lines:
        run([*ip_argv(netns), "-batch", "-"], "\n".join(lines) + "\n")


def nft(ruleset: str) -> None:
    """Apply an nftables script as one atomic transaction."""
    run(["nft", "-f", "-"], ruleset)
