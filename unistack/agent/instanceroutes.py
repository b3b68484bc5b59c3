"""The agent's compute routes: the HTTP face of `unistack.agent.instances.InstanceService`,
served by `unistack.agent.server` and reached through the API server's node proxy
(`/api/v1/nodes/{host}/proxy/instances/...`). Each route reads and checks its request (400
with what is wrong), asks the service, and answers with the status that says why it could
not: 404 no such instance here, 501 never for this kind of instance, 409 not now.

- `PUT /instances/{id}` with an `InstanceRequest`: prepare and boot → `{"power_state": 1}`;
- `POST /instances/{id}/action` with `{"action": "stop" | "start" | "reboot" | "pause" |
  "unpause" | "suspend" | "resume", "hard": bool}` → `{"power_state": n}` (when the host
  comes back, a paused guest, or a suspended container, is booted again and held so; a
  suspended VM keeps its saved state, and its NICs and volumes are plugged again when it
  resumes); `{"action": "rescue", "image": {"image_id", "image_kind", "kernel_id",
  "ramdisk_id", "kernel_args", "device", "bus"}}` boots the rescue image with the server's
  own root as its second disk (`InstanceDriver.rescue`, also when the host comes back; a
  stable device rescue with `device` or `bus`), `{"action": "unrescue"}` the server's own
  again;
- `DELETE /instances/{id}`: the instance and its NICs go;
- `GET /instances/{id}` → `{"power_state": n}`, `GET /instances/{id}/console?lines=N` →
  `{"output": "..."}`, `GET /instances` → every instance here with its power state;
- `POST /instances/{id}/volumes` `{"volume_id", "device": "/dev/vdb", "connection": null |
  {"host", "port", "export"}}`: a volume of this host's pool, or of another host's that
  serves it over NBD, into the guest (running or not), `DELETE /instances/{id}/volumes/{volume
  id}`: out again (`unistack.agent.instancevolumes`: a loop device for a container, the file
  for a VM; a volume another host keeps that comes without a connection is a 409);
  `POST /instances/{id}/volumes/{volume id}/extend`: the guest shown the volume's new size
  after the pool grew it (Cinder's extend of an in-use volume, Nova's `volume-extended`);
- `POST /instances/{id}/interfaces` with a NIC as the request's `nics` carry it → `{"port_id",
  "device"}`: the port into the guest, running or not (a container's veth `ethN` in its
  namespace, configured there; a VM's tap, hot-plugged as virtio-net), `DELETE
  /instances/{id}/interfaces/{port id}`: out again (Nova's interface attach and detach);
- `POST /instances/{id}/password` `{"password"}`: the guest's root password (409 when it
  cannot take it now, 501 when its kind never can);
- `POST /instances/{id}/migrate` `{"target": "http://<agent>"}`: a cold migration's first
  half — the instance stopped, its disk streamed to the other host's agent
  (`unistack.agent.diskmove`), its NICs unplugged here; the instance and its request stay
  here, stopped, until the migration is confirmed (`DELETE`) or reverted (`PUT` boots it
  again). `PUT /instances/{id}/disk?driver=<name>` is the other host's half: the disk
  unpacked where that driver keeps the instance; then `PUT /instances/{id}` boots it there
  (with `"power_on": false` for a server that was stopped: recorded, booted by `start`).
- a live migration (a VM; a system container cannot be checkpointed here), Nova's
  pre_live_migration / live_migration / post_live_migration_at_destination:
  `GET /instances/{id}/slots` on the source → `{"slots": {device id: PCI slot}}`;
  `PUT /instances/{id}/incoming` on the destination with the `InstanceRequest` plus
  `"slots"` and `"listen"` (its address on the hosts' network) → where its QEMU waits
  (`{"host", "nbd_port", "migration_port", "exports"}`); `POST /instances/{id}/live-migrate`
  on the source with that answer → 202: the disks and memory are copied in the background,
  the guest left paused there; `GET /instances/{id}/live-migrate` on the source says how it
  goes, answering at its end or after `?wait=S` seconds (`{"state": "running", "progress":
  {memory_* and disk_* bytes}}`, then `"completed"` with the `"console"` it printed there,
  or `"failed"` with the `"error"`);
  `POST /instances/{id}/incoming/finish` `{"console", "paused"}` on the destination → the
  guest resumed there (kept paused when it was paused before). The source's paused copy
  goes by `DELETE`. Meanwhile `POST /instances/{id}/live-migrate/abort` or
  `/force-complete` steer it (409 when none is under way).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from unistack.agent import diskmove, jsonhttp
from unistack.agent.instancerequests import (
    RequestError,
    nic_request,
    parse_request,
    rescue_image,
    volume_request,
)
from unistack.agent.instances import HOLDS, InstanceService
from unistack.agent.instancevolumes import device_target
from unistack.dataplane.instances import Incoming, InstanceError, NotSupported, PowerState

Obj = dict[str, Any]
ACTIONS = ("stop", "start", "reboot", *HOLDS, "rescue", "unrescue")
STEERING = {"abort": "abort", "force-complete": "force_complete"}
MAX_STATE_WAIT_S = 30.0  # a live migration's state is waited for at most this long


def add_routes(app: web.Application, service: InstanceService) -> None:
    """Serve `service`'s instances on `app`."""
    InstanceRoutes(service).add_routes(app)


