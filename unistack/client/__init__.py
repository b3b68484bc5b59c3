"""The asyncio client of the Kubernetes API, over HTTP or in-process.

Modules: `transport` (HTTP with aiohttp, or an ASGI app called in-process), `api` (`Client`:
the verbs, `WatchEvent`, the `ApiError` family), `resources` (`ResourceRef`, built-in kinds,
discovery), `kubeconfig` (a kubeconfig file into a transport). Everything above the API server
(controllers, facades, agents) talks to the API through this package only; it never imports the
server or the store.
"""

from unistack.client.api import (
    AlreadyExists,
    ApiError,
    Client,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    WatchEvent,
)
from unistack.client.resources import DiscoveredResource, ResourceRef
from unistack.client.transport import AsgiTransport, HttpTransport, Transport, TransportError

__all__ = [
    "AlreadyExists",
    "ApiError",
    "AsgiTransport",
    "Client",
    "Conflict",
    "DiscoveredResource",
    "Gone",
    "HttpTransport",
    "Invalid",
    "NotFound",
    "ResourceRef",
    "Transport",
    "TransportError",
    "WatchEvent",
]
