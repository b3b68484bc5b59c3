"""The ServiceAccount controller and the root CA publisher against the real API server,
in-process: a namespace gets its `default` ServiceAccount and its `kube-root-ca.crt`, each
made again when deleted (the ConfigMap put back when edited); a terminating namespace gets
neither."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client, NotFound
from unistack.client.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS
from unistack.kube.serviceaccounts import (
    DESCRIPTION,
    DESCRIPTION_ANNOTATION,
    RootCAPublisher,
    ServiceAccountController,
)

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


async def _namespace(client: Client, name: str) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": name}})


async def _get(client: Client, ref: Any, name: str, namespace: str) -> Obj | None:
    try:
        return await client.get(ref, name, namespace)
    except NotFound:
        return None


async def test_every_namespace_has_a_default_service_account_again_when_deleted(
    client: Client,
) -> None:
    async with running(ServiceAccountController(client)):
        await _namespace(client, "team-a")

        async def has_default() -> bool:
            return await _get(client, SERVICEACCOUNTS, "default", "team-a") is not None

        await eventually(has_default)
        first = await client.get(SERVICEACCOUNTS, "default", "team-a")
        await client.delete(SERVICEACCOUNTS, "default", "team-a")

        async def made_again() -> bool:
            found = await _get(client, SERVICEACCOUNTS, "default", "team-a")
            return found is not None and found["metadata"]["uid"] != first["metadata"]["uid"]

        await eventually(made_again)


async def test_a_terminating_namespace_gets_no_default_service_account(client: Client) -> None:
    await _namespace(client, "leaving")
    await client.create(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": "leaving"}})
    await client.delete(NAMESPACES, "leaving")  # Terminating: no namespace controller here
    await client.delete(SERVICEACCOUNTS, "default", "leaving")
    async with running(ServiceAccountController(client)):
        await asyncio.sleep(0.5)
        assert await _get(client, SERVICEACCOUNTS, "default", "leaving") is None


async def test_every_namespace_publishes_the_ca_kept_as_it_is(client: Client) -> None:
    async with running(RootCAPublisher(client, CA)):
        await _namespace(client, "team-b")

        async def published() -> Obj | None:
            found = await _get(client, CONFIGMAPS, "kube-root-ca.crt", "team-b")
            return found if found is not None and found.get("data") == {"ca.crt": CA} else None

        async def is_published() -> bool:
            return await published() is not None

        await eventually(is_published)
        config_map = await published()
        assert config_map is not None
        assert config_map["metadata"]["annotations"] == {DESCRIPTION_ANNOTATION: DESCRIPTION}
        for system in ("default", "kube-system", "kube-public", "kube-node-lease"):
            await eventually(functools.partial(_exists, client, system))

        config_map["data"] = {"ca.crt": "not the CA"}
        await client.update(CONFIGMAPS, config_map)
        await eventually(is_published)
        await client.delete(CONFIGMAPS, "kube-root-ca.crt", "team-b")
        await eventually(is_published)


async def _exists(client: Client, namespace: str) -> bool:
    return await _get(client, CONFIGMAPS, "kube-root-ca.crt", namespace) is not None
