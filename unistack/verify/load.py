"""A Rally-style load on a running cloud: OpenStack and Kubernetes calls in a loop.

`unistack chaos` and `unistack verify` run this while they kill parts of the control plane,
to count what clients would have seen. Each worker thread goes round the scenarios, each
named as Rally names its own (`NovaFlavors.list_flavors`,
`NeutronNetworks.create_and_delete_networks`, ...); every HTTP call is one `Sample` (its
atomic action, when it started, how long it took, whether it succeeded). A call fails on a
transport error or a status other than the one the API documents; a create that fails leaves
its scenario there, and `Load.cleanup` deletes what the load made (names start with
`unistack-load-`) when it stops.

Calls go over `http.client` with a kept-alive connection per worker and endpoint, as a real
client library would (openstacksdk's requests session, client-go's transport), not a new
TCP connection per call; a connection that failed is dropped and made again. The standard
library is enough here: a few hundred calls a second from threads, no async needed, and the
CLI stays free of an HTTP client dependency for it.
"""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PREFIX = "unistack-load-"
KUBE_NAMESPACE = "default"
LOAD_LABEL = "unistack.io/load"


class LoadError(Exception):
    """A call that did not succeed; the message says which and why."""


@dataclass(frozen=True)
class Cloud:
    """Where the load goes and as whom."""

    openstack_url: str  # the gateway, e.g. http://127.0.0.1:8080
    username: str
    password: str
    project: str
    kube_server: str  # https://host:port
    kube_ca_pem: bytes
    kube_token: str
    domain: str = "default"


@dataclass(frozen=True)
class Sample:
    action: str  # e.g. "neutron.create_network"
    started: float  # time.monotonic()
    seconds: float
    error: str = ""  # empty when the call succeeded

    @property
    def ok(self) -> bool:
        return not self.error


class Http:
    """Kept-alive connections of one worker, one per scheme://host:port."""

    def __init__(self, ca_pem: bytes | None = None, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self.context = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
        self.connections: dict[str, http.client.HTTPConnection] = {}

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str, str]:
        """The kept connection to the URL's server, its key, and the path to ask for."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        connection = self.connections.get(key)
        if connection is None:
            host, port = parts.hostname or "127.0.0.1", parts.port
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=self.context
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self.connections[key] = connection
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return connection, key, path

    def call(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        connection, key, path = self._connection(url)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", **headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.connections.pop(key, None)
            raise
        if response.getheader("connection", "").lower() == "close":
            connection.close()
        return response.status, payload, response

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


@dataclass
class Session:
    """One worker: its connections, its token, and where its samples go."""

    cloud: Cloud
    record: Callable[[Sample], None]
    http: Http = field(init=False)
    token: str = ""
    project_id: str = ""

    def __post_init__(self) -> None:
        self.http = Http(self.cloud.kube_ca_pem)

    def call(
        self,
        action: str,
        method: str,
        url: str,
        expect: tuple[int, ...],
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Make one call, record it, and return its JSON body; raise LoadError on failure."""
        started = time.monotonic()
        error = ""
        try:
            status, payload, _ = self.http.call(method, url, headers or {}, body)
            if status not in expect:
                error = f"{method} {urlsplit(url).path}: {status} {payload[:160]!r}"
        except (OSError, http.client.HTTPException) as failure:
            error = f"{method} {urlsplit(url).path}: {type(failure).__name__}: {failure}"
            payload = b""
        self.record(Sample(action, started, time.monotonic() - started, error))
        if error:
            raise LoadError(error)
        return json.loads(payload) if payload else None

    def openstack(
        self, action: str, method: str, path: str, expect: tuple[int, ...], body: Any = None
    ) -> Any:
        if not self.token:
            self.authenticate()
        headers = {"X-Auth-Token": self.token}
        return self.call(action, method, self.cloud.openstack_url + path, expect, body, headers)

    def kube(
        self, action: str, method: str, path: str, expect: tuple[int, ...], body: Any = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.cloud.kube_token}"}
        return self.call(action, method, self.cloud.kube_server + path, expect, body, headers)

    def authenticate(self) -> None:
        """A project-scoped token (Rally's `Authenticate.keystone`), once per worker."""
        cloud = self.cloud
        domain = {"id": cloud.domain}
        user = {"name": cloud.username, "domain": domain, "password": cloud.password}
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"name": cloud.project, "domain": domain}},
            }
        }
        url = f"{cloud.openstack_url}/identity/v3/auth/tokens"
        started = time.monotonic()
        try:
            status, payload, response = self.http.call("POST", url, {}, body)
        except (OSError, http.client.HTTPException) as failure:
            status, payload, response = 0, str(failure).encode(), None
        error = (
            "" if status == 201 else f"POST /identity/v3/auth/tokens: {status} {payload[:160]!r}"
        )
        self.record(Sample("keystone.authenticate", started, time.monotonic() - started, error))
        if error or response is None:
            raise LoadError(error)
        self.token = response.getheader("X-Subject-Token", "")
        self.project_id = json.loads(payload)["token"]["project"]["id"]


