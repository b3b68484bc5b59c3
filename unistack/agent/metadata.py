"""The metadata service at 169.254.169.254, served inside every router namespace (Neutron's
metadata proxy and Nova's metadata API in one).

A router's nftables table (`unistack.dataplane.routers`) redirects `169.254.169.254:80` arriving
on its `qr-*` interfaces to `METADATA_PORT` in the router's namespace. There, the agent itself
listens: `listen_in_netns` opens the socket from a short-lived thread that `setns()`s into the
namespace (a socket belongs to the namespace it was created in, whichever thread later uses it),
and the agent's event loop serves it with aiohttp. Chosen over a proxy process per router
(`ip netns exec … python`): no process to start, supervise and clean up per router, no ~300 ms
interpreter start, and the answers come straight from the agent's informer caches.

Who asks is the request's source address: the router joins subnets that never overlap, so the
source IP and the router's networks find one Port (`find_instance`, pure), whose `device_id` is
the Server; its Keypair (by the server's `user_id` and `key_name`) gives the public key and a
floating IP associated with the port the public address. Answers follow Nova's paths:
`/openstack` (versions), `/openstack/<version>/meta_data.json`, `…/user_data`,
`…/vendor_data.json`, `…/network_data.json` (the instance's links, addresses, routes and DNS
servers, as Nova writes it); EC2's `/<version>/meta-data/…` (instance-id is the server's
uuid, as the servers have no integer id to make Nova's `i-%08x` from) and
`/<version>/user-data`. An address that is no instance here gets 404. `l3.L3Agent` starts
and stops one site per router.

The same documents make a server's config drive (`drive_files`, Nova's layout: `openstack/
<version>/…` and `ec2/<version>/meta-data.json`), which the compute controller renders from
the objects it reads at boot (`unistack.iaas.compute.agentdriver`) and the host's agent
writes to a disk labelled `config-2` (`unistack.dataplane.configdrive`).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger(__name__)
Obj = dict[str, Any]

METADATA_PORT = 9697
CLONE_NEWNET = 0x40000000
OPENSTACK_VERSIONS = (
    "2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06",
    "2017-02-22", "2018-08-27", "2020-10-14", "latest",
)  # fmt: skip
EC2_VERSIONS = ("1.0", "2007-01-19", "2009-04-04", "latest")
DRIVE_EC2_VERSIONS = ("2009-04-04", "latest")  # the EC2 trees a config drive carries (Nova's)
EC2_KEYS = ("ami-id", "hostname", "instance-id", "local-hostname", "local-ipv4", "public-ipv4")
INSTANCE_OWNERS = ("compute:",)


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    """What the metadata service tells one instance about itself."""

    uuid: str
    name: str
    hostname: str
    project_id: str
    availability_zone: str
    local_ipv4: str
    public_ipv4: str | None = None
    public_keys: Mapping[str, str] = field(default_factory=dict)
    user_data: bytes | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    launch_index: int = 0
    image_id: str = ""
    devices: tuple[Obj, ...] = ()
    nics: tuple[Obj, ...] = ()  # `nic_of` each port, in the guest's order: network_data.json
    files: tuple[tuple[str, bytes], ...] = ()  # personality files: (guest path, content)


Lookup = Callable[[str, str], InstanceMetadata | None]  # (router id, source address)


# --- deciding (pure) -------------------------------------------------------------------------


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _fixed_addresses(port: Obj) -> list[str]:
    return [str(ip.get("ip_address")) for ip in _spec(port).get("fixed_ips") or []]


def find_port(networks: Iterable[str], source: str, ports: Iterable[Obj]) -> Obj | None:
    """The instance port on one of `networks` holding `source`."""
    wanted = set(networks)
    for port in ports:
        spec = _spec(port)
        owner = str(spec.get("device_owner") or "")
        if (
            spec.get("network_id") in wanted
            and owner.startswith(INSTANCE_OWNERS)
            and source in _fixed_addresses(port)
        ):
            return port
    return None


def hostname_of(server: Obj) -> str:
    """The guest hostname: the server's own (2.90) or its name made a DNS label."""
    spec = _spec(server)
    given = str(spec.get("hostname") or "")
    if given:
        return given
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in str(spec.get("name") or ""))
    return label.strip("-").lower()[:63] or f"server-{server['metadata']['name'][:8]}"


