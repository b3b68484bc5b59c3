"""Host-local reservations on disk: layout, round robin, release, concurrent execs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from unistack.dataplane import ipam


def pool(subnet: str = "10.213.5.0/29") -> list[ipam.RangeSet]:
    return [ipam.RangeSet.from_config([{"subnet": subnet}])]


def allocate(store: ipam.HostLocalStore, container_id: str, ifname: str = "eth0") -> str:
    with store.lock():
        return str(ipam.allocate(store, pool(), container_id, ifname)[0].address)


def release(store: ipam.HostLocalStore, container_id: str, ifname: str = "eth0") -> list[str]:
    with store.lock():
        return ipam.release(store, container_id, ifname)


def test_layout_matches_host_local(tmp_path: Path) -> None:
    store = ipam.HostLocalStore(str(tmp_path), "pods")
    assert allocate(store, "c1") == "10.213.5.2"
    assert (tmp_path / "pods" / "10.213.5.2").read_text() == "c1\neth0"
    assert (tmp_path / "pods" / "last_reserved_ip.0").read_text() == "10.213.5.2"
    assert (tmp_path / "pods" / "lock").exists()


def test_round_robin_does_not_reuse_a_just_released_address(tmp_path: Path) -> None:
    store = ipam.HostLocalStore(str(tmp_path), "pods")
    assert allocate(store, "c1") == "10.213.5.2"
    assert release(store, "c1") == ["10.213.5.2"]
    assert allocate(store, "c2") == "10.213.5.3"


def test_duplicate_and_exhaustion(tmp_path: Path) -> None:
    store = ipam.HostLocalStore(str(tmp_path), "pods")
    for n in range(5):  # .2-.6
        allocate(store, f"c{n}")
    with pytest.raises(ipam.DuplicateAllocation):
        allocate(store, "c0")
    with pytest.raises(ipam.RangeExhausted):
        allocate(store, "c9")
    assert release(store, "nobody") == []


def test_concurrent_allocations_never_share_an_address(tmp_path: Path) -> None:
    got: list[str] = []

    def worker(n: int) -> None:
        store = ipam.HostLocalStore(str(tmp_path), "pods")
        with store.lock():
            got.append(
                str(ipam.allocate(store, [pool("10.213.6.0/24")[0]], f"c{n}", "eth0")[0].address)
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got)) == 16
