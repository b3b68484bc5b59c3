"""Request metrics in Prometheus form, named as kube-apiserver names them.

`apiserver_request_duration_seconds` (by verb, group, resource, subresource, scope) and
`apiserver_request_total` (by verb, group, resource, subresource, code) are what the
Kubernetes API call latency SLO is measured with; `apiserver_registered_watchers` counts open
watches (a leak shows there first). `GET /metrics` exposes them. Long-running
requests (watch) are counted but not timed, as upstream does. Each ApiServer has its own
registry, so several servers in one process (tests) keep separate figures.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from unistack.apiserver import routing

# kube-apiserver's buckets, with finer ones below 25 ms where unistack's targets are.
_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
)
_LABELS = ("verb", "group", "resource", "subresource", "scope")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestMetrics:
    def __init__(self, watcher_count: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if watcher_count is not None:
            watchers = Gauge(
                "apiserver_registered_watchers",
                "Number of currently registered watchers.",
                registry=self.registry,
            )
            watchers.set_function(lambda: float(watcher_count()))
        self.duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, resource.",
            _LABELS,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.total = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests by verb, group, resource and HTTP response code.",
            ("verb", "group", "resource", "subresource", "code"),
            registry=self.registry,
        )

    def observe(self, method: str, path: str, watch: bool, code: int, seconds: float) -> None:
        parsed = routing.parse(path)
        if isinstance(parsed, routing.ResourcePath):
            verb = parsed.verb(method, watch).upper()
            group, resource = parsed.group, parsed.resource
            subresource = parsed.subresource or ""
            scope = _scope(parsed)
        else:
            verb, group, resource, subresource, scope = method.upper(), "", "", "", ""
        self.total.labels(verb, group, resource, subresource, str(code)).inc()
        if verb != "WATCH":
            self.duration.labels(verb, group, resource, subresource, scope).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _scope(parsed: routing.ResourcePath) -> str:
    if parsed.name is not None:
        return "resource"
    return "namespace" if parsed.namespace is not None else "cluster"
