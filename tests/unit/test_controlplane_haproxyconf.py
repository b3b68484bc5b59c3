"""The gateway's HAProxy config, without I/O: routes from Services and Endpoints, the rendered
file (and, when the binary is installed, `haproxy -c` accepting it), and `show proc` parsing."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from unistack.controlplane.haproxy import parse_show_proc
from unistack.controlplane.haproxyconf import (
    GatewayConfig,
    Route,
    Server,
    render,
    routes_from,
)

Obj = dict[str, Any]
NS = "unistack-system"


def service(name: str, paths: str, *, gateway: str = "true", port: Obj | None = None) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"unistack.io/gateway": gateway},
            "annotations": {"unistack.io/gateway-path": paths},
        },
        "spec": {"ports": [port or {"name": "http", "port": 80, "targetPort": 8080}]},
    }


def endpoints(
    name: str, ready: list[str], not_ready: Sequence[str] = (), port: Obj | None = None
) -> Obj:
    subset: Obj = {"ports": [port or {"name": "http", "port": 8080, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": ip} for ip in ready]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"metadata": {"name": name, "namespace": NS}, "subsets": [subset]}


def quoted_body(line: str) -> Obj:
    """The JSON inside an `http-request return ... string '...'` line."""
    body: Obj = json.loads(line[line.index("'") + 1 : line.rindex("'")])
    return body


def section(text: str, header: str) -> list[str]:
    """The lines of one section of the config (up to the next blank line)."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [line.strip() for line in lines[start + 1 : end]]


# --- routes_from ------------------------------------------------------------------------------


def test_ready_addresses_are_servers_and_not_ready_ones_backups() -> None:
    routes = routes_from(
        [service("nova-api", "/compute")],
        [endpoints("nova-api", ["10.244.0.9", "10.244.0.5"], ["10.244.0.7"])],
    )
    servers = (
        Server("10.244.0.5", 8080),
        Server("10.244.0.9", 8080),
        Server("10.244.0.7", 8080, backup=True),
    )
    assert routes == [Route("/compute", "unistack-nova-api", servers)]
    text = render(GatewayConfig(), routes)
    assert "server 10.244.0.7_8080 10.244.0.7:8080 backup" in text
    assert "server 10.244.0.5_8080 10.244.0.5:8080\n" in text


def test_a_service_without_endpoints_still_has_its_route() -> None:
    only_starting = [endpoints("glance-api", [], ["10.244.0.3"])]
    assert routes_from([service("glance-api", "/image")], only_starting) == [
        Route("/image", "unistack-glance-api", (Server("10.244.0.3", 8080, backup=True),))
    ]
    assert routes_from([service("glance-api", "/image")], []) == [
        Route("/image", "unistack-glance-api", ())
    ]


def test_several_prefixes_share_one_backend_and_bad_ones_are_skipped() -> None:
    svc = service("cinder-api", "/volume, /volume/v3/ ,relative,/a//b,/volume")
    routes = routes_from([svc], [endpoints("cinder-api", ["10.244.1.1"])])
    assert [(r.prefix, r.backend_name) for r in routes] == [
        ("/volume", "unistack-cinder-api"),
        ("/volume/v3", "unistack-cinder-api"),
    ]


def test_unlabelled_services_and_other_namespaces_are_ignored() -> None:
    foreign = endpoints("keystone", ["10.9.9.9"])
    foreign["metadata"]["namespace"] = "default"
    routes = routes_from(
        [service("nova-api", "/compute", gateway="false"), service("keystone", "/identity")],
        [endpoints("nova-api", ["10.244.0.5"]), foreign],
    )
    assert routes == [Route("/identity", "unistack-keystone", ())]


def test_the_port_is_the_first_service_port_matched_by_name_or_number() -> None:
    named = service("a", "/a", port={"name": "api", "port": 80, "targetPort": "api"})
    numbered = service("b", "/b", port={"port": 80, "targetPort": 9292})
    a_endpoints = {
        "metadata": {"name": "a", "namespace": NS},
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1"}],
                "ports": [{"name": "metrics", "port": 9100}, {"name": "api", "port": 8080}],
            }
        ],
    }
    b_endpoints = endpoints("b", ["10.0.0.2"], port={"port": 9292})
    wrong_port = endpoints("c", ["10.0.0.3"], port={"name": "other", "port": 1234})
    routes = routes_from(
        [named, numbered, service("c", "/c")], [a_endpoints, b_endpoints, wrong_port]
    )
    assert [r.servers for r in routes] == [
        (Server("10.0.0.1", 8080),),
        (Server("10.0.0.2", 9292),),
        (),
    ]


def test_a_prefix_claimed_twice_goes_to_the_first_service_by_name() -> None:
    routes = routes_from([service("zz", "/compute"), service("aa", "/compute")], [])
    assert [r.backend_name for r in routes] == ["unistack-aa"]


# --- render -----------------------------------------------------------------------------------

ROUTES = [
    Route("/compute", "unistack-nova-api", (Server("10.244.0.5", 8080), Server("fd00::5", 8080))),
    Route("/compute/v2.1/os-hosts", "unistack-hosts", (Server("10.244.0.6", 8080),)),
    Route("/image", "unistack-glance-api", ()),
    Route("/image/v2/legacy", "unistack-glance-api", ()),
]