# --- scenarios ------------------------------------------------------------------------------
# Each takes a session and a unique suffix; each HTTP call is an atomic action.

Scenario = Callable[[Session, str], None]


def list_flavors(session: Session, _: str) -> None:
    session.openstack("nova.list_flavors", "GET", "/compute/v2.1/flavors/detail", (200,))


def list_images(session: Session, _: str) -> None:
    session.openstack("glance.list_images", "GET", "/image/v2/images", (200,))


def list_projects(session: Session, _: str) -> None:
    session.openstack("keystone.list_projects", "GET", "/identity/v3/projects", (200,))


def list_volume_types(session: Session, _: str) -> None:
    if not session.token:
        session.authenticate()  # the path needs the project's id
    path = f"/volume/v3/{session.project_id}/types"
    session.openstack("cinder.list_types", "GET", path, (200,))


def create_and_delete_network(session: Session, suffix: str) -> None:
    body = {"network": {"name": f"{PREFIX}{suffix}"}}
    made = session.openstack(
        "neutron.create_network", "POST", "/network/v2.0/networks", (201,), body
    )
    path = f"/network/v2.0/networks/{made['network']['id']}"
    session.openstack("neutron.delete_network", "DELETE", path, (204,))


def create_and_delete_configmap(session: Session, suffix: str) -> None:
    name = f"{PREFIX}{suffix}"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {LOAD_LABEL: "true"}},
        "data": {"suffix": suffix},
    }
    path = f"/api/v1/namespaces/{KUBE_NAMESPACE}/configmaps"
    session.kube("kube.create_configmap", "POST", path, (201,), body)
    session.kube("kube.delete_configmap", "DELETE", f"{path}/{name}", (200, 202))


def list_pods(session: Session, _: str) -> None:
    session.kube("kube.list_pods", "GET", "/api/v1/pods?limit=100", (200,))


SCENARIOS: dict[str, Scenario] = {
    "NovaFlavors.list_flavors": list_flavors,
    "GlanceImages.list_images": list_images,
    "KeystoneBasic.list_projects": list_projects,
    "CinderVolumeTypes.list_types": list_volume_types,
    "NeutronNetworks.create_and_delete_networks": create_and_delete_network,
    "Kubernetes.create_and_delete_configmap": create_and_delete_configmap,
    "Kubernetes.list_pods": list_pods,
}


# --- running and summing up -----------------------------------------------------------------


@dataclass(frozen=True)
class ActionStats:
    action: str
    sent: int
    failed: int
    p50: float
    p95: float


def stats(samples: list[Sample]) -> list[ActionStats]:
    """Per atomic action: calls, failures and latency percentiles, sorted by action."""
    by_action: dict[str, list[Sample]] = {}
    for sample in samples:
        by_action.setdefault(sample.action, []).append(sample)
    rows = []
    for action, group in sorted(by_action.items()):
        seconds = sorted(s.seconds for s in group)
        rows.append(
            ActionStats(
                action,
                len(group),
                sum(1 for s in group if not s.ok),
                statistics.median(seconds),
                seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))],
            )
        )
    return rows


class Load:
    """`workers` threads running the scenarios round-robin until stopped; a context manager."""

    def __init__(
        self, cloud: Cloud, workers: int = 4, scenarios: dict[str, Scenario] | None = None
    ) -> None:
        self.cloud = cloud
        self.workers = workers
        self.scenarios = scenarios or SCENARIOS
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.counter = itertools.count()

    def record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def snapshot(self) -> list[Sample]:
        with self.lock:
            return list(self.samples)

    def _work(self, index: int) -> None:
        session = Session(self.cloud, self.record)
        order = list(self.scenarios.values())
        scenarios: Iterator[Scenario] = itertools.cycle(order[index % len(order) :] + order)
        try:
            while not self.stopping.is_set():
                scenario = next(scenarios)
                try:
                    scenario(session, f"{index}-{next(self.counter)}")
                except LoadError:
                    if not session.token:
                        self.stopping.wait(0.2)  # no token yet: keystone is down
                except (KeyError, ValueError, TypeError) as error:  # an answer of the wrong shape
                    self.record(Sample("load.answer", time.monotonic(), 0.0, repr(error)))
        finally:
            session.http.close()

    def start(self) -> Load:
        self.threads = [
            threading.Thread(target=self._work, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()

    def cleanup(self) -> None:
        """Delete what the load made and a failed scenario left behind (best effort)."""
        records: list[Sample] = []
        session = Session(self.cloud, records.append)
        try:
            networks = session.openstack("cleanup", "GET", "/network/v2.0/networks", (200,))
            for network in networks["networks"]:
                if str(network.get("name", "")).startswith(PREFIX):
                    path = f"/network/v2.0/networks/{network['id']}"
                    session.openstack("cleanup", "DELETE", path, (204, 404))
            path = f"/api/v1/namespaces/{KUBE_NAMESPACE}/configmaps?labelSelector={LOAD_LABEL}"
            session.kube("cleanup", "DELETE", path, (200,))
        except LoadError:
            pass
        finally:
            session.http.close()
