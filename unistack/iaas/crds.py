"""Declaring an IaaS kind as a CustomResourceDefinition, and installing a service's kinds.

`Kind` is what a service declares: group, kind, plural, scope and the columns `kubectl get`
shows. Its `ref` is what the client and informers use; `definition` is the CRD, with a spec
kept as given (`x-kubernetes-preserve-unknown-fields`): the OpenStack facade validates
requests in OpenStack's terms before anything is stored. `install` creates the missing CRDs
and waits until they are served, so a service can start on an empty cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unistack.client.api import AlreadyExists, ApiError, Client
from unistack.client.resources import CUSTOMRESOURCEDEFINITIONS, ResourceRef
from unistack.concurrency import at_once

Obj = dict[str, Any]
VERSION = "v1"
CATEGORY = "openstack"
_OPEN_OBJECT: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


@dataclass(frozen=True)
class Kind:
    group: str
    kind: str
    plural: str
    namespaced: bool = False
    short_names: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = (("Display-Name", ".spec.name"),)

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.group, VERSION, self.plural, self.namespaced, self.kind)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    def definition(self) -> Obj:
        columns = [
            {"name": name, "type": "string", "jsonPath": path} for name, path in self.columns
        ]
        columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
        schema = {
            "type": "object",
            "properties": {"spec": _OPEN_OBJECT, "status": _OPEN_OBJECT},
        }
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": self.crd_name},
            "spec": {
                "group": self.group,
                "scope": "Namespaced" if self.namespaced else "Cluster",
                "names": {
                    "kind": self.kind,
                    "plural": self.plural,
                    "singular": self.kind.lower(),
                    "listKind": f"{self.kind}List",
                    "shortNames": list(self.short_names),
                    "categories": [CATEGORY],
                },
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": columns,
                    }
                ],
            },
        }


async def install(client: Client, kinds: Sequence[Kind], timeout: float = 30.0) -> None:
    """Create the kinds' CRDs that are not served yet, then wait until each is. Whether a kind
    is served is asked of all at once (one LIST of one item each): at a restart or in a
    replacement pod every kind is, and that is the whole of the work."""
    served = await at_once(*(_served(client, kind) for kind in kinds))
    missing = [kind for kind, answered in zip(kinds, served, strict=True) if not answered]
    for kind in missing:
        with contextlib.suppress(AlreadyExists):
            await client.create(CUSTOMRESOURCEDEFINITIONS, kind.definition())
    async with asyncio.timeout(timeout):
        for kind in missing:
            while not await _served(client, kind):
                await asyncio.sleep(0.05)


async def _served(client: Client, kind: Kind) -> bool:
    try:
        await client.list(kind.ref, limit=1)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return False
    return True