def test_longest_prefix_is_matched_first_and_paths_match_whole_segments() -> None:
    frontend = section(render(GatewayConfig(), ROUTES), "frontend unistack-gateway")
    uses = [line.split()[1] for line in frontend if line.startswith("use_backend")]
    assert uses == [
        "unistack-hosts",
        "unistack-glance-api",
        "unistack-nova-api",
        "unistack-glance-api",
    ]
    assert "acl unistack_route2 path /compute" in frontend
    assert "acl unistack_route2 path_beg /compute/" in frontend
    assert frontend[-1] == "default_backend unistack_no_route"


def test_the_frontend_binds_the_configured_address() -> None:
    text = render(GatewayConfig(bind_host="127.0.0.1", bind_port=18080), ROUTES)
    assert "bind 127.0.0.1:18080" in section(text, "frontend unistack-gateway")
    assert "bind [::]:8080" in render(GatewayConfig(bind_host="::"), [])


def test_backends_are_health_checked_and_retry_on_another_server() -> None:
    text = render(GatewayConfig(check_interval_ms=400, fall=2), ROUTES)
    defaults = section(text, "defaults")
    assert "retry-on conn-failure empty-response 502 503 504" in defaults
    assert "option redispatch 1" in defaults
    assert "retries 3" in defaults
    backend = section(text, "backend unistack-nova-api")
    assert "option httpchk GET /healthz" in backend
    assert "http-check expect status 200" in backend
    checks = next(line for line in backend if line.startswith("default-server"))
    assert "check inter 400ms" in checks and "fall 2" in checks
    assert "observe layer4" in checks and "on-error mark-down" in checks
    assert "server 10.244.0.5_8080 10.244.0.5:8080" in backend
    assert "server fd00::5_8080 ipv6@fd00::5:8080" in backend


def test_a_client_sticks_to_one_replica_unless_round_robin_is_asked_for() -> None:
    sticky = section(render(GatewayConfig(), ROUTES), "backend unistack-nova-api")
    assert "balance source" in sticky and "hash-type consistent" in sticky
    spread = section(
        render(GatewayConfig(balance="roundrobin"), ROUTES), "backend unistack-nova-api"
    )
    assert "balance roundrobin" in spread and "hash-type consistent" not in spread


def test_only_idempotent_methods_get_layer7_retries() -> None:
    frontend = section(render(GatewayConfig(), ROUTES), "frontend unistack-gateway")
    assert "acl unistack_retryable method GET HEAD OPTIONS" in frontend
    assert "http-request disable-l7-retry unless unistack_retryable" in frontend
    never = section(render(GatewayConfig(retry_methods=()), ROUTES), "frontend unistack-gateway")
    assert "http-request disable-l7-retry" in never


def test_a_backend_without_servers_answers_503_in_the_services_error_format() -> None:
    text = render(GatewayConfig(), ROUTES)
    assert text.count("\nbackend unistack-glance-api\n") == 1
    glance = section(text, "backend unistack-glance-api")
    assert len(glance) == 1 and glance[0].startswith(
        "http-request return status 503 content-type application/json string '"
    )
    body = quoted_body(glance[0])
    assert body["code"] == "503 Service Unavailable" and body["title"] == "Service Unavailable"
    nova_down = next(
        line
        for line in section(text, "backend unistack-nova-api")
        if line.startswith("http-error status 503")
    )
    assert quoted_body(nova_down) == {
        "serviceUnavailable": {"code": 503, "message": quoted_body(glance[0])["message"]}
    }


def test_unknown_paths_answer_404_json() -> None:
    no_route = section(render(GatewayConfig(), []), "backend unistack_no_route")
    assert quoted_body(no_route[0])["error"]["code"] == 404


def test_the_global_section_has_the_admin_socket() -> None:
    text = render(GatewayConfig(stats_socket="/run/unistack/gw/stats.sock"), [])
    assert "stats socket /run/unistack/gw/stats.sock mode 600 level admin" in section(
        text, "global"
    )
    assert "stats socket" not in render(GatewayConfig(), [])


@pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (Debian package haproxy)")
@pytest.mark.parametrize("routes", [ROUTES, []], ids=["routes", "empty"])
def test_haproxy_accepts_the_rendered_file(tmp_path: Path, routes: list[Route]) -> None:
    config = GatewayConfig(stats_socket=str(tmp_path / "stats.sock"))
    path = tmp_path / "haproxy.cfg"
    path.write_text(render(config, routes))
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=10
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr


# --- the master CLI ---------------------------------------------------------------------------

SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
8973            master          2 [failed: 1]   0d00h10m17s     2.6.12-1+deb12u4
# workers
13180           worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
8976            worker          1               0d00h00m09s     2.6.12-1+deb12u4
# programs

"""


def test_show_proc_lists_current_workers_and_failed_reloads() -> None:
    table = parse_show_proc(SHOW_PROC)
    assert table.workers == frozenset({13180})
    assert table.failed_reloads == 1
