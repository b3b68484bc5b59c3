"""The v2.1 extension list (`/extensions`), which Nova still answers for old clients: one
entry per API family this service serves, in Nova's shape."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.openstack.compute.service import ComputeService
from unistack.openstack.web import json_response, not_found

NAMESPACE = "http://docs.openstack.org/compute/ext/fake_xml"
UPDATED = "2014-12-03T00:00:00Z"
EXTENSIONS = (
    ("os-aggregates", "Aggregates", "Admin-only aggregate administration."),
    ("os-assisted-volume-snapshots", "AssistedVolumeSnapshots", "Assisted volume snapshots."),
    ("os-attach-interfaces", "AttachInterfaces", "Attach interface support."),
    ("os-availability-zone", "AvailabilityZone", "Availability zones of servers."),
    ("os-consoles", "Consoles", "Interactive Console support."),
    ("os-console-output", "ConsoleOutput", "Console log output support."),
    ("os-create-backup", "CreateBackup", "Create a backup of a server."),
    ("os-extended-availability-zone", "ExtendedAvailabilityZone", "Zone of a server."),
    ("os-extended-server-attributes", "ExtendedServerAttributes", "Host of a server."),
    ("os-extended-status", "ExtendedStatus", "Extended Status support."),
    ("os-extended-volumes", "ExtendedVolumes", "Extended Volumes support."),
    ("os-flavor-access", "FlavorAccess", "Flavor access support."),
    ("os-flavor-extra-specs", "FlavorExtraSpecs", "Flavors extra specs support."),
    ("os-flavor-manage", "FlavorManage", "Flavor create/delete API support."),
    ("os-floating-ips", "FloatingIps", "Floating IPs support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-hypervisors", "Hypervisors", "Admin-only hypervisor administration."),
    ("os-instance-actions", "InstanceActions", "Actions taken on a server."),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    ("os-lock-server", "LockServer", "Enable lock/unlock server actions."),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    ("os-security-groups", "SecurityGroups", "Security group support."),
    ("os-server-groups", "ServerGroups", "Server group support."),
    ("os-services", "Services", "Services support."),
    ("os-simple-tenant-usage", "SimpleTenantUsage", "Simple tenant usage extension."),
    ("os-volumes", "Volumes", "Volumes support."),
)  # fmt: skip


def extension_view(alias: str, name: str, description: str) -> dict[str, Any]:
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "namespace": NAMESPACE,
        "updated": UPDATED,
        "links": [],
    }


class Extensions:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/extensions", self.list_extensions, methods=["GET"]),
            Route("/v2.1/extensions/{alias}", self.show_extension, methods=["GET"]),
        ]

    async def list_extensions(self, request: Request) -> Response:
        self.service.authenticate(request)
        return json_response({"extensions": [extension_view(*e) for e in EXTENSIONS]})

    async def show_extension(self, request: Request) -> Response:
        self.service.authenticate(request)
        alias = request.path_params["alias"]
        for entry in EXTENSIONS:
            if entry[0] == alias:
                return json_response({"extension": extension_view(*entry)})
        raise not_found("Ext could not be found")
