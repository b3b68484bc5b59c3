"""One synchronous HTTPS request to the API server, authenticated as the kubeconfig's user.

The CLI (`up` waiting for readiness, `status`, `compact`) needs only a handful of requests, so
this uses the standard library (no proxies, the CA from the kubeconfig, the bearer token)
rather than the asyncio client that controllers use.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from unistack.cli.kubeconfig import ApiAccess


class ApiUnreachable(Exception):
    """No HTTP answer: connection refused, TLS failure, timeout."""


@dataclass(frozen=True)
class ApiReply:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace").strip()


def tls_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only the cluster CA."""
    return ssl.create_default_context(cadata=ca_pem.decode())


def request(access: ApiAccess, method: str, path: str, timeout: float = 5.0) -> ApiReply:
    """Send `method path` to the server in `access`; raise ApiUnreachable if nothing answers."""
    url = urlsplit(access.server)
    if url.scheme != "https" or not url.hostname:
        raise ApiUnreachable(f"server {access.server!r} is not an https:// URL")
    connection = http.client.HTTPSConnection(
        url.hostname, url.port or 443, timeout=timeout, context=tls_context(access.ca_pem)
    )
    headers = {"Authorization": f"Bearer {access.token}", "Accept": "application/json"}
    try:
        connection.request(method, url.path.rstrip("/") + path, headers=headers)
        response = connection.getresponse()
        return ApiReply(response.status, response.read())
    except (OSError, http.client.HTTPException) as error:
        raise ApiUnreachable(f"{access.server}: {error}") from error
    finally:
        connection.close()
