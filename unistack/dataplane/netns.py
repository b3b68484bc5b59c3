"""Named network namespaces, as ``ip netns add`` makes them: a bind mount at /run/netns/<name>.

The node agent names a pod's namespace ``unistack-<pod uid>`` and hands its path to the CNI
plugin; ``list_with_prefix`` finds leftovers to clean up after a crash. Every operation is
idempotent. ``FakeNamespaces`` stands in for tests that need no kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from typing import Protocol

from unistack.dataplane import iproute

NETNS_DIR = "/run/netns"
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")


class Namespaces(Protocol):
    """Create, delete and find named network namespaces."""

    def create(self, name: str) -> str: ...
    def delete(self, name: str) -> None: ...
    def exists(self, name: str) -> bool: ...
    def list_with_prefix(self, prefix: str) -> list[str]: ...


def path_of(name: str) -> str:
    """The file a namespace called ``name`` is mounted on (what CNI_NETNS carries)."""
    if not _VALID_NAME.match(name):
        raise ValueError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_DIR, name)


class LinuxNamespaces:
    """Namespaces under /run/netns, made and removed by iproute2."""

    def create(self, name: str) -> str:
        """Create ``name`` unless it exists; return its path."""
        path = path_of(name)
        if not os.path.exists(path):
            try:
                iproute.ip("netns", "add", name)
            except iproute.CommandError:
                if not os.path.exists(path):  # lost a race with another creator otherwise
                    raise
        return path

    def delete(self, name: str) -> None:
        """Delete ``name``; a missing namespace is already deleted."""
        path = path_of(name)
        if os.path.exists(path):
            try:
                iproute.ip("netns", "delete", name)
            except iproute.CommandError:
                if os.path.exists(path):
                    raise

    def exists(self, name: str) -> bool:
        """Whether ``name`` is mounted under /run/netns."""
        return os.path.exists(path_of(name))

    def list_with_prefix(self, prefix: str) -> list[str]:
        """Names of the namespaces starting with ``prefix``, sorted."""
        try:
            names = os.listdir(NETNS_DIR)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if name.startswith(prefix))


def run_in(
    name: str, argv: Sequence[str], timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``name`` (``ip netns exec``); never raises on exit code."""
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class FakeNamespaces:
    """An in-memory Namespaces for tests of callers."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def create(self, name: str) -> str:
        self.names.add(name)
        return path_of(name)

    def delete(self, name: str) -> None:
        self.names.discard(name)

    def exists(self, name: str) -> bool:
        return name in self.names

    def list_with_prefix(self, prefix: str) -> list[str]:
        return sorted(name for name in self.names if name.startswith(prefix))
