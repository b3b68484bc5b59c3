"""Who each part of the control plane is to the API server: a ServiceAccount, a ClusterRole
with the verbs that part uses and nothing more, and the binding between them, per component.

The same objects serve both homes of the control plane. `unistack manifests` prints them for a
real cluster; on one machine the bootstrap publishes them (`cli.selfhost`) before the
operator renders the pods, and every control-plane pod calls the API server with its own
ServiceAccount's token (the projected `kube-api-access-*` volume, read again as the agent
rotates it), not with the administrator's. A pod that goes beyond its part is refused with
kube's 403, and `kubectl auth can-i --as system:serviceaccount:unistack-system:unistack-api`
answers what each part may do.

The parts: `api` (the OpenStack APIs and their services' controllers), `controllers` (the
Kubernetes controllers, the scheduler and the control-plane operator, which act on every kind
as kube-controller-manager does), `gateway` (HAProxy following the API Services), `dns`
(cluster DNS following Services and EndpointSlices) and `agent` (the host agent, a DaemonSet
on a real cluster; on one machine it runs beside the API server as the node's own process,
calling it as the node, `system:node:<name>`, with the same rules: `node_policy`).

On one machine the supervisor's own processes (the API server's first clients: the
controllers, which publish and operate the pods; the gateway and registry standing in until
their pods are Ready; and, without pods, the OpenStack APIs and cluster DNS) are no more the
administrator than the pods are: each has a user of its own in the API server's token file
(`system:unistack:<part>`, `SUPERVISED`), bound by the API server's default policy to its
part's ClusterRole (`bootstrap_policy`), as kube-controller-manager and kube-scheduler have
their own users and roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unistack.client.kubeconfig import SERVICE_ACCOUNT_DIR
from unistack.iaas.compute import kinds as compute_kinds
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds as identity_kinds
from unistack.iaas.image import kinds as image_kinds
from unistack.iaas.network import kinds as network_kinds
from unistack.iaas.volume import kinds as volume_kinds

Obj = dict[str, Any]

PART_OF = {"app.kubernetes.io/part-of": "unistack"}
IAAS_KINDS: tuple[Kind, ...] = (
    *identity_kinds.ALL,
    *image_kinds.ALL,
    *network_kinds.ALL,
    *volume_kinds.ALL,
    *compute_kinds.ALL,
)

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")
EVERY_VERB = (*READ, *WRITE, "deletecollection")
# the node proxy, by HTTP method: GET get, POST create, PUT update, PATCH patch, DELETE delete
PROXY_VERBS = ("get", *WRITE)


@dataclass(frozen=True)
class Rule:
    """One PolicyRule of a ClusterRole."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def to_json(self) -> Obj:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


@dataclass(frozen=True)
class Component:
    """A process of the control plane: its ServiceAccount, ClusterRole and binding share
    `account` as their name."""

    name: str
    rules: tuple[Rule, ...]

    @property
    def account(self) -> str:
        return f"unistack-{self.name}"


def iaas_groups() -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.group for k in IAAS_KINDS))


_LEASES = Rule(("coordination.k8s.io",), ("leases",), (*READ, "create", "update"))
_EVENTS = Rule(("",), ("events",), ("create", "patch", "update"))

COMPONENTS: tuple[Component, ...] = (
    # The OpenStack APIs: their kinds (and the controllers of each service, run under a
    # Lease), the CRDs they install at start, project namespaces, Nodes (hypervisors), and
    # the agents' instance and volume routes behind the node proxy.
    Component(
        "api",
        (
            Rule(iaas_groups(), ("*",), EVERY_VERB),
            Rule(("apiextensions.k8s.io",), ("customresourcedefinitions",), (*READ, "create")),
            Rule(("",), ("namespaces",), (*READ, "create")),
            Rule(("",), ("nodes",), (*READ, "patch")),
            Rule(("",), ("nodes/proxy",), PROXY_VERBS),
            _LEASES,
            _EVENTS,
        ),
    ),
    # The garbage collector and namespace controller act on every kind the API serves, the
    # workload controllers and scheduler on pods and their owners: as kube-controller-manager.
    # The ClusterRole aggregation controller writes rules it need not hold itself (admin,
    # edit, view gather every role labelled for them): `escalate`, as upstream's has.
    Component(
        "controllers",
        (
            Rule(("*",), ("*",), EVERY_VERB),
            Rule(("rbac.authorization.k8s.io",), ("clusterroles",), ("escalate",)),
        ),
    ),
    # HAProxy's configuration follows the gateway Services and their Endpoints.
    Component("gateway", (Rule(("",), ("services", "endpoints"), READ),)),
    # Cluster DNS answers from every Service and its EndpointSlices.
    Component(
        "dns",
        (
            Rule(("",), ("services",), READ),
            Rule(("discovery.k8s.io",), ("endpointslices",), READ),
        ),
    ),
    # The host agent: its Node and Lease, the pods bound to it and what they mount (their
    # service-account tokens too), Services for the proxy rules and the containers'
    # environment, and the instances, ports and volumes it plumbs on its host.
    Component(
        "agent",
        (
            Rule(("",), ("nodes", "nodes/status"), (*READ, "create", "update", "patch")),
            Rule(("",), ("pods",), (*READ, "delete")),
            Rule(("",), ("pods/status",), ("get", "update", "patch")),
            Rule(("",), ("configmaps", "secrets", "persistentvolumeclaims"), ("get",)),
            Rule(("",), ("persistentvolumes",), ("get",)),
            Rule(("",), ("serviceaccounts/token",), ("create",)),
            Rule(("",), ("services", "endpoints"), READ),
            Rule(("discovery.k8s.io",), ("endpointslices",), READ),
            Rule(iaas_groups(), ("*",), (*READ, *WRITE)),
            _LEASES,
            _EVENTS,
        ),
    ),
)
# The components that run as the control plane's pods (the agent is the node's own).
IN_PODS = ("api", "controllers", "gateway", "dns")

