"""The ``unistack-cni`` executable: a CNI 1.0 bridge plugin with host-local IPAM.

A runtime (the node agent via ``invoke``, or any kubelet/containerd) execs it with ``CNI_*``
variables and the network config on stdin. ADD reserves an address, plugs a veth from the pod
netns into the node bridge and prints the result; DEL undoes that and succeeds when there is
nothing left to undo; CHECK compares the pod with ``prevResult``; VERSION lists the spec
versions. Every failure, even an unexpected one, is printed as the spec's error JSON with exit
code 1, never as a traceback.

Startup must stay fast (one exec per pod): this module imports only the standard library,
``unistack.dataplane`` and its own package, and netlink goes through iproute2's ``ip`` in one
``ip -batch -`` per namespace rather than pyroute2 (~330 ms to import). Even so a standalone
exec costs ~50 ms of CPU, so the node agent runs ``run`` in its own process (``server``) and
installs the thin ``delegate`` as its ``unistack-cni``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from unistack.dataplane import bridge, ipam, iproute, masquerade
from unistack.dataplane import cnierrors as errors
from unistack.dataplane.cnierrors import CniError
from unistack.integration.cni import config, result

Command = Callable[[config.Env, config.NetConf, bridge.PodLinks], "dict[str, Any] | None"]


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(os.environ, sys.stdin.buffer.read(), sys.stdout))


def run(
    environ: Mapping[str, str], stdin: bytes, out: TextIO, links: bridge.PodLinks | None = None
) -> int:
    """Execute one CNI command; write its result or error to ``out``; return the exit code."""
    try:
        output = dispatch(environ, stdin, links or bridge.LinuxPodLinks())
    except CniError as e:
        return fail(e, stdin, out)
    except Exception as e:  # the spec wants JSON, never a traceback
        return fail(CniError(errors.INTERNAL, "internal error", repr(e)), stdin, out)
    if output is not None:
        json.dump(output, out)
        out.write("\n")
    return 0


def dispatch(
    environ: Mapping[str, str], stdin: bytes, links: bridge.PodLinks
) -> dict[str, Any] | None:
    """Parse the environment and config, then run the command."""
    env = config.parse_env(environ)
    if env.command == "VERSION":
        return version(stdin)
    conf = config.parse_conf(stdin)
    return COMMANDS[env.command](env, conf, links)


def fail(error: CniError, stdin: bytes, out: TextIO) -> int:
    """Print ``error`` as the spec's error JSON; the exit code for it."""
    json.dump(error.to_json(_version_hint(stdin)), out)
    out.write("\n")
    return 1


