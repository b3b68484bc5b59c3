"""A server's ports, through the Networking API as Nova's `network/neutron.py` does it.

`Networking` calls Neutron with the service token (`Caller`: the gateway's internal calls):
it resolves what the server asked for (`networks`: "none", "auto", a list of `{uuid}`,
`{port}`, `{fixed_ip}`, or nothing — every network the project may use), creates a port per
network (device_id = the server, device_owner `compute:nova`) or takes over a given one,
binds it to the host (`binding:host_id`), and reads the fixed addresses back in Nova's shape
(recorded on the server); `floating_ips` reads the floating IPs of servers' ports in one call
when they are shown (`openstack.compute.server_addresses`). On teardown it deletes the ports
it created and releases the ones it was given. When the cloud has no Networking service
(`/network` answers 404 with no Neutron body) only `networks: none` can be satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]
NETWORK = "/network/v2.0"
DEVICE_OWNER = "compute:nova"


class Caller(Protocol):
    """An OpenStack request from the gateway root (`/network/v2.0/ports`) with the service
    token: the status and the decoded JSON answer (raw bytes when it is not JSON). A dict
    body goes as JSON, a `bytes` body as it is."""

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]: ...


class PlugError(Exception):
    """The ports could not be made; the message goes in the server's fault."""


class NicError(Exception):
    """The guest could not take (or give back) an interface; the message says why."""


class GuestNics(Protocol):
    """Where an interface attached to a living server reaches its guest (Nova's virt driver
    `attach_interface`): `agentdriver.HostDrivers`, the host's agent."""

    async def attach_interface(self, server_id: str, host: str, port_id: str) -> None:
        """The bound port into the server's guest on `host` (NicError when it cannot)."""

    async def detach_interface(self, server_id: str, port_id: str) -> None:
        """The port out of the server's guest; nothing when it is not there."""