# Roles only the supervisor's processes need. A stand-in (the bootstrap gateway or
# registry) serves while no pod of its part is Ready; cluster DNS without pods publishes the
# kube-dns Service and its own EndpointSlice, as the operator does for the DNS pods.
STAND_IN = Component("stand-in", (Rule(("",), ("pods",), READ),))
DNS_PUBLISHER = Component(
    "dns-publisher",
    (
        Rule(("",), ("services",), ("create",)),
        Rule(("discovery.k8s.io",), ("endpointslices",), ("create", "update")),
    ),
)
SUPERVISED_GROUP = "system:unistack:supervised"
SUPERVISED_USER_PREFIX = "system:unistack:"


def component(name: str) -> Component:
    return next(c for c in COMPONENTS if c.name == name)


# The supervisor's processes (`cli.launch`) and the roles of each.
SUPERVISED: dict[str, tuple[Component, ...]] = {
    "controllers": (component("controllers"),),
    "openstack": (component("api"),),
    "dns": (component("dns"), DNS_PUBLISHER),
    "gateway": (component("gateway"), STAND_IN),
    "registry": (STAND_IN,),
}


def service_accounts(names: tuple[str, ...]) -> dict[str, str]:
    """Component name → its ServiceAccount's, for the pods `render` makes."""
    return {name: component(name).account for name in names}


def pod_kubeconfig(namespace: str, server: str) -> Obj:
    """The kubeconfig a control-plane pod mounts: the API server at `server`, and the pod's
    own ServiceAccount token and CA where the agent (or a kubelet) projects them, the token
    read again as it rotates; every process takes a kubeconfig path, in a pod or not."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "in-cluster",
                "cluster": {
                    "server": server,
                    "certificate-authority": f"{SERVICE_ACCOUNT_DIR}/ca.crt",
                },
            }
        ],
        "users": [
            {"name": "serviceaccount", "user": {"tokenFile": f"{SERVICE_ACCOUNT_DIR}/token"}}
        ],
        "contexts": [
            {
                "name": "in-cluster",
                "context": {
                    "cluster": "in-cluster",
                    "user": "serviceaccount",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "in-cluster",
    }


NODE_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def node_user(node: str) -> str:
    """The user a host's agent is on one machine: kube's node identity."""
    return NODE_USER_PREFIX + node


def node_policy() -> list[Obj]:
    """The agent's ClusterRole bound to every node identity (group system:nodes), which the
    API server creates, and reconciles at every start, with its default policy: the agents
    on one machine call it as `system:node:<name>` (the API server's NodeRestriction keeps
    each to its own Node, Lease and pods), as kubelets do with the Node authorizer."""
    agent = component("agent")
    nodes = {"apiGroup": RBAC_GROUP, "kind": "Group", "name": NODE_GROUP}
    return [
        cluster_role(agent, AUTOUPDATE),
        cluster_role_binding(f"{agent.account}-nodes", agent, [nodes], AUTOUPDATE),
    ]


def supervised_user(part: str) -> str:
    """The user the supervisor's process `part` (a key of `SUPERVISED`) is to the API
    server on one machine."""
    if part not in SUPERVISED:
        raise KeyError(f"no supervised part {part!r}")
    return SUPERVISED_USER_PREFIX + part


def bootstrap_policy() -> list[Obj]:
    """The RBAC the API server creates, and reconciles at every start, before any client
    calls it on one machine: `node_policy`, and each supervised part's roles bound to its
    user (`supervised_user`)."""
    users: dict[Component, list[str]] = {}
    for part, roles in SUPERVISED.items():
        for role in roles:
            users.setdefault(role, []).append(supervised_user(part))
    objects = node_policy()
    for role, names in users.items():
        subjects = [{"apiGroup": RBAC_GROUP, "kind": "User", "name": name} for name in names]
        name = f"{role.account}-supervised"
        objects += [
            cluster_role(role, AUTOUPDATE),
            cluster_role_binding(name, role, subjects, AUTOUPDATE),
        ]
    return objects


def meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    found: Obj = {"name": name}
    if namespace is not None:
        found["namespace"] = namespace
    found["labels"] = {**PART_OF, **(labels or {})}
    return found


RBAC_GROUP = "rbac.authorization.k8s.io"


def cluster_role(c: Component, annotations: dict[str, str] | None = None) -> Obj:
    """The component's ClusterRole: its rules, named after its account."""
    metadata = meta(c.account) | ({"annotations": dict(annotations)} if annotations else {})
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": [rule.to_json() for rule in c.rules],
    }


def cluster_role_binding(
    name: str, c: Component, subjects: list[Obj], annotations: dict[str, str] | None = None
) -> Obj:
    """A ClusterRoleBinding `name` of the component's ClusterRole to `subjects`."""
    metadata = meta(name) | ({"annotations": dict(annotations)} if annotations else {})
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": c.account},
        "subjects": list(subjects),
    }


def rbac(namespace: str, names: tuple[str, ...] | None = None) -> list[Obj]:
    """A ServiceAccount, ClusterRole and ClusterRoleBinding per component (of `names`, or
    every one)."""
    objects: list[Obj] = []
    for c in COMPONENTS:
        if names is not None and c.name not in names:
            continue
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(c.account, namespace),
        }
        subject = {"kind": "ServiceAccount", "name": c.account, "namespace": namespace}
        objects += [account, cluster_role(c), cluster_role_binding(c.account, c, [subject])]
    return objects
