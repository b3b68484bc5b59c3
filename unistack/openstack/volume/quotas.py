"""Quotas and limits: `os-quota-sets` (show, `defaults`, `?usage=true`, update and reset by
an admin), `/limits`, and the check every create makes (413 over quota, in Cinder's words).

A project's overrides are one `VolumeQuota` object named by the project id, and the quota
classes (`os-quota-class-sets`; `default` changes every project's defaults) one each. What is
in use is counted from the project's volumes and snapshots (snapshots count towards
`gigabytes`, as Cinder counts them by default), and its backups (`backups`, and their
sizes as `backup_gigabytes`).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of
from unistack.iaas.volume import kinds
from unistack.openstack import auth
from unistack.openstack.volume.service import VolumeService, read_member
from unistack.openstack.web import OpenStackError, bad_request, empty, json_response

Obj = dict[str, Any]
DEFAULTS = {
    "volumes": 10,
    "snapshots": 10,
    "gigabytes": 1000,
    "backups": 10,
    "backup_gigabytes": 1000,
    "groups": 10,
    "per_volume_gigabytes": -1,
}
DEFAULT_CLASS = "default"
PER_TYPE = ("volumes_", "snapshots_", "gigabytes_")
_CLASS_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def over_limit(message: str) -> OpenStackError:
    return OpenStackError(413, message)


class Quotas:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/os-quota-sets/{project_id}/defaults", self.show_defaults, methods=["GET"]),
            Route("/os-quota-sets/{project_id}", self.show_quota_set, methods=["GET"]),
            Route("/os-quota-sets/{project_id}", self.update_quota_set, methods=["PUT"]),
            Route("/os-quota-sets/{project_id}", self.delete_quota_set, methods=["DELETE"]),
            Route("/os-quota-class-sets/{class_name}", self.show_quota_class, methods=["GET"]),
            Route("/os-quota-class-sets/{class_name}", self.update_quota_class, methods=["PUT"]),
            Route("/limits", self.show_limits, methods=["GET"]),
        ]

    # --- what a project may use and uses --------------------------------------------------

    def stored(self, name: str) -> dict[str, int]:
        return dict(spec_of(self.service.records.get(kinds.QUOTAS, name)).get("limits") or {})

    def defaults(self) -> dict[str, int]:
        """The `default` quota class: Cinder's defaults with what an admin changed."""
        return {**DEFAULTS, **self.stored(DEFAULT_CLASS)}

    def limits(self, project_id: str) -> dict[str, int]:
        return {**self.defaults(), **self.stored(project_id)}

    def usage(self, project_id: str) -> dict[str, int]:
        records = self.service.records
        volumes = [v for v in records.of_project(kinds.VOLUMES, project_id) if _live(v)]
        snapshots = [s for s in records.of_project(kinds.SNAPSHOTS, project_id) if _live(s)]
        sizes = sum(int(spec_of(o).get("size") or 0) for o in [*volumes, *snapshots])
        backups = [b for b in records.of_project(kinds.BACKUPS, project_id) if _live(b)]
        used = dict.fromkeys(DEFAULTS, 0)
        used.update(volumes=len(volumes), snapshots=len(snapshots), gigabytes=sizes)
        used.update(
            backups=len(backups),
            backup_gigabytes=sum(int(spec_of(b).get("size") or 0) for b in backups),
        )
        return used

    def check_backup(self, project_id: str, size: int) -> None:
        """413 if one more backup of `size` GiB exceeds the project's backup quotas."""
        limits, used = self.limits(project_id), self.usage(project_id)
        if 0 <= limits["backups"] < used["backups"] + 1:
            raise over_limit(
                f"Maximum number of backups allowed ({limits['backups']}) exceeded for quota "
                "'backups'."
            )
        quota = limits["backup_gigabytes"]
        if 0 <= quota < used["backup_gigabytes"] + size:
            raise over_limit(
                f"Requested backup exceeds allowed Backup gigabytes quota. Requested {size}G, "
                f"quota is {quota}G and {used['backup_gigabytes']}G has been consumed."
            )

    def check_volume(self, project_id: str, size: int, count: int = 1) -> None:
        """413 if `count` more volumes of `size` GiB (more gigabytes: count 0) exceed quota."""
        limits, used = self.limits(project_id), self.usage(project_id)
        per_volume = limits["per_volume_gigabytes"]
        if per_volume >= 0 and size > per_volume:
            raise over_limit(
                f"Requested volume size {size}G is larger than maximum allowed limit {per_volume}G."
            )
        if count and 0 <= limits["volumes"] < used["volumes"] + count:
            raise over_limit(
                f"Maximum number of volumes allowed ({limits['volumes']}) exceeded for quota "
                "'volumes'."
            )
        self._check_gigabytes(limits, used, size)

    def check_snapshot(self, project_id: str, size: int) -> None:
        limits, used = self.limits(project_id), self.usage(project_id)
        if 0 <= limits["snapshots"] < used["snapshots"] + 1:
            raise over_limit(
                f"Maximum number of snapshots allowed ({limits['snapshots']}) exceeded for "
                "quota 'snapshots'."
            )
        self._check_gigabytes(limits, used, size)

    @staticmethod
    def _check_gigabytes(limits: dict[str, int], used: dict[str, int], size: int) -> None:
        quota = limits["gigabytes"]
        if 0 <= quota < used["gigabytes"] + size:
            raise over_limit(
                f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested "
                f"{size}G, quota is {quota}G and {used['gigabytes']}G has been consumed."
            )

    # --- handlers -------------------------------------------------------------------------

    def _target(self, request: Request) -> str:
        context = self.service.caller(request)
        target = request.path_params["project_id"]
        if not context.is_admin and target != context.project_id:
            raise auth.deny("volume_extension:quotas:show")
        return target

    async def show_defaults(self, request: Request) -> Response:
        target = self._target(request)
        return json_response({"quota_set": {"id": target, **self.defaults()}})

    async def show_quota_class(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:quota_classes")
        name = _class_name(request)
        limits = self.defaults() if name == DEFAULT_CLASS else {**DEFAULTS, **self.stored(name)}
        return json_response({"quota_class_set": {"id": name, **limits}})

    async def update_quota_class(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:quota_classes")
        name = _class_name(request)
        body = await read_member(request, "quota_class_set")
        stored = {**self.stored(name), **self._values(body)}
        await self._store(name, stored, project_id=None)
        return json_response({"quota_class_set": {**DEFAULTS, **stored}})

    async def show_quota_set(self, request: Request) -> Response:
        target = self._target(request)
        limits = self.limits(target)
        if request.query_params.get("usage", "").lower() not in ("true", "1"):
            return json_response({"quota_set": {"id": target, **limits}})
        used = self.usage(target)
        shown = {
            name: {"limit": limit, "in_use": used.get(name, 0), "reserved": 0}
            for name, limit in limits.items()
        }
        return json_response({"quota_set": {"id": target, **shown}})

    async def update_quota_set(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:quotas:update")
        target = request.path_params["project_id"]
        body = await read_member(request, "quota_set")
        stored = {**self.stored(target), **self._values(body)}
        await self._store(target, stored, project_id=target)
        return json_response({"quota_set": {**self.defaults(), **stored}})

    async def delete_quota_set(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:quotas:delete")
        target = request.path_params["project_id"]
        if self.service.records.get(kinds.QUOTAS, target) is not None:
            await self.service.records.delete(kinds.QUOTAS, target)
        return empty(200)

    async def _store(self, name: str, limits: dict[str, int], project_id: str | None) -> None:
        """A project's overrides (named by its id), or a quota class (no project)."""
        await self.service.put(kinds.QUOTAS, name, {"limits": limits}, {"project_id": project_id})

    def _values(self, body: Obj) -> dict[str, int]:
        """The quota limits of an update: the known resources, and per volume type
        (`volumes_<type>`, `snapshots_<type>`, `gigabytes_<type>`) for types that exist."""
        changes: dict[str, int] = {}
        for name, value in body.items():
            if name in ("id", "tenant_id", "class_name"):
                continue
            if name not in DEFAULTS and not self._per_type(name):
                raise bad_request(f"Bad key(s) in quota set: {name}")
            changes[name] = _limit(name, value)
        return changes

    def _per_type(self, name: str) -> bool:
        for prefix in PER_TYPE:
            if name.startswith(prefix):
                return bool(self.service.records.indexed(kinds.TYPES, "name", name[len(prefix) :]))
        return False

    async def show_limits(self, request: Request) -> Response:
        context = self.service.reader(request)
        project_id = context.project_id or ""
        limits, used = self.limits(project_id), self.usage(project_id)
        absolute = {
            "maxTotalVolumes": limits["volumes"],
            "maxTotalSnapshots": limits["snapshots"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "maxTotalBackups": limits["backups"],
            "maxTotalBackupGigabytes": limits["backup_gigabytes"],
            "totalVolumesUsed": used["volumes"],
            "totalSnapshotsUsed": used["snapshots"],
            "totalGigabytesUsed": used["gigabytes"],
            "totalBackupsUsed": used["backups"],
            "totalBackupGigabytesUsed": used["backup_gigabytes"],
        }
        return json_response({"limits": {"rate": [], "absolute": absolute}})


def _live(obj: Obj) -> bool:
    return not obj["metadata"].get("deletionTimestamp")


def _limit(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Quota {name} must be an integer.") from exc
    if isinstance(value, bool) or number < -1:
        raise bad_request(f"Quota limit {value} for {name} must be -1 or greater.")
    return number


def _class_name(request: Request) -> str:
    name = request.path_params["class_name"]
    if not _CLASS_NAME.match(name):
        raise bad_request(f"Invalid quota class name {name}.")
    return name
