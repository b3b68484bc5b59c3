"""The standard attributes Neutron keeps on every resource: `created_at` / `updated_at` and
`revision_number`, stamped on the spec when an object is made and each time it changes (by the
facade's writes in `unistack.openstack.network` and by `bootstrap`)."""

from __future__ import annotations

import time

from unistack.iaas.records import Obj


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stamp_new(spec: Obj) -> Obj:
    moment = now_text()
    spec.update(created_at=moment, updated_at=moment, revision_number=0)
    spec.setdefault("tags", [])
    return spec


def stamp_update(spec: Obj) -> None:
    spec["updated_at"] = now_text()
    spec["revision_number"] = int(spec.get("revision_number", 0)) + 1
