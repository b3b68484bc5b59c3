"""The state directory: the one place `unistack up` writes to.

Every other CLI module asks a `StateDir` for its paths instead of joining strings itself, so the
layout is written down once:

    DIR/pki/{ca,apiserver}.{crt,key}   TLS (see `pki`)
    DIR/tokens.csv                      static bearer tokens (see `kubeconfig`)
    DIR/kubeconfig                      admin kubeconfig
    DIR/store.db                        the SQLite store
    DIR/settings.json                   what `up` was asked for (port, driver)
    DIR/supervisor.pid                  the running supervisor (see `supervisor`)
    DIR/logs/<name>.log                 one log per supervised process
    DIR/agent/                          the node agent: pods, runc state, IPAM, unpacked layers
    DIR/agent.token                     the bearer token the agent wants from the API server
    DIR/images/                         the image store the registry (:5000) serves
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "state"
STATE_DIR_ENV = "UNISTACK_STATE_DIR"


def default_state_dir() -> str:
    """`$UNISTACK_STATE_DIR` if set, else `./state`."""
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


@dataclass(frozen=True)
class StateDir:
    """Paths inside one state directory (always absolute)."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> StateDir:
        return cls(Path(path).expanduser().resolve())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.pki / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.pki / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        """Signs service-account tokens (kube's `sa.key`)."""
        return self.pki / "sa.key"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.csv"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def store_db(self) -> Path:
        return self.root / "store.db"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def agent(self) -> Path:
        return self.root / "agent"

    @property
    def agent_token(self) -> Path:
        return self.root / "agent.token"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def volumes(self) -> Path:
        """The local-path provisioner's volumes, one directory each."""
        return self.root / "volumes"

    @property
    def fernet_keys(self) -> Path:
        return self.root / "fernet-keys"

    @property
    def admin_password(self) -> Path:
        return self.root / "admin-password"

    @property
    def clouds_yaml(self) -> Path:
        return self.root / "clouds.yaml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        """Create the directory tree (idempotent); the root is private to its owner."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.pki.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)

    def save_settings(self, settings: dict[str, Any]) -> None:
        write_private(self.settings, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    def load_settings(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.settings.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}


def write_private(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    """Write a file atomically (temp file + rename) with `mode` from the first byte on."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(fd, mode)
        stream.write(data)
        stream.flush()
        os.fsync(fd)
    os.replace(tmp, path)
