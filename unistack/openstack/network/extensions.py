"""`/v2.0/extensions`: exactly the API extensions this facade implements, as Neutron lists
them (Tempest and neutronclient decide what to test and send from this list)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.openstack.web import OpenStackError, json_response

UPDATED = "2024-01-01T00:00:00-00:00"
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("agent", "agent", "Agent management (an empty list: the data plane is agentless here)."),
    ("allowed-address-pairs", "Allowed Address Pairs", "Additional addresses a port may use."),
    ("availability_zone", "Availability Zone", "The availability zone resource."),
    ("binding", "Port Binding", "Port binding attributes."),
    ("dvr", "Distributed Virtual Router", "The distributed attribute of routers (admin)."),
    ("external-net", "Neutron external network", "Networks marked router:external."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "enable_snat on the gateway."),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra DHCP options on ports."),
    ("extraroute", "Neutron Extra Route", "Extra routes on routers."),
    ("ip-substring-filtering", "IP address substring filtering", "ip_address_substr filters."),
    ("network_availability_zone", "Network Availability Zone", "AZ hints on networks."),
    ("network-ip-availability", "Network IP Availability", "Used and total addresses."),
    ("metering", "Neutron Metering", "Metering labels and rules."),
    ("net-mtu", "Network MTU", "The MTU of a network."),
    ("net-mtu-writable", "Network MTU (writable)", "A writable MTU."),
    ("pagination", "Pagination support", "limit and marker on lists."),
    ("port-security", "Port Security", "port_security_enabled on networks and ports."),
    ("project-id", "project_id field enabled", "project_id beside tenant_id."),
    ("provider", "Provider Network", "provider:* attributes of networks."),
    ("quotas", "Quota management support", "Per-project quotas."),
    ("quota_details", "Quota details management support", "Used and reserved quotas."),
    ("router", "Neutron L3 Router", "Routers and floating IPs."),
    ("security-group", "security-group", "Security groups and rules."),
    ("service-type", "Neutron Service Type Management", "Service providers (none here)."),
    ("sorting", "Sorting support", "sort_key and sort_dir on lists."),
    ("standard-attr-description", "standard-attr-description", "description on resources."),
    ("standard-attr-revisions", "Resource revision numbers", "revision_number on resources."),
    ("standard-attr-tag", "Tag support for resources with standard attribute", "Tags."),
    ("subnet_allocation", "Subnet Allocation", "Subnet pools (their prefixes are recorded)."),
    ("tag", "Tag support", "Tags on networks."),
    ("standard-attr-timestamp", "Resource timestamps", "created_at and updated_at."),
    ("stateful-security-group", "Stateful security group", "The stateful attribute."),
)


def entry(alias: str, name: str, description: str) -> dict[str, object]:
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "updated": UPDATED,
        "links": [],
    }


async def list_extensions(request: Request) -> Response:
    return json_response({"extensions": [entry(*e) for e in EXTENSIONS]})


async def show_extension(request: Request) -> Response:
    alias = request.path_params["alias"]
    for extension in EXTENSIONS:
        if extension[0] == alias:
            return json_response({"extension": entry(*extension)})
    raise OpenStackError(
        404, f"Extension with alias {alias} does not exist", error_type="ExtensionNotFound"
    )


def routes() -> list[Route]:
    return [
        Route("/v2.0/extensions", list_extensions, methods=["GET"]),
        Route("/v2.0/extensions/{alias}", show_extension, methods=["GET"]),
    ]
