"""Where a Node's agent listens, as Kubernetes says it: the Node's `InternalIP` address and
`status.daemonEndpoints.kubeletEndpoint.Port`. The API server's node proxy relays there
(`unistack.apiserver.nodeproxy`) and one host's agent streams a migrating disk straight to
another's (`unistack.iaas.compute.agentdriver`), so both read it here.
"""

from __future__ import annotations

from typing import Any


def agent_address(node: dict[str, Any] | None) -> str | None:
    """A Node's InternalIP: where the other hosts reach it."""
    addresses = ((node or {}).get("status") or {}).get("addresses") or []
    found = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    return str(found) if found else None


def agent_url(node: dict[str, Any] | None) -> str | None:
    """`http://<InternalIP>:<port>` of a Node's agent (an IPv6 address in brackets); None when
    the Node says nowhere."""
    address = agent_address(node)
    status = (node or {}).get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not address or not port:
        return None
    host = f"[{address}]" if ":" in str(address) else address
    return f"http://{host}:{port}"
