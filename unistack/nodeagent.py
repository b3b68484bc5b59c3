"""Where a Node's agent listens, as Kubernetes says it: the Node's `InternalIP` address and
`status.daemonEndpoints.kubeletEndpoint.Port`. The API server's node proxy relays there
(`unistack.apiserver.nodeproxy`) and one host's agent streams a migrating disk straight to
another's (`unistack.iaas.compute.agentdriver`), so both read it here.
"""

from __future__ import annotations

from typing import Any


def agent_url(node: dict[str, Any] | None) -> str | None:
    """`http://<InternalIP>:<port>` of a Node's agent (an IPv6 address in brackets); None when
    the Node says nowhere."""
    status = (node or {}).get("status") or {}
    addresses = status.get("addresses") or []
    address = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not address or not port:
        return None
    host = f"[{address}]" if ":" in str(address) else address
    return f"http://{host}:{port}"
