"""The network service's ASGI app (Neutron v2.0) and how the gateway builds it.

`GET /` is Neutron's version list and `GET /v2.0/` its resource list; the rest are the
resource families, one module each: `networks`, `subnets`, `ports`, `security_groups`,
`subnet_pools`, `metering`, `routers`, `floating_ips`, `quotas`, `tags`, `availability` and
`extensions`; agents and service providers are empty lists (the data plane is agentless).
`build` starts the records (informers over the network kinds), makes sure the public network
exists, and registers the records' stop with the platform's cleanups.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from unistack.iaas.network import bootstrap, kinds
from unistack.iaas.records import Records
from unistack.openstack.network import (
    availability,
    extensions,
    floating_ips,
    quotas,
    routers,
    tags,
)
from unistack.openstack.network.metering import Metering
from unistack.openstack.network.networks import Networks
from unistack.openstack.network.ports import Ports
from unistack.openstack.network.security_groups import SecurityGroups
from unistack.openstack.network.service import INDEXERS, NetworkService
from unistack.openstack.network.subnet_pools import SubnetPools
from unistack.openstack.network.subnets import Subnets
from unistack.openstack.platform import Platform
from unistack.openstack.web import base_url, json_response, neutron_error, service_app

COLLECTIONS = (
    ("network", "networks"),
    ("subnet", "subnets"),
    ("port", "ports"),
    ("router", "routers"),
    ("floatingip", "floatingips"),
    ("security_group", "security-groups"),
    ("security_group_rule", "security-group-rules"),
    ("quota", "quotas"),
)


async def versions(request: Request) -> Response:
    link = {"rel": "self", "href": f"{base_url(request)}v2.0/"}
    return json_response({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]})


async def resources(request: Request) -> Response:
    base = f"{base_url(request)}v2.0/"
    listed = [
        {
            "name": name,
            "collection": collection,
            "links": [{"rel": "self", "href": base + collection}],
        }
        for name, collection in COLLECTIONS
    ]
    return json_response({"resources": listed})


async def list_agents(request: Request) -> Response:
    return json_response({"agents": []})


async def list_service_providers(request: Request) -> Response:
    return json_response({"service_providers": []})


def create_app(service: NetworkService) -> ASGIApp:
    routes = [
        Route("/", versions, methods=["GET"]),
        Route("/v2.0", resources, methods=["GET"]),
        Route("/v2.0/", resources, methods=["GET"]),
        Route("/v2.0/agents", list_agents, methods=["GET"]),
        Route("/v2.0/service-providers", list_service_providers, methods=["GET"]),
        *extensions.routes(),
        *Networks(service).routes(),
        *Subnets(service).routes(),
        *SubnetPools(service).routes(),
        *Metering(service).routes(),
        *Ports(service).routes(),
        *SecurityGroups(service).routes(),
        *routers.Routers(service).routes(),
        *floating_ips.FloatingIps(service).routes(),
        *quotas.Quotas(service).routes(),
        *availability.routes(service),
        *tags.routes(service),
    ]
    return service_app(routes, neutron_error)


async def build(platform: Platform) -> ASGIApp:
    """The gateway's builder for `/network`."""
    records = Records(platform.client, kinds.ALL, INDEXERS, informers=platform.informers)
    await records.start()
    platform.cleanups.append(records.stop)
    admin_project = platform.admin_project_id
    await bootstrap.ensure_public_network(records, admin_project, platform.settings.public_cidr)
    return create_app(NetworkService(records, platform.validator, admin_project))
