"""IPv6 router advertisements on a router's subnets: radvd in the router's namespace, as
Neutron's L3 agent runs it.

A router interface on an IPv6 subnet whose `ipv6_ra_mode` is set (`slaac`,
`dhcpv6-stateless`, `dhcpv6-stateful`) is advertised: the prefix on-link, autonomous (SLAAC)
unless the mode is stateful, the managed flag for `dhcpv6-stateful`, the other-config flag for
`dhcpv6-stateless`, and the network's MTU. Guests (system containers and VMs alike) take
their default IPv6 route from it, and with SLAAC the EUI-64 address Neutron's IPAM already
gave their port. An IPv6 subnet without an RA mode is not advertised (Neutron's default).

Files live in `<root>/<router id>/`: `radvd.conf`, `radvd.pid`, `radvd.log` (what radvd
says). Rendering is pure (`render_config`); `LinuxRadvd.ensure` writes the configuration only
when it differs and then starts radvd, or makes the running one read it again (SIGHUP; also
the first time this agent sees it, since the last agent may have stopped between writing and
signalling); nothing advertised stops it. radvd runs as `unistack.dataplane.daemons` runs a
host daemon (in the foreground, adopted again through its pid file by the next agent), found
only while its command line names this router's configuration. It counts as started once it
catches SIGHUP (radvd writes its pid file before it installs its handlers, and a SIGHUP
before that would end it). radvd forks a privilege-separation helper into its process group,
which `daemons.stop` ends and reaps with it, so no zombie is left to the agent (a subreaper).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unistack.dataplane import daemons

RADVD = "radvd"
RA_MODES = ("slaac", "dhcpv6-stateless", "dhcpv6-stateful")
MIN_INTERVAL_S = 30  # Neutron's radvd intervals; a guest's solicitation is answered at once
MAX_INTERVAL_S = 100


@dataclass(frozen=True, slots=True)
class Advertised:
    """One prefix advertised on one of the router's inside interfaces."""

    interface: str
    prefix: str
    mode: str
    mtu: int = 1450


# --- rendering (pure) ------------------------------------------------------------------------


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def render_config(advertised: Iterable[Advertised]) -> str:
    """radvd's configuration: a block per interface, a prefix block per subnet; "" when
    there is nothing to advertise."""
    by_interface: dict[str, list[Advertised]] = {}
    for entry in sorted(advertised, key=lambda a: (a.interface, a.prefix)):
        by_interface.setdefault(entry.interface, []).append(entry)
    blocks = []
    for interface, entries in by_interface.items():
        modes = {entry.mode for entry in entries}
        lines = [
            f"interface {interface}",
            "{",
            "    AdvSendAdvert on;",
            f"    MinRtrAdvInterval {MIN_INTERVAL_S};",
            f"    MaxRtrAdvInterval {MAX_INTERVAL_S};",
            f"    AdvLinkMTU {min(entry.mtu for entry in entries)};",
            f"    AdvManagedFlag {_on('dhcpv6-stateful' in modes)};",
            f"    AdvOtherConfigFlag {_on('dhcpv6-stateless' in modes)};",
        ]
        for entry in entries:
            lines += [
                f"    prefix {entry.prefix}",
                "    {",
                "        AdvOnLink on;",
                f"        AdvAutonomous {_on(entry.mode != 'dhcpv6-stateful')};",
                "    };",
            ]
        blocks.append("\n".join([*lines, "};"]))
    if not blocks:
        return ""
    return "# unistack router advertisements: generated, do not edit\n" + "\n".join(blocks) + "\n"


# --- acting ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RadvdFiles:
    """Where one router's radvd keeps its files."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "radvd.conf"

    @property
    def pid(self) -> Path:
        return self.directory / "radvd.pid"

    @property
    def log(self) -> Path:
        return self.directory / "radvd.log"


@dataclass(slots=True)
class LinuxRadvd:
    """radvd per router, its files under `root`."""

    root: Path
    signalled: set[str] = field(default_factory=set)  # routers told to reread by this agent

    def files(self, router_id: str) -> RadvdFiles:
        return RadvdFiles(self.root / router_id)

    def running(self, router_id: str) -> int | None:
        files = self.files(router_id)
        return daemons.running_pid(files.pid, str(files.config))

    def ensure(self, router_id: str, namespace: str, advertised: Sequence[Advertised]) -> None:
        """radvd advertising exactly `advertised` in `namespace`, or none when it is empty."""
        config = render_config(advertised)
        if not config:
            self.stop(router_id)
            return
        files = self.files(router_id)
        files.directory.mkdir(parents=True, exist_ok=True)
        try:
            changed = files.config.read_text() != config
        except FileNotFoundError:
            changed = True
        if changed:
            staged = files.config.with_suffix(".tmp")
            staged.write_text(config)
            os.chmod(staged, 0o644)  # radvd refuses a configuration others may write
            os.replace(staged, files.config)
        pid = self.running(router_id)
        if pid is None:
            argv = [
                *("ip", "netns", "exec", namespace, RADVD, "--nodaemon"),
                f"--config={files.config}",
                f"--pidfile={files.pid}",
                "--logmethod=stderr",
            ]

            def ready(started: int) -> bool:
                return self.running(router_id) == started and daemons.catches(
                    started, signal.SIGHUP
                )

            try:  # `ip netns exec` becomes radvd: the pid started is radvd's
                daemons.start(argv, files.log, ready)
            except daemons.StartError as error:
                raise OSError(f"radvd for router {router_id}: {error}") from None
        elif changed or router_id not in self.signalled:
            os.kill(pid, signal.SIGHUP)
        self.signalled.add(router_id)

    def stop(self, router_id: str) -> None:
        """radvd of the router ended and its files removed."""
        pid = self.running(router_id)
        if pid is not None:
            daemons.stop(pid)
        self.signalled.discard(router_id)
        shutil.rmtree(self.files(router_id).directory, ignore_errors=True)
