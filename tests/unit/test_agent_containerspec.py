"""From pod spec and image config to what the runtime runs (kubelet rules)."""

from __future__ import annotations

import pytest

from unistack.agent import containerspec, podstatus
from unistack.agent.containerspec import ConfigError, Sources
from unistack.agent.podstatus import Track
from unistack.agent.runtime import Exit

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["default"], "Env": ["PATH=/bin", "A=image"]}
POD = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}}, "spec": {}}


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["/entry", "default"]),
        ({"args": ["x"]}, ["/entry", "x"]),
        ({"command": ["/bin/sh"]}, ["/bin/sh"]),
        ({"command": ["/bin/sh"], "args": ["-c", "true"]}, ["/bin/sh", "-c", "true"]),
    ],
)
def test_command_and_args_replace_entrypoint_and_cmd(container: dict, argv: list[str]) -> None:
    assert containerspec.command_line(container, IMAGE) == argv


def test_environment_precedence_and_references() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "A", "value": "pod"},
            {"name": "B", "value": "$(A)-$(CM_k)-$$(A)-$(NOPE)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
    }
    sources = Sources(config_maps={"cm": {"k": "v"}}, secrets={"s": {"k": "secret"}})
    env = dict(e.split("=", 1) for e in containerspec.environment(POD, container, IMAGE, sources))
    assert env["PATH"] == "/bin" and env["A"] == "pod" and env["CM_k"] == "v"
    assert env["B"] == "pod-v-$(A)-$(NOPE)"
    assert (env["POD"], env["APP"], env["S"]) == ("p", "x", "secret")


def test_a_missing_required_config_map_is_a_config_error() -> None:
    container = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "no", "key": "k"}}}]
    }
    with pytest.raises(ConfigError, match='configmap "no" not found'):
        containerspec.environment(POD, container, IMAGE, Sources())
    optional = {
        "env": [
            {
                "name": "X",
                "valueFrom": {"configMapKeyRef": {"name": "no", "key": "k", "optional": True}},
            }
        ]
    }
    env = containerspec.environment(POD, optional, IMAGE, Sources())
    assert not any(e.startswith("X=") for e in env)


def test_limits_become_cgroup_values() -> None:
    container = {
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}
    }
    limits = containerspec.limits(container)
    assert limits.memory_bytes == 64 * 2**20
    assert (limits.cpu_quota_us, limits.cpu_period_us) == (50_000, 100_000)
    assert limits.cpu_shares == 256


def _ended(code: int, restart: bool) -> Track:
    return Track("c", "i", exit=Exit(code), waiting_reason="", will_restart=restart)


@pytest.mark.parametrize(
    ("apps", "phase"),
    [
        ([_ended(0, False)], "Succeeded"),
        ([_ended(1, False)], "Failed"),
        ([_ended(1, True)], "Running"),
        ([_ended(0, False), Track("d", "i", running=True)], "Running"),
        ([Track("c", "i")], "Pending"),
    ],
)
def test_pod_phase(apps: list[Track], phase: str) -> None:
    assert podstatus.phase([], apps, sandbox_ready=True) == phase


def test_a_failed_init_container_that_will_not_restart_fails_the_pod() -> None:
    init = Track("init", "i", init=True, exit=Exit(2), will_restart=False)
    assert podstatus.phase([init], [Track("c", "i")], sandbox_ready=True) == "Failed"


def test_an_oom_kill_is_reported_as_such() -> None:
    track = Track("c", "i", exit=Exit(137, 9, oom_killed=True, finished_at=1.0), waiting_reason="")
    state = podstatus.container_status(track)["state"]["terminated"]
    assert (state["reason"], state["exitCode"], state["signal"]) == ("OOMKilled", 137, 9)


KUBERNETES = {
    "metadata": {"name": "kubernetes", "namespace": "default"},
    "spec": {
        "clusterIP": "10.96.0.1",
        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
    },
}


def test_the_api_servers_service_variables_are_the_kubelets() -> None:
    assert containerspec.service_variables(KUBERNETES) == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
    }


def test_a_headless_or_portless_service_has_no_variables() -> None:
    headless = {**KUBERNETES, "spec": {**KUBERNETES["spec"], "clusterIP": "None"}}
    assert containerspec.service_variables(headless) == {}
    assert containerspec.service_variables({**KUBERNETES, "spec": {"clusterIP": "10.96.0.9"}}) == {}


def test_service_variables_override_the_images_and_yield_to_the_containers() -> None:
    image = {"Env": ["PATH=/bin", "KUBERNETES_SERVICE_PORT=1"]}
    container = {
        "env": [
            {
                "name": "API",
                "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)",
            },
            {"name": "KUBERNETES_PORT", "value": "mine"},
        ]
    }
    sources = Sources(service_env=containerspec.service_variables(KUBERNETES))
    env = dict(e.split("=", 1) for e in containerspec.environment(POD, container, image, sources))
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["API"] == "https://10.96.0.1:443"
    assert env["KUBERNETES_PORT"] == "mine"


def _service(name: str, namespace: str, ip: str, port: int) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": [{"port": port, "protocol": "TCP"}]},
    }


def test_service_links_are_the_namespaces_services_and_the_api_servers() -> None:
    web = _service("web-front", "team", "10.96.0.20", 80)
    elsewhere = _service("db", "other", "10.96.0.30", 5432)
    headless = _service("peers", "team", "None", 7000)
    env = containerspec.service_links([KUBERNETES, web, elsewhere, headless], "team", True)
    assert env["WEB_FRONT_SERVICE_HOST"] == "10.96.0.20"
    assert env["WEB_FRONT_PORT_80_TCP"] == "tcp://10.96.0.20:80"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(name.startswith(("DB_", "PEERS_")) for name in env)
    # enableServiceLinks: false leaves the API server's alone
    off = containerspec.service_links([KUBERNETES, web], "team", False)
    assert off == containerspec.service_variables(KUBERNETES)
    # a `kubernetes` Service of the pod's own namespace wins over the API server's
    mine = _service("kubernetes", "team", "10.96.0.99", 8443)
    assert (
        containerspec.service_links([KUBERNETES, mine], "team", True)["KUBERNETES_SERVICE_HOST"]
        == "10.96.0.99"
    )
