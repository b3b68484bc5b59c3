"""The metadata service at 169.254.169.254, served inside every router namespace (Neutron's
metadata proxy and Nova's metadata API in one).

A router's nftables table (`unistack.dataplane.routers`) redirects `169.254.169.254:80` arriving
on its `qr-*` interfaces to `METADATA_PORT` in the router's namespace. There, the agent itself
listens: `listen_in_netns` opens the socket from a short-lived thread that `setns()`s into the
namespace (a socket belongs to the namespace it was created in, whichever thread later uses it),
and the agent's event loop serves it with aiohttp. Chosen over a proxy process per router
(`ip netns exec … python`): no process to start, supervise and clean up per router, no ~300 ms
interpreter start, and the answers come straight from the agent's informer caches.

Who asks is the request's source address: the router joins subnets that never overlap, so the
source IP and the router's networks find one Port and its Server
(`instancemetadata.find_instance`, which also makes the documents). Answers follow Nova's
paths:
`/openstack` (versions), `/openstack/<version>/meta_data.json`, `…/user_data`,
`…/vendor_data.json`, `…/network_data.json` (the instance's links, addresses, routes and DNS
servers, as Nova writes it); EC2's `/<version>/meta-data/…` (instance-id is the server's
uuid, as the servers have no integer id to make Nova's `i-%08x` from) and
`/<version>/user-data`, and personality files at `/openstack/content/NNNN`. An address that
is no instance here gets 404. `l3.L3Agent` starts and stops one site per router.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from unistack.agent.instancemetadata import (
    EC2_VERSIONS,
    OPENSTACK_VERSIONS,
    InstanceMetadata,
    ec2_meta_data,
    meta_data_json,
    network_data_json,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]

METADATA_PORT = 9697
CLONE_NEWNET = 0x40000000
Lookup = Callable[[str, str], InstanceMetadata | None]  # (router id, source address)


# --- serving ---------------------------------------------------------------------------------


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


def _not_found() -> web.Response:
    return web.Response(status=404, text="404 Not Found", content_type="text/plain")


def answer(instance: InstanceMetadata, path: str) -> web.Response:
    """The response to `path` for `instance`."""
    parts = [part for part in path.split("/") if part]
    if parts in ([], ["openstack"]):
        listing = OPENSTACK_VERSIONS if parts else (*EC2_VERSIONS[:-1], "openstack", "latest")
        return _text("\n".join(listing))
    if parts[0] == "openstack" and len(parts) > 1 and parts[1] in OPENSTACK_VERSIONS:
        return _openstack(instance, parts[2:])
    if parts[:2] == ["openstack", "content"] and len(parts) == 3:
        found = [body for i, (_, body) in enumerate(instance.files) if parts[2] == f"{i:04d}"]
        if found:
            return web.Response(body=found[0], content_type="application/octet-stream")
    if parts[0] in EC2_VERSIONS or parts[0][:2].isdigit():
        return _ec2(instance, parts[1:], path.endswith("/"))
    return _not_found()


def _openstack(instance: InstanceMetadata, rest: list[str]) -> web.Response:
    if not rest:
        files = ["meta_data.json", *(["user_data"] if instance.user_data else [])]
        return _text("\n".join([*files, "vendor_data.json", "network_data.json"]))
    if rest == ["meta_data.json"]:
        return web.json_response(meta_data_json(instance))
    if rest == ["user_data"] and instance.user_data is not None:
        return web.Response(body=instance.user_data, content_type="application/octet-stream")
    if rest == ["network_data.json"]:
        return web.json_response(network_data_json(instance.nics))
    if rest in (["vendor_data.json"], ["vendor_data2.json"]):
        return web.json_response({})
    return _not_found()


def _ec2(instance: InstanceMetadata, rest: list[str], directory: bool) -> web.Response:
    if not rest:
        return _text("meta-data/\n" + ("user-data" if instance.user_data else ""))
    if rest == ["user-data"]:
        if instance.user_data is None:
            return _not_found()
        return web.Response(body=instance.user_data, content_type="application/octet-stream")
    if rest[0] == "meta-data":
        found = ec2_meta_data(instance, "/".join(rest[1:]) + ("/" if directory else ""))
        return _text(found) if found is not None else _not_found()
    return _not_found()


def make_app(router_id: str, lookup: Lookup) -> web.Application:
    """The metadata app of one router: instances are looked up behind that router."""

    async def serve(request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        try:
            instance = lookup(router_id, source)
        except Exception:
            log.exception("metadata: lookup of %s behind router %s failed", source, router_id)
            return web.Response(status=500, text="500 Internal Server Error")
        if instance is None:
            return _not_found()
        return answer(instance, request.path)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", serve)
    return app


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def listen_in_netns(netns_path: str, port: int = METADATA_PORT) -> socket.socket:
    """A listening TCP socket on 0.0.0.0:`port` inside the network namespace at `netns_path`.

    Only the calling thread can enter a namespace, so a thread of its own does it and ends;
    the socket stays in that namespace and is served from the event loop."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def open_socket() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
            sock.setblocking(False)
            made.append(sock)
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    thread = threading.Thread(target=open_socket, name=f"netns {netns_path}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class MetadataProxies:
    """One aiohttp site per router namespace, all served by this process's event loop."""

    def __init__(self, lookup: Lookup, port: int = METADATA_PORT) -> None:
        self.lookup, self.port = lookup, port
        self.runners: dict[str, web.AppRunner] = {}

    def running(self) -> set[str]:
        return set(self.runners)

    async def start(self, router_id: str, netns_path: str) -> None:
        """Serve metadata inside the router's namespace (nothing when already served)."""
        if router_id in self.runners:
            return
        sock = listen_in_netns(netns_path, self.port)
        runner = web.AppRunner(make_app(router_id, self.lookup), access_log=None)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.runners[router_id] = runner

    async def stop(self, router_id: str) -> None:
        runner = self.runners.pop(router_id, None)
        if runner is not None:
            await runner.cleanup()

    async def stop_all(self) -> None:
        for router_id in list(self.runners):
            await self.stop(router_id)
