"""The scheduler's cache and its search: sums kept per node, assumptions, sampling, scores."""

from __future__ import annotations

from typing import Any

from unistack.kube.scheduler import scoring
from unistack.kube.scheduler.cache import SchedulerCache
from unistack.kube.scheduler.nodeinfo import NodeInfo
from unistack.kube.scheduler.scheduler import Bind, Unschedulable, choose, feasible_nodes_to_find

Obj = dict[str, Any]


def node(name: str, cpu: str = "4", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    }


def pod(name: str, cpu: str = "1", node_name: str = "", **spec: Any) -> Obj:
    container = {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"containers": [container], **spec},
    }


def test_feasible_nodes_to_find_follows_kube_schedulers_adaptive_percentage() -> None:
    assert feasible_nodes_to_find(0) == 0
    assert feasible_nodes_to_find(99) == 99
    assert feasible_nodes_to_find(1000) == 420  # 50% - 1000/125 = 42%
    assert feasible_nodes_to_find(5000) == 500  # 10%
    assert feasible_nodes_to_find(100_000) == 5000  # never under 5%
    assert feasible_nodes_to_find(150) == 100  # never under 100 nodes


def test_node_info_sums_follow_pods_added_replaced_and_removed() -> None:
    info = NodeInfo(node("a"), [pod("x", "1"), pod("y", "500m")])
    assert (info.requested["cpu"], info.free_cpu, info.free_pods) == (1500, 2500, 108)
    info.add(pod("x", "2"))  # a new version of x replaces the old one
    assert info.requested["cpu"] == 2500
    info.remove("default/y")
    assert (info.requested["cpu"], len(info.pods)) == (2000, 1)


def test_cache_counts_pods_on_nodes_that_arrive_later() -> None:
    cache = SchedulerCache()
    cache.place(pod("x", "3", node_name="late"))
    cache.set_node(node("late"))
    assert cache.infos["late"].free_cpu == 1000


def test_an_assumption_holds_until_confirmed_or_forgotten() -> None:
    cache = SchedulerCache()
    cache.set_node(node("a"))
    pending = pod("x", "3")
    cache.assume(pending, "a")
    assert cache.infos["a"].free_cpu == 1000
    cache.place(pending)  # an event from before the binding must not undo it
    assert cache.is_assumed("default/x") and cache.infos["a"].free_cpu == 1000
    cache.forget(pending)
    assert cache.infos["a"].free_cpu == 4000 and not cache.is_assumed("default/x")
    cache.assume(pending, "a")
    cache.place(pod("x", "3", node_name="a"))  # confirmed
    assert not cache.is_assumed("default/x") and cache.infos["a"].free_cpu == 1000
    cache.remove(pending)
    assert cache.infos["a"].free_cpu == 4000


def test_finished_pods_free_their_node() -> None:
    cache = SchedulerCache()
    cache.set_node(node("a"))
    done = pod("x", "3", node_name="a")
    cache.place(done)
    done["status"] = {"phase": "Succeeded"}
    cache.place(done)
    assert cache.infos["a"].free_cpu == 4000


def test_search_stops_at_enough_feasible_nodes_and_goes_on_from_there() -> None:
    cache = SchedulerCache()
    for i in range(200):
        cache.set_node(node(f"n{i:03d}"))
    decision, looked = choose(pod("p"), cache.nodes, 0)
    assert looked == 100 and isinstance(decision, Bind)
    assert decision.node < "n100"  # among the first hundred
    decision, looked = choose(pod("q"), cache.nodes, 100)
    assert isinstance(decision, Bind) and decision.node >= "n100"


def test_a_full_search_counts_every_node_in_the_message() -> None:
    cache = SchedulerCache()
    for i in range(150):
        cache.set_node(node(f"n{i:03d}", cpu="1"))
    decision, looked = choose(pod("big", "2"), cache.nodes, 70)
    assert looked == 150
    assert decision == Unschedulable(
        "Unschedulable", "0/150 nodes are available: 150 Insufficient cpu."
    )


def test_preferred_node_affinity_wins_over_free_resources() -> None:
    busy = NodeInfo(node("ssd", labels={"disk": "ssd"}), [pod("x", "2")])
    idle = NodeInfo(node("hdd", labels={"disk": "hdd"}))
    term = {
        "weight": 10,
        "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
    }
    wanted = pod(
        "p", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}}
    )
    assert scoring.best(pod("p"), [busy, idle]).name == "hdd"
    assert scoring.best(wanted, [busy, idle]).name == "ssd"


def test_prefer_no_schedule_taints_push_pods_elsewhere_unless_tolerated() -> None:
    taint = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    tainted = NodeInfo(node("a", taints=[taint]))
    clean = NodeInfo(node("b"), [pod("x", "1")])
    assert scoring.best(pod("p"), [tainted, clean]).name == "b"
    tolerant = pod("p", tolerations=[{"key": "k", "operator": "Exists"}])
    assert scoring.best(tolerant, [tainted, clean]).name == "a"