def _version_hint(stdin: bytes) -> str:
    """The config's cniVersion for the error object, if it is one we speak."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return config.SUPPORTED_VERSIONS[-1]
    return version if version in config.SUPPORTED_VERSIONS else config.SUPPORTED_VERSIONS[-1]


def version(stdin: bytes) -> dict[str, Any]:
    """VERSION: the spec versions this plugin supports."""
    return {
        "cniVersion": _version_hint(stdin),
        "supportedVersions": list(config.SUPPORTED_VERSIONS),
    }


@contextmanager
def _link_errors() -> Iterator[None]:
    """Report a failed ``ip``/``nft`` or sysctl as a plugin error with its stderr."""
    try:
        yield
    except iproute.CommandError as e:
        raise CniError(
            errors.LINK_SETUP_FAILED, f"{' '.join(e.argv[:3])} failed", e.stderr
        ) from None
    except OSError as e:
        raise CniError(errors.IO_FAILURE, "I/O failure", str(e)) from None


def _allocate(
    store: ipam.HostLocalStore, conf: config.NetConf, env: config.Env
) -> list[ipam.Allocation]:
    try:
        return ipam.allocate(store, conf.range_sets, env.container_id, env.ifname)
    except ipam.DuplicateAllocation as e:
        raise CniError(errors.DUPLICATE_ALLOCATION, str(e)) from None
    except ipam.RangeExhausted as e:
        raise CniError(errors.RANGE_EXHAUSTED, str(e)) from None


def _specs(
    conf: config.NetConf, env: config.Env, allocations: list[ipam.Allocation]
) -> tuple[bridge.BridgeSpec, bridge.VethSpec]:
    gateways = [f"{a.range.gateway}/{a.range.subnet.prefixlen}" for a in allocations]
    ipv4 = next((str(a.address) for a in allocations if a.address.version == 4), None)
    routes = result.effective_routes(conf.routes, allocations, conf.is_default_gateway)
    veth = bridge.VethSpec(
        host_name=bridge.host_veth_name(env.container_id, env.ifname),
        ifname=env.ifname,
        netns=env.netns,
        mac=bridge.mac_for(ipv4),
        addresses=tuple(a.cidr for a in allocations),
        routes=tuple(routes),
        mtu=conf.mtu,
        hairpin=conf.hairpin,
    )
    bridge_spec = bridge.BridgeSpec(
        conf.bridge_name, tuple(gateways) if conf.is_gateway else (), conf.mtu
    )
    return bridge_spec, veth


def add(env: config.Env, conf: config.NetConf, links: bridge.PodLinks) -> dict[str, Any]:
    """ADD: reserve, plumb, masquerade; undo everything if a step fails."""
    if not os.path.exists(env.netns):
        raise CniError(errors.UNKNOWN_CONTAINER, f"network namespace {env.netns} does not exist")
    store = ipam.HostLocalStore(conf.data_dir, conf.name)
    with _link_errors(), store.lock():
        allocations = _allocate(store, conf, env)
        bridge_spec, veth = _specs(conf, env, allocations)
        try:
            links.detach(veth.host_name)  # a stale veth: IPAM says this pod has none
            bridge.enable_forwarding()
            links.attach(bridge_spec, veth)
        except BaseException:
            ipam.release(store, env.container_id, env.ifname)
            raise
    try:
        with _link_errors():
            links.configure(veth)
            if conf.ip_masq:
                subnets = [str(a.range.subnet) for a in allocations if a.address.version == 4]
                masquerade.ensure(conf.bridge_name, subnets, conf.cluster_cidrs)
            links_made = _links(conf, veth, links)
    except BaseException:
        _undo(env, conf, links)
        raise
    return result.render_add(conf.cni_version, links_made, allocations, veth.routes, conf.dns)


def _links(conf: config.NetConf, veth: bridge.VethSpec, links: bridge.PodLinks) -> result.Links:
    return result.Links(
        bridge=conf.bridge_name,
        bridge_mac=links.mac_of(conf.bridge_name),
        host_veth=veth.host_name,
        host_mac=links.mac_of(veth.host_name),
        ifname=veth.ifname,
        mac=veth.mac,
        sandbox=veth.netns,
    )


def _undo(env: config.Env, conf: config.NetConf, links: bridge.PodLinks) -> None:
    links.detach(bridge.host_veth_name(env.container_id, env.ifname))
    store = ipam.HostLocalStore(conf.data_dir, conf.name)
    with store.lock():
        ipam.release(store, env.container_id, env.ifname)


def delete(env: config.Env, conf: config.NetConf, links: bridge.PodLinks) -> None:
    """DEL: remove the veth and release the address; whatever is already gone is fine."""
    with _link_errors():
        _undo(env, conf, links)


def check(env: config.Env, conf: config.NetConf, links: bridge.PodLinks) -> None:
    """CHECK: the pod still has the interface, addresses and routes of ``prevResult``."""
    if conf.cni_version in ("0.3.0", "0.3.1"):
        raise CniError(errors.INCOMPATIBLE_VERSION, "config version does not allow CHECK")
    if not conf.prev_result:
        raise CniError(errors.INVALID_CONFIG, "CHECK needs prevResult")
    if not os.path.exists(env.netns):
        raise CniError(errors.UNKNOWN_CONTAINER, f"network namespace {env.netns} does not exist")
    try:
        expected = result.expected_from(conf.prev_result, env.ifname, env.netns)
    except (KeyError, TypeError, ValueError) as e:
        raise CniError(errors.INVALID_CONFIG, "invalid prevResult", str(e)) from None
    store = ipam.HostLocalStore(conf.data_dir, conf.name)
    with _link_errors():
        host_name = bridge.host_veth_name(env.container_id, env.ifname)
        view = links.inspect(env.netns, env.ifname, host_name)
        reserved = ipam.held_by(store.reservations(), env.container_id, env.ifname)
    problems = result.check_problems(expected, view, conf.bridge_name, reserved)
    if problems:
        raise CniError(
            errors.CHECK_FAILED, "pod network does not match prevResult", "; ".join(problems)
        )
    return None


COMMANDS: dict[str, Command] = {"ADD": add, "DEL": delete, "CHECK": check}
