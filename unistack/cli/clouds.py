"""The OpenStack side of `unistack up`'s state: the admin password, the token keys, and the
`clouds.yaml` that the `openstack` CLI, openstacksdk and Tempest read (cloud `unistack`)."""

from __future__ import annotations

import secrets

import yaml

from unistack.cli.statedir import StateDir, write_private
from unistack.tokens import ensure_key_repository

CLOUD_NAME = "unistack"


def ensure_admin_password(state: StateDir) -> str:
    if not state.admin_password.exists():
        write_private(state.admin_password, secrets.token_urlsafe(18) + "\n")
    return state.admin_password.read_text().strip()


def prepare(state: StateDir, gateway_url: str, region: str = "RegionOne") -> None:
    """Token keys, admin password and clouds.yaml (rewritten: the port may have changed)."""
    ensure_key_repository(state.fernet_keys)
    password = ensure_admin_password(state)
    cloud = {
        "auth": {
            "auth_url": f"{gateway_url}/identity",
            "username": "admin",
            "password": password,
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": region,
        "interface": "public",
        "identity_api_version": 3,
    }
    text = yaml.safe_dump({"clouds": {CLOUD_NAME: cloud}}, sort_keys=False)
    write_private(state.clouds_yaml, text)