@dataclass
class Plugged:
    ports: list[str] = field(default_factory=list)  # every port of the server
    created: list[str] = field(default_factory=list)  # those Nova made (deleted with it)
    addresses: dict[str, list[Obj]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # port -> the device tag it was asked with


def _is_neutron(body: Any) -> bool:
    return isinstance(body, dict) and ("NeutronError" in body or "networks" in body)


def _group_name(group: Any) -> str:
    """A security group as a server names it: `{"name": ...}` or the bare name (or id)."""
    return str(group.get("name") if isinstance(group, dict) else group)


class Networking:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def plug(self, server: Obj, host: str) -> Plugged:
        spec = server.get("spec") or {}
        requested = spec.get("networks")
        if requested == "none":
            return Plugged()
        wanted = await self._requests(spec, requested)
        plugged = Plugged()
        try:
            for item in wanted:
                await self.plug_one(server, host, item, plugged)
        except PlugError:
            await self.unplug(plugged.ports, plugged.created)
            raise
        return plugged

    async def _requests(self, spec: Obj, requested: Any) -> list[Obj]:
        if isinstance(requested, list) and requested:
            await self._require_service()
            return list(requested)
        networks = await self._usable(str(spec.get("project_id") or ""))
        if requested == "auto" and not networks:
            raise PlugError("Unable to automatically allocate a network for project.")
        if len(networks) > 1:
            raise PlugError(
                "Multiple possible networks found, use a Network ID to be more specific."
            )
        return [{"uuid": network["id"]} for network in networks]

    async def _require_service(self) -> None:
        status, body = await self.caller.call("GET", f"{NETWORK}/networks", params={"limit": "1"})
        if status == 404 and not _is_neutron(body):
            raise PlugError("The Networking service is not available.")

    async def _usable(self, project_id: str) -> list[Obj]:
        status, body = await self.caller.call(
            "GET", f"{NETWORK}/networks", params={"project_id": project_id}
        )
        if status == 404 and not _is_neutron(body):
            return []
        if status != 200:
            raise PlugError(f"Listing networks failed: {status}")
        own = [n for n in body.get("networks", []) if not n.get("router:external")]
        status, body = await self.caller.call(
            "GET", f"{NETWORK}/networks", params={"shared": "true"}
        )
        shared = body.get("networks", []) if status == 200 else []
        seen = {n["id"] for n in own}
        return own + [n for n in shared if n["id"] not in seen]

    async def plug_one(self, server: Obj, host: str, item: Obj, plugged: Plugged) -> None:
        """One more port for the server (`{uuid}`, `{port}`, `{uuid, fixed_ip}`)."""
        server_id = server["metadata"]["name"]
        if item.get("port"):
            port = await self._get_port(str(item["port"]))
        else:
            port = await self._create_port(server, item)
            plugged.created.append(port["id"])
        plugged.ports.append(port["id"])
        if item.get("tag"):
            plugged.tags[port["id"]] = str(item["tag"])
        binding = {"port": {"device_id": server_id, "device_owner": DEVICE_OWNER}}
        binding["port"]["binding:host_id"] = host
        status, body = await self.caller.call("PUT", f"{NETWORK}/ports/{port['id']}", binding)
        if status != 200:
            raise PlugError(f"Binding port {port['id']} failed: {_message(body)}")
        await self._add_addresses(body["port"], plugged)

    async def _get_port(self, port_id: str) -> Obj:
        status, body = await self.caller.call("GET", f"{NETWORK}/ports/{port_id}")
        if status != 200:
            raise PlugError(f"Port {port_id} could not be found.")
        port: Obj = body["port"]
        return port

    async def _create_port(self, server: Obj, item: Obj) -> Obj:
        spec = server.get("spec") or {}
        port: Obj = {
            "network_id": item.get("uuid"),
            "device_id": server["metadata"]["name"],
            "device_owner": DEVICE_OWNER,
            "project_id": spec.get("project_id"),
        }
        if item.get("fixed_ip"):
            port["fixed_ips"] = [{"ip_address": item["fixed_ip"]}]
        groups = spec.get("security_groups") or []
        if [_group_name(group) for group in groups] == ["default"]:
            # as Nova's `_clean_security_groups`: Networking gives a port its project's default
            # group itself, and none on a network without port security, where naming it
            # would be refused
            groups = []
        group_ids = await self._group_ids(groups, str(port["project_id"] or "")) if groups else []
        if group_ids:
            port["security_groups"] = group_ids
        status, body = await self.caller.call("POST", f"{NETWORK}/ports", {"port": port})
        if status == 404 and not _is_neutron(body):
            raise PlugError("The Networking service is not available.")
        if status != 201:
            raise PlugError(
                f"Creating a port on network {item.get('uuid')} failed: {_message(body)}"
            )
        created: Obj = body["port"]
        return created

    async def _group_ids(self, groups: list[Any], project_id: str) -> list[str]:
        """The ids of the server's security groups, each named by name or id (as Nova's
        Neutron API resolves them) within its project."""
        ids = []
        for group in groups:
            wanted = _group_name(group)
            for key in ("name", "id"):
                query = {key: wanted, "project_id": project_id}
                status, body = await self.caller.call(
                    "GET", f"{NETWORK}/security-groups", params=query
                )
                found = body.get("security_groups") if status == 200 else None
                if found:
                    ids.append(str(found[0]["id"]))
                    break
            else:
                if wanted == "default":
                    continue  # not made yet: Networking gives a port its project's default
                raise PlugError(f"Security group {wanted} not found for project {project_id}.")
        return ids

    async def _add_addresses(self, port: Obj, plugged: Plugged) -> None:
        status, body = await self.caller.call("GET", f"{NETWORK}/networks/{port['network_id']}")
        name = body["network"].get("name") or port["network_id"] if status == 200 else "network"
        entries = plugged.addresses.setdefault(name, [])
        for fixed in port.get("fixed_ips") or []:
            address = str(fixed.get("ip_address") or "")
            entries.append(
                {
                    "version": 6 if ":" in address else 4,
                    "addr": address,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": port.get("mac_address") or "",
                }
            )

    async def addresses(self, port_ids: list[str]) -> dict[str, list[Obj]]:
        """The addresses of the server's ports now, in Nova's shape."""
        plugged = Plugged()
        for port_id in port_ids:
            status, body = await self.caller.call("GET", f"{NETWORK}/ports/{port_id}")
            if status == 200:
                await self._add_addresses(body["port"], plugged)
        return plugged.addresses

    async def floating_ips(self, port_ids: set[str], project_id: str | None = None) -> list[Obj]:
        """The floating IPs associated with any of `port_ids` now, in one call: by the port
        when there is one, else the associated ones (of `project_id`, when given) filtered
        here. Nothing when Networking does not answer: addresses then show the fixed IPs."""
        if not port_ids:
            return []
        if len(port_ids) == 1:
            params = {"port_id": next(iter(port_ids))}
        else:
            params = {"status": "ACTIVE"} | ({"project_id": project_id} if project_id else {})
        status, body = await self.caller.call("GET", f"{NETWORK}/floatingips", params=params)
        found = body.get("floatingips") if status == 200 and isinstance(body, dict) else None
        return [fip for fip in found or [] if fip.get("port_id") in port_ids]

    async def rebind(self, port_ids: list[str], host: str) -> None:
        """Bind the ports to another host (or to none, `""`, when the server is offloaded)."""
        for port_id in port_ids:
            change = {"port": {"binding:host_id": host}}
            await self.caller.call("PUT", f"{NETWORK}/ports/{port_id}", change)

    async def unplug(self, ports: list[str], created: list[str]) -> None:
        for port_id in ports:
            if port_id in created:
                await self.caller.call("DELETE", f"{NETWORK}/ports/{port_id}")
            else:
                release = {"port": {"device_id": "", "device_owner": "", "binding:host_id": ""}}
                await self.caller.call("PUT", f"{NETWORK}/ports/{port_id}", release)


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("NeutronError"), dict):
        return str(body["NeutronError"].get("message"))
    return str(body)[:200]
