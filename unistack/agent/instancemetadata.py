"""What an instance is told about itself: the documents of Nova's metadata API and of its
config drive, pure functions of the Server and the objects around it.

`find_instance` finds the instance behind a source address on a router's networks (one Port
holds it; its `device_id` is the Server) and `describe` gathers what the Server says about
itself: its Keypair (by the server's `user_id` and `key_name`), the floating IP of its port,
its NICs (`nic_of`, `server_nics`: addresses with prefix, gateway, DNS, MTU), its tagged
devices and personality files. From that, `meta_data_json`, `network_data_json` (links,
networks with routes, DNS services, as Nova writes it), EC2's meta-data (`ec2_meta_data`,
instance-id is the server's uuid: the servers have no integer id to make Nova's `i-%08x`
from) and `drive_files` (a config drive's tree in Nova's layout: `openstack/<version>/…`,
`openstack/content/NNNN`, `ec2/<version>/meta-data.json`).

The metadata service (`unistack.agent.metadata`) answers from these documents; the compute
controller (`unistack.iaas.compute.agentdriver`) renders a config drive from them at boot,
which the host's agent writes (`unistack.dataplane.configdrive`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

Obj = dict[str, Any]

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
    (`status.ports`, then any other by creation, as `agentdriver.AgentDriver.nics` plugs
    them)."""
    server_id = server["metadata"]["name"]
    order = {
        port_id: i for i, port_id in enumerate((server.get("status") or {}).get("ports") or [])
    }
    mine = [p for p in ports if _spec(p).get("device_id") == server_id]
    mine.sort(
        key=lambda p: (
            order.get(p["metadata"]["name"], len(order)),
            str(_spec(p).get("created_at")),
        )
    )
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
