"""The plugin's command-line contract (VERSION, error JSON, the thin plugin's wire format and
launcher), without touching the kernel."""

from __future__ import annotations

import io
import json
import os
from typing import Any

from unistack.dataplane import cniconf
from unistack.dataplane import cnierrors as errors
from unistack.integration.cni import delegate, plugin

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/unistack-test-does-not-exist",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}
CONF = {
    "cniVersion": "0.4.0",
    "name": "pods",
    "type": "unistack-cni",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.213.0.0/24"}]]},
}


def run(environ: dict[str, str], stdin: bytes) -> tuple[int, Any]:
    out = io.StringIO()
    code = plugin.run(environ, stdin, out)
    return code, json.loads(out.getvalue()) if out.getvalue() else None


def test_version_lists_supported_versions() -> None:
    code, out = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert code == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_version_with_empty_stdin() -> None:
    assert run({"CNI_COMMAND": "VERSION"}, b"")[1]["cniVersion"] == "1.0.0"


def test_errors_are_json_with_the_config_version() -> None:
    code, out = run({**ENV, "CNI_IFNAME": ""}, json.dumps(CONF).encode())
    assert code == 1
    assert out["cniVersion"] == "0.4.0" and out["code"] == errors.INVALID_ENVIRONMENT
    assert set(out) == {"cniVersion", "code", "msg", "details"}


def test_bad_json_is_code_6() -> None:
    assert run(ENV, b"{")[1]["code"] == errors.DECODE_FAILURE


def test_add_into_a_missing_netns_is_code_3() -> None:
    code, out = run(ENV, json.dumps(CONF).encode())
    assert (code, out["code"]) == (1, errors.UNKNOWN_CONTAINER)


def test_check_needs_prev_result() -> None:
    code, out = run({**ENV, "CNI_COMMAND": "CHECK"}, json.dumps(CONF).encode())
    assert (code, out["code"]) == (1, errors.INVALID_CONFIG)


def test_check_is_not_allowed_before_0_4_0() -> None:
    conf = {**CONF, "cniVersion": "0.3.1"}
    code, out = run({**ENV, "CNI_COMMAND": "CHECK"}, json.dumps(conf).encode())
    assert (code, out["code"]) == (1, errors.INCOMPATIBLE_VERSION)


def test_unexpected_failures_are_json_too(monkeypatch: Any) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setitem(plugin.COMMANDS, "ADD", boom)
    code, out = run(ENV, json.dumps(CONF).encode())
    assert (code, out["code"]) == (1, errors.INTERNAL)
    assert "kaboom" in out["details"]


def test_the_thin_plugins_wire_format_round_trips() -> None:
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_NETNS": "/run/netns/x",
        "CNI_ARGS": "A=1;B=2",
        "HOME": "/",
    }
    stdin = b'{"cniVersion":"1.0.0"}\0with a NUL'
    decoded_env, decoded_stdin = delegate.decode_request(delegate.encode_request(environ, stdin))
    assert decoded_env == {k: v for k, v in environ.items() if k.startswith("CNI_")}
    assert decoded_stdin == stdin
    assert delegate.decode_request(delegate.encode_request({}, b"")) == ({}, b"")
    assert delegate.decode_reply(delegate.encode_reply(1, b'{"code": 7}\n')) == (
        1,
        b'{"code": 7}\n',
    )


def test_the_installed_launcher_skips_site_and_names_the_socket() -> None:
    text = cniconf.launcher("/usr/bin/python3", "/var/lib/agent/cni/unistack-cni.sock")
    assert text.startswith("#!/usr/bin/python3 -IS\n")
    assert f"sys.path.insert(0, {cniconf.PACKAGE_ROOT!r})" in text
    assert "main('/var/lib/agent/cni/unistack-cni.sock')" in text
    assert os.path.isdir(os.path.join(cniconf.PACKAGE_ROOT, "unistack"))