def public_keys(server: Obj, keypairs: Iterable[Obj]) -> dict[str, str]:
    """The server's key pair (its owner's, by name) as {name: public key}."""
    spec = _spec(server)
    name, user = spec.get("key_name"), spec.get("user_id")
    if not name:
        return {}
    for keypair in keypairs:
        kspec = _spec(keypair)
        if kspec.get("name") == name and kspec.get("user_id") == user:
            return {str(name): str(kspec.get("public_key") or "").strip()}
    return {}


def decode_user_data(text: Any) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode(str(text), validate=False)
    except (binascii.Error, ValueError):
        return None


def nic_of(port: Obj, subnets: Mapping[str, Obj], network: Obj) -> Obj:
    """One port (the Networking API's shape) as the guest gets it: addresses with their
    subnet's prefix, the IPv4 gateway, the subnets' DNS servers and the network's MTU."""
    addresses, gateway, dns = [], None, []
    for fixed in port.get("fixed_ips") or []:
        subnet = subnets.get(str(fixed.get("subnet_id"))) or {}
        cidr = subnet.get("cidr")
        if not cidr:
            continue
        prefix = ipaddress.ip_network(cidr).prefixlen
        addresses.append(f"{fixed['ip_address']}/{prefix}")
        if gateway is None and subnet.get("ip_version", 4) == 4:
            gateway = subnet.get("gateway_ip")
        dns += [str(server) for server in subnet.get("dns_nameservers") or []]
    return {
        "port_id": port["id"],
        "mac": str(port.get("mac_address") or ""),
        "network_id": str(port.get("network_id") or ""),
        "fixed_ips": addresses,
        "gateway": gateway,
        "dns_nameservers": dns,
        "mtu": int(network.get("mtu") or 1500),
    }


def server_nics(
    server: Obj, ports: Iterable[Obj], subnets: Mapping[str, Obj], networks: Mapping[str, Obj]
) -> tuple[Obj, ...]:
    """The server's ports (objects) as `nic_of` gives them, in the order the guest has them
    (`status.ports`, then any other by name)."""
    server_id = server["metadata"]["name"]
    order = {
        port_id: i for i, port_id in enumerate((server.get("status") or {}).get("ports") or [])
    }
    mine = [p for p in ports if _spec(p).get("device_id") == server_id]
    mine.sort(key=lambda p: (order.get(p["metadata"]["name"], len(order)), p["metadata"]["name"]))
    subnet_specs = {name: _spec(subnet) for name, subnet in subnets.items()}
    return tuple(
        nic_of(
            {**_spec(port), "id": port["metadata"]["name"]},
            subnet_specs,
            _spec(networks.get(str(_spec(port).get("network_id")), {})),
        )
        for port in mine
    )


def network_data_json(nics: Sequence[Obj]) -> Obj:
    """Nova's `network_data.json`: a link per NIC (named as Nova names the tap: `tap` and the
    port id's first 11 characters), a network per address with its default route when its
    gateway is on it, and the DNS servers."""
    links: list[Obj] = []
    networks: list[Obj] = []
    services: list[Obj] = []
    for nic in nics:
        link = f"tap{str(nic['port_id'])[:11]}"
        links.append(
            {
                "id": link,
                "vif_id": nic["port_id"],
                "type": "bridge",
                "mtu": nic.get("mtu") or 1500,
                "ethernet_mac_address": nic["mac"],
            }
        )
        dns = [{"type": "dns", "address": str(a)} for a in nic.get("dns_nameservers") or []]
        services += [service for service in dns if service not in services]
        for address in nic.get("fixed_ips") or []:
            interface = ipaddress.ip_interface(address)
            v6 = interface.version == 6
            anywhere = "::" if v6 else "0.0.0.0"
            gateway = nic.get("gateway")
            on_link = gateway and ipaddress.ip_address(gateway) in interface.network
            routes = [{"network": anywhere, "netmask": anywhere, "gateway": gateway}]
            networks.append(
                {
                    "id": f"network{len(networks)}",
                    "type": "ipv6" if v6 else "ipv4",
                    "link": link,
                    "ip_address": str(interface.ip),
                    "netmask": str(interface.netmask),
                    "routes": routes if on_link else [],
                    "network_id": nic["network_id"],
                    "services": dns,
                }
            )
    return {"links": links, "networks": networks, "services": services}


