"""radvd's configuration for a router's IPv6 subnets, rendered without a kernel."""

from __future__ import annotations

from unistack.dataplane import radvd, routers
from unistack.dataplane.radvd import Advertised
from unistack.dataplane.routers import RouterPort, RouterWiring


def test_nothing_to_advertise_renders_nothing() -> None:
    assert radvd.render_config([]) == ""


def test_each_mode_sets_its_flags_and_prefix_autonomy() -> None:
    config = radvd.render_config(
        [
            Advertised("qr-b", "fd00:2::/64", "dhcpv6-stateful", 1400),
            Advertised("qr-a", "fd00:1::/64", "slaac"),
            Advertised("qr-c", "fd00:3::/64", "dhcpv6-stateless"),
        ]
    )
    blocks = {block.split("\n", 1)[0]: block for block in config.split("interface ")[1:]}
    assert list(blocks) == ["qr-a", "qr-b", "qr-c"]  # in a stable order
    slaac, stateful, stateless = blocks["qr-a"], blocks["qr-b"], blocks["qr-c"]
    assert "AdvManagedFlag off;" in slaac and "AdvOtherConfigFlag off;" in slaac
    assert "prefix fd00:1::/64" in slaac and "AdvAutonomous on;" in slaac
    assert "AdvManagedFlag on;" in stateful and "AdvAutonomous off;" in stateful
    assert "AdvLinkMTU 1400;" in stateful and "AdvLinkMTU 1450;" in slaac
    assert "AdvOtherConfigFlag on;" in stateless and "AdvAutonomous on;" in stateless
    assert config.count("AdvSendAdvert on;") == 3


def test_a_router_advertises_on_its_interfaces_only_known_modes() -> None:
    inside = RouterPort(
        "p1", "n1", "fa:16:3e:00:00:01", ("fd00:1::1/64",), 1450,
        (("fd00:1::/64", "slaac"), ("fd00:9::/64", "bogus")),
    )  # fmt: skip
    gateway = RouterPort("p2", "ext", "fa:16:3e:00:00:02", ("2001:db8::5/64",), 1500)
    wiring = RouterWiring("r1", interfaces=(inside,), gateway=gateway)
    assert routers.advertised(wiring) == [Advertised("qr-p1", "fd00:1::/64", "slaac", 1450)]
