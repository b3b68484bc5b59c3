"""The identity service's ASGI app: version discovery and the v3 API.

`GET /` is Keystone's "300 Multiple Choices" list of versions and `GET /v3` its version
document; keystoneauth reads either to find the API. The rest are `tokens`, `resources`
(the plain collections), `project_domains` (domains seen as projects, routed before the plain
project handlers it falls back to), `domain_config`, `grants`, `users` and `trusts`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from unistack.openstack.identity.domain_config import DomainConfigs
from unistack.openstack.identity.grants import Grants
from unistack.openstack.identity.project_domains import ProjectDomains
from unistack.openstack.identity.resources import Collections
from unistack.openstack.identity.service import IdentityService, IdentitySettings
from unistack.openstack.identity.tokens import TokenApi
from unistack.openstack.identity.trusts import Trusts
from unistack.openstack.identity.users import Users
from unistack.openstack.platform import Platform
from unistack.openstack.web import base_url, json_response, keystone_error, service_app

VERSION_ID = "v3.14"
MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"


def version_entry(request: Request) -> dict[str, object]:
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url(request)}v3/"}],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    }


async def versions(request: Request) -> Response:
    return json_response({"versions": {"values": [version_entry(request)]}}, 300)


async def version(request: Request) -> Response:
    return json_response({"version": version_entry(request)})


def create_app(service: IdentityService) -> ASGIApp:
    collections = Collections(service)
    routes = [
        Route("/", versions, methods=["GET"]),
        Route("/v3", version, methods=["GET"]),
        Route("/v3/", version, methods=["GET"]),
        *TokenApi(service).routes(),
        *Grants(service).routes(),
        *Users(service).routes(),
        *Trusts(service).routes(),
        *DomainConfigs(service).routes(),
        *ProjectDomains(service, collections).routes(),
        *collections.routes(),
    ]
    return service_app(routes, keystone_error)


async def build(platform: Platform) -> ASGIApp:
    """The service on the gateway's platform: its directory, token codec and settings."""
    settings = platform.settings
    service = IdentityService(
        platform.client,
        platform.directory,
        platform.codec,
        IdentitySettings(token_ttl=settings.token_ttl, hash_rounds=settings.hash_rounds),
    )
    return create_app(service)