def tagged_devices(server: Obj, macs: Mapping[str, str]) -> tuple[Obj, ...]:
    """The server's tagged NICs and disks, as Nova's `meta_data.json` lists them (only
    devices with a tag: what a guest asked to find; an untagged one is left out, as Nova's
    libvirt driver does). A NIC is known by its MAC (`macs`: port id → MAC), a disk by its
    serial (the volume id) and device path; tags come from the boot request or the attach
    (`status.port_tags`, `status.volumes_attached[].tag`)."""
    status = server.get("status") or {}
    port_tags = status.get("port_tags") or {}
    devices: list[Obj] = [
        {"type": "nic", "bus": "pci", "mac": macs[port_id], "tags": [str(port_tags[port_id])]}
        for port_id in status.get("ports") or []
        if port_tags.get(port_id) and macs.get(port_id)
    ]
    devices += [
        {
            "type": "disk",
            "bus": "virtio",
            "serial": str(item.get("volume_id") or ""),
            "path": str(item.get("device") or ""),
            "tags": [str(item["tag"])],
        }
        for item in status.get("volumes_attached") or []
        if isinstance(item, dict) and item.get("tag")
    ]
    return tuple(devices)


def find_instance(
    networks: Iterable[str],
    source: str,
    ports: Sequence[Obj],
    servers: Iterable[Obj],
    keypairs: Iterable[Obj],
    floating_ips: Iterable[Obj],
    subnets: Mapping[str, Obj] | None = None,
    network_objects: Mapping[str, Obj] | None = None,
) -> InstanceMetadata | None:
    """The instance behind `source` on a router joining `networks`, or None. `subnets` and
    `network_objects` (by name) give its `network_data.json`."""
    port = find_port(networks, source, ports)
    if port is None:
        return None
    server_id = str(_spec(port).get("device_id") or "")
    server = next((s for s in servers if s["metadata"]["name"] == server_id), None)
    if server is None:
        return None
    public = next(
        (
            str(_spec(fip).get("floating_ip_address"))
            for fip in floating_ips
            if _spec(fip).get("port_id") == port["metadata"]["name"]
            and _spec(fip).get("fixed_ip_address") == source
        ),
        None,
    )
    macs = {str(p["metadata"]["name"]): str(_spec(p).get("mac_address") or "") for p in ports}
    return describe(
        server,
        local_ipv4=source,
        public_ipv4=public,
        keys=public_keys(server, keypairs),
        devices=tagged_devices(server, macs),
        nics=server_nics(server, ports, subnets or {}, network_objects or {}),
    )


