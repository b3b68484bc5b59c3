"""The node agent's projected volumes (`unistack.agent.volumes`): what the ServiceAccount
admission's `kube-api-access-*` volume holds on the host, and a renewed token rewritten."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from unistack.agent.containerspec import ConfigError, Sources
from unistack.agent.podtokens import TokenKey
from unistack.agent.volumes import prepare, write_tokens
from unistack.apiserver.serviceaccount_admission import token_volume

Obj = dict[str, Any]
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = TokenKey("", 3607)


def pod(*volumes: Obj) -> Obj:
    meta = {"name": "web", "namespace": "team", "uid": "pod-uid"}
    return {"metadata": meta, "spec": {"volumes": list(volumes)}}


def test_the_api_access_volume_holds_token_ca_and_namespace(tmp_path: Path) -> None:
    sources = Sources(config_maps={"kube-root-ca.crt": {"ca.crt": CA}}, tokens={KEY: "jwt-1"})
    paths = prepare(pod(token_volume("kube-api-access-abcde")), tmp_path, sources, {})
    volume = paths["kube-api-access-abcde"]
    assert volume == tmp_path / "volumes" / "projected" / "kube-api-access-abcde"
    files = {p.name: p.read_text() for p in volume.iterdir() if not p.name.startswith(".")}
    assert files == {"token": "jwt-1", "ca.crt": CA, "namespace": "team"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in volume.iterdir()} == {0o644}


def test_a_renewed_token_is_written_alone_and_in_place(tmp_path: Path) -> None:
    the_pod = pod(token_volume("kube-api-access-abcde"), {"name": "scratch", "emptyDir": {}})
    sources = Sources(config_maps={"kube-root-ca.crt": {"ca.crt": CA}}, tokens={KEY: "jwt-1"})
    volume = prepare(the_pod, tmp_path, sources, {})["kube-api-access-abcde"]
    (volume / "ca.crt").write_text("left alone")
    write_tokens(the_pod, tmp_path, {KEY: "jwt-2"})
    assert (volume / "token").read_text() == "jwt-2"
    assert (volume / "ca.crt").read_text() == "left alone"
    assert not (tmp_path / "volumes" / "projected" / "scratch").exists()


def test_a_token_path_stays_inside_its_volume(tmp_path: Path) -> None:
    escaping = {"serviceAccountToken": {"path": "../token"}}
    the_pod = pod({"name": "v", "projected": {"sources": [escaping]}})
    with pytest.raises(ConfigError, match="invalid path"):
        prepare(the_pod, tmp_path, Sources(tokens={TokenKey("", 3600): "jwt"}), {})


def test_an_unpublished_root_ca_is_tolerated(tmp_path: Path) -> None:
    """A cluster whose controllers trust no CA of their own (plain HTTP) publishes none."""
    volume = prepare(pod(token_volume("kube-api-access-abcde")), tmp_path,
                     Sources(tokens={KEY: "jwt-1"}), {})["kube-api-access-abcde"]  # fmt: skip
    assert sorted(p.name for p in volume.iterdir()) == ["namespace", "token"]
