"""The admin credential and the kubeconfig that carries it.

`ensure_admin_token` keeps one admin bearer token in `DIR/tokens.csv`, in kube-apiserver's
static token file format (`token,user,uid,"group1,group2"`), created once and reused after.
`write_kubeconfig` writes `DIR/kubeconfig` (cluster, user and context `unistack`, the CA
embedded) for kubectl, the `kubernetes` client and unistack's own controllers.
`load_access` reads a kubeconfig back into the three things the CLI needs to call the API
server (see `apicall`).
"""

from __future__ import annotations

import base64
import csv
import io
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from unistack.cli.statedir import write_private

ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"
CLUSTER_NAME = "unistack"
DEFAULT_HOST = "127.0.0.1"


class KubeconfigError(Exception):
    """The kubeconfig is missing or does not name a server, CA and token."""


@dataclass(frozen=True)
class ApiAccess:
    """How to reach and authenticate to the API server."""

    server: str
    ca_pem: bytes
    token: str


@dataclass(frozen=True)
class StaticToken:
    """One line of a static token file."""

    token: str
    user: str
    uid: str
    groups: tuple[str, ...]


def server_url(port: int, host: str = DEFAULT_HOST) -> str:
    return f"https://{host}:{port}"


def parse_tokens(text: str) -> list[StaticToken]:
    """Parse a static token CSV; lines with fewer than three fields are skipped."""
    entries = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 3 or row[0].startswith("#"):
            continue
        groups = tuple(g for g in row[3].split(",") if g) if len(row) > 3 else ()
        entries.append(StaticToken(row[0].strip(), row[1].strip(), row[2].strip(), groups))
    return entries


def format_token(entry: StaticToken) -> str:
    return f'{entry.token},{entry.user},{entry.uid},"{",".join(entry.groups)}"\n'


def ensure_admin_token(tokens_path: Path) -> str:
    """The admin token from `tokens_path`, generating and appending one on first use."""
    return ensure_token(tokens_path, ADMIN_USER, ADMIN_GROUP)


def ensure_token(tokens_path: Path, user: str, group: str) -> str:
    """The token of `user` in `group` from `tokens_path`, generating and appending one on
    first use (the API server reads the file when it starts)."""
    text = tokens_path.read_text() if tokens_path.exists() else ""
    for entry in parse_tokens(text):
        if entry.user == user and group in entry.groups:
            return entry.token
    made = StaticToken(secrets.token_urlsafe(32), user, str(uuid.uuid4()), (group,))
    if text and not text.endswith("\n"):
        text += "\n"
    write_private(tokens_path, text + format_token(made))
    return made.token


def remove_tokens(tokens_path: Path, users: set[str]) -> list[str]:
    """Drop the lines of `users` from `tokens_path` (their tokens stop working at the API
    server's next start); the users removed."""
    if not tokens_path.exists():
        return []
    entries = parse_tokens(tokens_path.read_text())
    gone = [entry.user for entry in entries if entry.user in users]
    if gone:
        kept = "".join(format_token(entry) for entry in entries if entry.user not in users)
        write_private(tokens_path, kept)
    return gone


def render_kubeconfig(access: ApiAccess) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one (current) context, all `unistack`."""
    ca_data = base64.b64encode(access.ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": access.server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": access.token}}],
        "contexts": [
            {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": ADMIN_USER}}
        ],
        "current-context": CLUSTER_NAME,
    }


def write_kubeconfig(path: Path, access: ApiAccess) -> None:
    """Write the kubeconfig (mode 0600: it holds the admin token)."""
    text = yaml.safe_dump(render_kubeconfig(access), sort_keys=False, default_flow_style=False)
    write_private(path, text)


def load_access(path: Path) -> ApiAccess:
    """Server, CA and token of the current context of the kubeconfig at `path`."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        raise KubeconfigError(f"cannot read {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise KubeconfigError(f"{path} is not valid YAML") from error
    if not isinstance(config, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig")
    context = _named(config, "contexts", config.get("current-context"), "context", path)
    cluster = _named(config, "clusters", context.get("cluster"), "cluster", path)
    user = _named(config, "users", context.get("user"), "user", path)
    return ApiAccess(
        server=_require(cluster, "server", path),
        ca_pem=_ca_pem(cluster, path),
        token=_require(user, "token", path),
    )


def _named(config: dict[str, Any], section: str, name: Any, key: str, path: Path) -> Any:
    for item in config.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(key)
            if isinstance(value, dict):
                return value
    raise KubeconfigError(f"{path}: no {key} named {name!r}")


def _require(section: dict[str, Any], key: str, path: Path) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise KubeconfigError(f"{path}: missing {key}")
    return value


def _ca_pem(cluster: dict[str, Any], path: Path) -> bytes:
    if "certificate-authority-data" in cluster:
        return base64.b64decode(_require(cluster, "certificate-authority-data", path))
    ca_file = Path(_require(cluster, "certificate-authority", path))
    try:
        return (path.parent / ca_file).read_bytes()
    except OSError as error:
        raise KubeconfigError(f"{path}: cannot read CA {ca_file}") from error