def describe(
    server: Obj,
    *,
    local_ipv4: str,
    public_ipv4: str | None = None,
    keys: Mapping[str, str] | None = None,
    devices: tuple[Obj, ...] = (),
    nics: tuple[Obj, ...] = (),
) -> InstanceMetadata:
    """What a Server object tells its instance about itself, with what it has from elsewhere."""
    spec = _spec(server)
    return InstanceMetadata(
        uuid=str(server["metadata"]["name"]),
        name=str(spec.get("name") or ""),
        hostname=hostname_of(server),
        project_id=str(spec.get("project_id") or ""),
        availability_zone=str(spec.get("availability_zone") or "nova"),
        local_ipv4=local_ipv4,
        public_ipv4=public_ipv4,
        public_keys=dict(keys or {}),
        user_data=decode_user_data(spec.get("user_data")),
        meta={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        launch_index=int(spec.get("launch_index") or 0),
        image_id=str(spec.get("image_ref") or ""),
        devices=devices,
        nics=nics,
        files=personality_files(spec.get("personality")),
    )


def personality_files(listed: Any) -> tuple[tuple[str, bytes], ...]:
    """The server's personality files (`[{"path", "contents"}]`, base64) as (path, bytes)."""
    files = []
    for item in listed or []:
        try:
            files.append((str(item["path"]), base64.b64decode(str(item.get("contents", "")))))
        except (KeyError, TypeError, binascii.Error, ValueError):
            continue
    return tuple(files)


def content_path(index: int) -> str:
    """Where a personality file's content is, under `/openstack` (Nova's numbering)."""
    return f"/content/{index:04d}"


def meta_data_json(instance: InstanceMetadata) -> Obj:
    """OpenStack's `meta_data.json`."""
    keys = [
        {"name": name, "type": "ssh", "data": key} for name, key in instance.public_keys.items()
    ]
    return {
        "uuid": instance.uuid,
        "name": instance.name,
        "hostname": instance.hostname,
        "project_id": instance.project_id,
        "availability_zone": instance.availability_zone,
        "launch_index": instance.launch_index,
        "public_keys": dict(instance.public_keys),
        "keys": keys,
        "meta": dict(instance.meta),
        "devices": list(instance.devices),
        **(
            {
                "files": [
                    {"path": path, "content_path": content_path(i)}
                    for i, (path, _) in enumerate(instance.files)
                ]
            }
            if instance.files
            else {}
        ),
    }


def ec2_meta_data(instance: InstanceMetadata, path: str) -> str | None:
    """An EC2 `meta-data/…` answer (a listing for a directory), None when there is none."""
    values = _ec2_values(instance)
    names = list(instance.public_keys)
    keys = {f"public-keys/{i}/openssh-key": instance.public_keys[n] for i, n in enumerate(names)}
    path = path.strip("/")
    if path == "":
        return "\n".join([*EC2_KEYS, *(["public-keys/"] if names else [])])
    if path == "public-keys":
        return "\n".join(f"{i}={name}" for i, name in enumerate(names)) if names else None
    if path.startswith("public-keys/") and path.count("/") == 1 and path + "/openssh-key" in keys:
        return "openssh-key"
    if path in keys:
        return keys[path]
    return values.get(path)


def ec2_meta_data_json(instance: InstanceMetadata) -> Obj:
    """EC2's meta-data tree as one document, as a config drive's `meta-data.json` has it."""
    keys = {str(i): {"openssh-key": key} for i, key in enumerate(instance.public_keys.values())}
    placement = {"availability-zone": instance.availability_zone}
    return {**_ec2_values(instance), "public-keys": keys, "placement": placement}


def _ec2_values(instance: InstanceMetadata) -> dict[str, str]:
    """EC2's plain meta-data values (`EC2_KEYS`) of the instance."""
    return {
        "ami-id": instance.image_id,
        "hostname": instance.hostname,
        "local-hostname": instance.hostname,
        "instance-id": instance.uuid,
        "local-ipv4": instance.local_ipv4,
        "public-ipv4": instance.public_ipv4 or "",
    }


def drive_files(instance: InstanceMetadata) -> dict[str, bytes]:
    """A config drive's files by path, in Nova's layout: every OpenStack version's
    documents, EC2's meta-data for the versions Nova writes, and the user data."""
    documents = {
        "meta_data.json": orjson.dumps(meta_data_json(instance)),
        "vendor_data.json": b"{}",
        "vendor_data2.json": b"{}",
        "network_data.json": orjson.dumps(network_data_json(instance.nics)),
    }
    if instance.user_data is not None:
        documents["user_data"] = instance.user_data
    files = {
        f"openstack/{version}/{name}": body
        for version in OPENSTACK_VERSIONS
        for name, body in documents.items()
    }
    for index, (_, body) in enumerate(instance.files):
        files[f"openstack{content_path(index)}"] = body
    for version in DRIVE_EC2_VERSIONS:
        files[f"ec2/{version}/meta-data.json"] = orjson.dumps(ec2_meta_data_json(instance))
        if instance.user_data is not None:
            files[f"ec2/{version}/user-data"] = instance.user_data
    return files


# --- serving ---------------------------------------------------------------------------------


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


def _not_found() -> web.Response:
    return web.Response(status=404, text="404 Not Found", content_type="text/plain")


def answer(instance: InstanceMetadata, path: str) -> web.Response:
    """The response to `path` for `instance`."""
    parts = [part for part in path.split("/") if part]
    if parts in ([], ["openstack"]):
        listing = OPENSTACK_VERSIONS if parts else (*EC2_VERSIONS[:-1], "openstack", "latest")
        return _text("\n".join(listing))
    if parts[0] == "openstack" and len(parts) > 1 and parts[1] in OPENSTACK_VERSIONS:
        return _openstack(instance, parts[2:])
    if parts[:2] == ["openstack", "content"] and len(parts) == 3:
        found = [body for i, (_, body) in enumerate(instance.files) if parts[2] == f"{i:04d}"]
        if found:
            return web.Response(body=found[0], content_type="application/octet-stream")
    if parts[0] in EC2_VERSIONS or parts[0][:2].isdigit():
        return _ec2(instance, parts[1:], path.endswith("/"))
    return _not_found()


def _openstack(instance: InstanceMetadata, rest: list[str]) -> web.Response:
    if not rest:
        files = ["meta_data.json", *(["user_data"] if instance.user_data else [])]
        return _text("\n".join([*files, "vendor_data.json", "network_data.json"]))
    if rest == ["meta_data.json"]:
        return web.json_response(meta_data_json(instance))
    if rest == ["user_data"] and instance.user_data is not None:
        return web.Response(body=instance.user_data, content_type="application/octet-stream")
    if rest == ["network_data.json"]:
        return web.json_response(network_data_json(instance.nics))
    if rest in (["vendor_data.json"], ["vendor_data2.json"]):
        return web.json_response({})
    return _not_found()


def _ec2(instance: InstanceMetadata, rest: list[str], directory: bool) -> web.Response:
    if not rest:
        return _text("meta-data/\n" + ("user-data" if instance.user_data else ""))
    if rest == ["user-data"]:
        if instance.user_data is None:
            return _not_found()
        return web.Response(body=instance.user_data, content_type="application/octet-stream")
    if rest[0] == "meta-data":
        found = ec2_meta_data(instance, "/".join(rest[1:]) + ("/" if directory else ""))
        return _text(found) if found is not None else _not_found()
    return _not_found()


def make_app(router_id: str, lookup: Lookup) -> web.Application:
    """The metadata app of one router: instances are looked up behind that router."""

    async def serve(request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        try:
            instance = lookup(router_id, source)
        except Exception:
            log.exception("metadata: lookup of %s behind router %s failed", source, router_id)
            return web.Response(status=500, text="500 Internal Server Error")
        if instance is None:
            return _not_found()
        return answer(instance, request.path)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", serve)
    return app


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def listen_in_netns(netns_path: str, port: int = METADATA_PORT) -> socket.socket:
    """A listening TCP socket on 0.0.0.0:`port` inside the network namespace at `netns_path`.

    Only the calling thread can enter a namespace, so a thread of its own does it and ends;
    the socket stays in that namespace and is served from the event loop."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def open_socket() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
            sock.setblocking(False)
            made.append(sock)
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    thread = threading.Thread(target=open_socket, name=f"netns {netns_path}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class MetadataProxies:
    """One aiohttp site per router namespace, all served by this process's event loop."""

    def __init__(self, lookup: Lookup, port: int = METADATA_PORT) -> None:
        self.lookup, self.port = lookup, port
        self.runners: dict[str, web.AppRunner] = {}

    def running(self) -> set[str]:
        return set(self.runners)

    async def start(self, router_id: str, netns_path: str) -> None:
        """Serve metadata inside the router's namespace (nothing when already served)."""
        if router_id in self.runners:
            return
        sock = listen_in_netns(netns_path, self.port)
        runner = web.AppRunner(make_app(router_id, self.lookup), access_log=None)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.runners[router_id] = runner

    async def stop(self, router_id: str) -> None:
        runner = self.runners.pop(router_id, None)
        if runner is not None:
            await runner.cleanup()

    async def stop_all(self) -> None:
        for router_id in list(self.runners):
            await self.stop(router_id)
