"""Kubernetes RBAC, enforced: who may do what, from Roles, ClusterRoles and their bindings.

The kinds themselves (validation, tables) are `unistack.apiserver.kinds.rbac`. Here:
`rules` (pure: what a policy rule allows, what a set of rules covers), `index` (the RBAC
objects in memory, and which rules apply to a user in a namespace), `authorizer` (the
`auth.Authorizer` over that index, kept in step with the store), `escalation` (the write hook
that stops anyone granting what they do not hold) and `policy` (the default roles and
bindings `bootstrap` creates). ClusterRole aggregation is a controller,
`unistack.kube.clusterroleaggregation`, as upstream's is.
"""
