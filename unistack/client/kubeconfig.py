"""Read a kubeconfig file into an `HttpTransport`: the current context's server, CA and user.

Supports what `unistack up` writes and what kubectl's own files commonly hold: the server URL,
`certificate-authority` (file, relative to the kubeconfig) or `certificate-authority-data`
(base64 PEM), `insecure-skip-tls-verify`, `tls-server-name`, and a user with a `token`,
`tokenFile`, or a client certificate (file or data). Exec and auth-provider plugins are not
supported. Used by the controller entrypoint (`unistack.kube.main`, which also publishes the
context's CA to every namespace) and by the CLI.

Inside a pod, `in_cluster` reads the ServiceAccount's configuration as client-go's
`rest.InClusterConfig` does: the API server from `KUBERNETES_SERVICE_HOST`/`_PORT`, the token
and `ca.crt` from the mounted secret directory, and the pod's namespace. `load` falls back to
it when no path is given and no kubeconfig file exists, as client-go's default loading rules
do. A token from a file (`tokenFile`, the pod's projected token) is read again every minute
(`transport.TokenFile`), so the token the node agent rotates is used without a restart.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from unistack.client.transport import HttpTransport, TokenFile, tls_context

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"


class KubeconfigError(Exception):
    pass


class NotInCluster(KubeconfigError):
    """No in-cluster configuration: not in a pod, or its service-account token is absent."""


@dataclass(frozen=True, slots=True)
class KubeconfigContext:
    """The parts of one context a client needs."""

    server: str
    namespace: str
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    insecure: bool = False
    server_hostname: str | None = None
    token_file: str | None = None  # where `token` was read from; read again as it rotates

    def transport(self) -> HttpTransport:
        ssl_context = None
        if self.server.startswith("https:"):
            ssl_context = tls_context(
                ca_file=self.ca_file,
                ca_data=self.ca_data,
                client_cert=self.client_cert,
                client_key=self.client_key,
                client_cert_data=self.client_cert_data,
                client_key_data=self.client_key_data,
                insecure=self.insecure,
            )
        return HttpTransport(
            self.server,
            token=TokenFile(self.token_file) if self.token_file else self.token,
            ssl_context=ssl_context,
            server_hostname=self.server_hostname,
        )

    def certificate_authority(self) -> str | None:
        """The PEM of the CA trusted for the server (the data, else the file's), or None when
        the server is plain HTTP or the context names no CA of its own."""
        if not self.server.startswith("https:"):
            return None
        if self.ca_data:
            return self.ca_data.decode()
        if self.ca_file:
            with open(self.ca_file) as f:
                return f.read()
        return None


def default_path() -> str:
    """`$KUBECONFIG` (its first entry) or `~/.kube/config`."""
    env = os.environ.get("KUBECONFIG", "")
    first = env.split(os.pathsep)[0] if env else ""
    return first or os.path.expanduser("~/.kube/config")


def _named(entries: list[dict[str, Any]] | None, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return dict(entry.get(what) or {})
    raise KubeconfigError(f"no {what} named {name!r}")


def _file(base: str, path: str | None) -> str | None:
    if not path:
        return None
    return path if os.path.isabs(path) else os.path.join(base, path)


def _data(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


def _token(user: dict[str, Any], base: str) -> str | None:
    if user.get("token"):
        return str(user["token"])
    token_file = _file(base, user.get("tokenFile"))
    if token_file:
        with open(token_file) as f:
            return f.read().strip()
    return None


def parse(config: dict[str, Any], base_dir: str, context: str | None = None) -> KubeconfigContext:
    """The named (or current) context of a parsed kubeconfig document."""
    name = context or config.get("current-context")
    if not name:
        raise KubeconfigError("no current-context")
    ctx = _named(config.get("contexts"), name, "context")
    cluster = _named(config.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(config.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")
    return KubeconfigContext(
        server=cluster["server"],
        namespace=ctx.get("namespace") or "default",
        token=_token(user, base_dir),
        token_file=None if user.get("token") else _file(base_dir, user.get("tokenFile")),
        ca_file=_file(base_dir, cluster.get("certificate-authority")),
        ca_data=_data(cluster.get("certificate-authority-data")),
        client_cert=_file(base_dir, user.get("client-certificate")),
        client_key=_file(base_dir, user.get("client-key")),
        client_cert_data=_data(user.get("client-certificate-data")),
        client_key_data=_data(user.get("client-key-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        server_hostname=cluster.get("tls-server-name"),
    )


def in_cluster_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a pod (the kubelet sets both variables)."""
    env = os.environ if environ is None else environ
    return bool(env.get(SERVICE_HOST_ENV) and env.get(SERVICE_PORT_ENV))


def _server_url(host: str, port: str) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def in_cluster(
    secret_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
) -> KubeconfigContext:
    """The pod's ServiceAccount configuration; `NotInCluster` outside a pod."""
    env = os.environ if environ is None else environ
    if not in_cluster_environment(env):
        raise NotInCluster(f"{SERVICE_HOST_ENV} and {SERVICE_PORT_ENV} must be set in a pod")
    try:
        with open(os.path.join(secret_dir, "token")) as f:
            token = f.read().strip()
    except OSError as error:
        raise NotInCluster(f"no service-account token: {error}") from error
    ca_file = os.path.join(secret_dir, "ca.crt")
    return KubeconfigContext(
        server=_server_url(env[SERVICE_HOST_ENV], env[SERVICE_PORT_ENV]),
        namespace=_pod_namespace(secret_dir),
        token=token or None,
        ca_file=ca_file if os.path.isfile(ca_file) else None,
        token_file=os.path.join(secret_dir, "token"),
    )


def _pod_namespace(secret_dir: str) -> str:
    try:
        with open(os.path.join(secret_dir, "namespace")) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def load(
    path: str | None = None,
    context: str | None = None,
    *,
    secret_dir: str = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeconfigContext:
    """The named (or current) context of the kubeconfig file at `path`; without a path, the
    default file, or the in-cluster configuration when there is none and this is a pod."""
    if not path:
        path = default_path()
        if not os.path.exists(path) and in_cluster_environment(environ):
            return in_cluster(secret_dir, environ)
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    return parse(config, os.path.dirname(os.path.abspath(path)), context)


def load_transport(path: str | None = None, context: str | None = None) -> HttpTransport:
    """An `HttpTransport` for the kubeconfig's current (or named) context."""
    return load(path, context).transport()
