"""Named network namespaces: create, find, delete, all idempotent (root only)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from unistack.dataplane import netns

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2"),
]


@pytest.fixture
def name() -> Iterator[str]:
    made = f"unistack-test-{secrets.token_hex(4)}"
    yield made
    netns.LinuxNamespaces().delete(made)


def test_create_is_idempotent_and_listed(name: str) -> None:
    spaces = netns.LinuxNamespaces()
    path = spaces.create(name)
    assert spaces.create(name) == path == f"/run/netns/{name}"
    assert spaces.exists(name)
    assert name in spaces.list_with_prefix("unistack-test-")
    assert netns.run_in(name, ["ip", "-o", "link", "show", "lo"]).returncode == 0


def test_delete_is_idempotent(name: str) -> None:
    spaces = netns.LinuxNamespaces()
    spaces.create(name)
    spaces.delete(name)
    spaces.delete(name)
    assert not spaces.exists(name)


def test_names_are_checked() -> None:
    with pytest.raises(ValueError):
        netns.LinuxNamespaces().create("../etc")


def test_fake_behaves_the_same() -> None:
    fake = netns.FakeNamespaces()
    fake.create("unistack-a")
    assert fake.list_with_prefix("unistack-") == ["unistack-a"]
    fake.delete("unistack-a")
    fake.delete("unistack-a")
    assert not fake.exists("unistack-a")
