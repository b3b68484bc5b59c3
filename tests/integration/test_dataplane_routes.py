"""Pod routes tagged proto 199, synced inside a scratch netns so the host is untouched."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from unistack.dataplane import iproute, netns, routes

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2"),
]


@pytest.fixture
def space() -> Iterator[str]:
    name = f"unistack-test-{secrets.token_hex(4)}"
    netns.LinuxNamespaces().create(name)
    iproute.ip_batch(
        [
            "link add unistackr0 type bridge",
            "address add 10.213.250.1/24 dev unistackr0",
            "link set unistackr0 up",
            "route add 10.213.240.0/24 via 10.213.250.7",  # someone else's route
        ],
        netns=name,
    )
    yield name
    netns.LinuxNamespaces().delete(name)


def test_sync_adds_moves_and_removes_only_our_routes(space: str) -> None:
    pod_routes = routes.LinuxPodRoutes(netns=space)
    desired = {"10.213.251.0/24": "10.213.250.2", "10.213.252.0/24": "10.213.250.3"}
    assert len(pod_routes.sync(desired)) == 2
    assert pod_routes.observed() == desired
    assert pod_routes.sync(desired) == []
    changes = pod_routes.sync({"10.213.251.0/24": "10.213.250.4"})
    assert [c.action for c in changes] == ["delete", "replace"]
    assert pod_routes.observed() == {"10.213.251.0/24": "10.213.250.4"}
    routes.sync_pod_routes({}, netns=space)
    assert pod_routes.observed() == {}
    others = iproute.ip_json("route", "show", "10.213.240.0/24", netns=space)
    assert others and others[0]["gateway"] == "10.213.250.7"