class InstanceRoutes:
    """One handler per route, each asking `service`."""

    def __init__(self, service: InstanceService) -> None:
        self.service = service

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/instances", self.http_list)
        app.router.add_put("/instances/{id}", self.http_spawn)
        app.router.add_get("/instances/{id}", self.http_state)
        app.router.add_delete("/instances/{id}", self.http_destroy)
        app.router.add_post("/instances/{id}/action", self.http_action)
        app.router.add_get("/instances/{id}/console", self.http_console)
        app.router.add_post("/instances/{id}/volumes", self.http_attach_volume)
        app.router.add_delete("/instances/{id}/volumes/{volume_id}", self.http_detach_volume)
        app.router.add_post("/instances/{id}/volumes/{volume_id}/extend", self.http_extend_volume)
        app.router.add_post("/instances/{id}/interfaces", self.http_attach_interface)
        app.router.add_delete("/instances/{id}/interfaces/{port_id}", self.http_detach_interface)
        app.router.add_post("/instances/{id}/password", self.http_set_password)
        app.router.add_post("/instances/{id}/migrate", self.http_migrate)
        app.router.add_put("/instances/{id}/disk", self.http_receive_disk)
        app.router.add_get("/instances/{id}/slots", self.http_slots)
        app.router.add_put("/instances/{id}/incoming", self.http_receive_live)
        app.router.add_post("/instances/{id}/incoming/finish", self.http_finish_live)
        app.router.add_post("/instances/{id}/live-migrate", self.http_send_live)
        app.router.add_get("/instances/{id}/live-migrate", self.http_live_state)
        app.router.add_post("/instances/{id}/live-migrate/{wish}", self.http_steer_live)

    async def http_list(self, request: web.Request) -> web.Response:
        found = []
        for name, driver in self.service.drivers.items():
            for server_id in await driver.list():
                state = await driver.state(server_id)
                found.append({"id": server_id, "driver": name, "power_state": int(state)})
        return _json(200, {"instances": found})

    async def http_spawn(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            wanted = parse_request(server_id, body)
            power_on = body.get("power_on", True) is not False
            return {"power_state": int(await self.service.spawn(wanted, power_on=power_on))}

        return await _answer(server_id, work())

    async def http_state(self, request: web.Request) -> web.Response:
        state = await self.service.state(request.match_info["id"])
        if state == PowerState.NOSTATE and self.service.recorded(request.match_info["id"]) is None:
            return _error(404, f"no instance {request.match_info['id']} on this host")
        return _json(200, {"power_state": int(state)})

    async def http_destroy(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await self.service.destroy(server_id)
            return {}

        return await _answer(server_id, work())

    async def http_action(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            action = body.get("action") if isinstance(body, dict) else None
            if action not in ACTIONS:
                raise RequestError(f"action must be one of {', '.join(ACTIONS)}")
            if action == "rescue":
                state = await self.service.rescue(server_id, rescue_image(body.get("image")))
            elif action == "unrescue":
                state = await self.service.unrescue(server_id)
            else:
                state = await self.service.act(server_id, str(action), bool(body.get("hard")))
            return {"power_state": int(state)}

        return await _answer(server_id, work())

    async def http_console(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            lines = request.query.get("lines")
            if lines and not lines.lstrip("-").isdigit():
                raise RequestError("lines must be an integer")
            return {"output": await self.service.console(server_id, int(lines) if lines else None)}

        return await _answer(server_id, work())

    async def http_attach_volume(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            volume = volume_request(await _body(request))
            await self.service.attach_volume(server_id, volume)
            return {"volume_id": volume.volume_id, "device": f"/dev/{device_target(volume.device)}"}

        return await _answer(server_id, work())

    async def http_detach_volume(self, request: web.Request) -> web.Response:
        return await self._on_volume(self.service.detach_volume, request)

    async def http_extend_volume(self, request: web.Request) -> web.Response:
        return await self._on_volume(self.service.extend_volume, request)

    async def _on_volume(
        self, act: Callable[[str, str], Awaitable[None]], request: web.Request
    ) -> web.Response:
        """One server's volume acted on (`{id}`, `{volume_id}`)."""
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await act(server_id, request.match_info["volume_id"])
            return {}

        return await _answer(server_id, work())

    async def http_attach_interface(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            nic = nic_request(await _body(request))
            return {
                "port_id": nic.port_id,
                "device": await self.service.attach_interface(server_id, nic),
            }

        return await _answer(server_id, work())

    async def http_detach_interface(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            await self.service.detach_interface(server_id, request.match_info["port_id"])
            return {}

        return await _answer(server_id, work())

    async def http_set_password(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            password = body.get("password") if isinstance(body, dict) else None
            if not isinstance(password, str):
                raise RequestError("password must be a string")
            await self.service.set_password(server_id, password)
            return {}

        return await _answer(server_id, work())

    async def http_migrate(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            target = body.get("target") if isinstance(body, dict) else None
            if not isinstance(target, str) or not target.startswith(("http://", "https://")):
                raise RequestError("target must be the other agent's http(s) URL")
            return {"bytes": await self.service.migrate_out(server_id, target)}

        return await _answer(server_id, work())

    async def http_receive_disk(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            chunks = request.content.iter_chunked(diskmove.CHUNK)
            await self.service.migrate_in(server_id, request.query.get("driver", ""), chunks)
            return {}

        return await _answer(server_id, work())

    async def http_slots(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            return {"slots": await self.service.live_slots(server_id)}

        return await _answer(server_id, work())

    async def http_receive_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            wanted = parse_request(server_id, body)
            slots, listen = body.get("slots") or {}, body.get("listen")
            if not isinstance(slots, dict) or not all(
                isinstance(slot, int) for slot in slots.values()
            ):
                raise RequestError("slots must map device ids to PCI slot numbers")
            if not isinstance(listen, str) or not listen:
                raise RequestError("listen must be this host's address for the migration")
            incoming = await self.service.receive_live(wanted, slots, listen)
            return {
                "host": incoming.host,
                "nbd_port": incoming.nbd_port,
                "migration_port": incoming.migration_port,
                "exports": list(incoming.exports),
            }

        return await _answer(server_id, work())

    async def http_send_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            self.service.send_live(server_id, incoming_of(await _body(request)))
            return {"state": "running"}

        return await _answer(server_id, work(), status=202)

    async def http_live_state(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            try:
                wait = float(request.query.get("wait", "0"))
            except ValueError:
                raise RequestError("wait must be a number of seconds") from None
            if not 0 <= wait <= MAX_STATE_WAIT_S:
                raise RequestError(f"wait must be 0 to {MAX_STATE_WAIT_S:.0f} seconds")
            return await self.service.live_state(server_id, wait)

        return await _answer(server_id, work())

    async def http_steer_live(self, request: web.Request) -> web.Response:
        server_id, wish = request.match_info["id"], request.match_info["wish"]

        async def work() -> Obj:
            if wish not in STEERING:
                raise RequestError(f"a live migration can be asked to {' or '.join(STEERING)}")
            self.service.steer_live(server_id, STEERING[wish])
            return {}

        return await _answer(server_id, work())

    async def http_finish_live(self, request: web.Request) -> web.Response:
        server_id = request.match_info["id"]

        async def work() -> Obj:
            body = await _body(request)
            console = body.get("console", "") if isinstance(body, dict) else None
            if not isinstance(console, str):
                raise RequestError("console must be a string")
            paused = body.get("paused", False)
            if not isinstance(paused, bool):
                raise RequestError("paused must be true or false")
            return {"power_state": int(await self.service.finish_live(server_id, console, paused))}

        return await _answer(server_id, work())


def incoming_of(body: Any) -> Incoming:
    """Where a destination waits (`http_receive_live`'s answer), or RequestError."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    host, exports = body.get("host"), body.get("exports") or []
    if not isinstance(host, str) or not host:
        raise RequestError("host must be the destination's address")
    if not isinstance(exports, list) or not all(isinstance(name, str) for name in exports):
        raise RequestError("exports must be a list of names")
    return Incoming(host, _port(body, "nbd_port"), _port(body, "migration_port"), tuple(exports))


def _port(body: Obj, key: str) -> int:
    port = body.get(key)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RequestError(f"{key} must be a TCP port")
    return port


async def _answer(server_id: str, work: Awaitable[Obj], status: int = 200) -> web.Response:
    """A route's answer: `work`'s document (`status`), or its refusal as the status that says
    why — 400 a malformed request, 404 no such instance here, 501 never for this kind of
    instance, 409 not now."""
    try:
        return _json(status, await work)
    except RequestError as error:
        return _error(400, str(error))
    except LookupError:
        return _error(404, f"no instance {server_id} on this host")
    except NotSupported as error:
        return _error(501, str(error))
    except InstanceError as error:
        return _error(409, str(error))


async def _body(request: web.Request) -> Any:
    try:
        return await jsonhttp.read_json(request)
    except jsonhttp.BadJson as error:
        raise RequestError(str(error)) from None


_json, _error = jsonhttp.json_response, jsonhttp.error_response
