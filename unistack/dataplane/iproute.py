"""Run iproute2 and nftables: the one place the data plane execs a binary.

Why exec ``ip`` instead of netlink from Python: pyroute2 costs ~330 ms to import, far too much
for a CNI plugin exec'd once per pod, while ``ip -batch -`` applies a whole list of changes in
one exec of ~2 ms of CPU. Used by ``netns``, ``bridge``, ``masquerade`` and ``routes``.
"""

from __future__ import annotations

import json
import os
import subprocess
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
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)
    return proc.stdout


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


def sysctl(*settings: str, netns: str | None = None) -> None:
    """`sysctl -w` each `key=value` of `settings`, inside the named namespace when given."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run([*prefix, "sysctl", "-qw", *settings])


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Apply ``lines`` (``ip`` commands without the leading ``ip``) in one exec."""
    if lines:
        run([*ip_argv(netns), "-batch", "-"], "\n".join(lines) + "\n")


def nft(ruleset: str) -> None:
    """Apply an nftables script as one atomic transaction."""
    run(["nft", "-f", "-"], ruleset)
