"""The Kubernetes-compatible API server over the store. It imports only `unistack.store`.

- Serving: `app` (the ASGI application: auth, routing, errors, response writing), `server`
  (uvicorn with TLS), `routing` (request paths), `request` and `responses`, `metrics`.
- Resource types: `resources` (declared types and the registry), `kinds` (the built-in
  kinds), `crds` (custom kinds from CustomResourceDefinitions), `bootstrap` (system namespaces, the
  `kubernetes` Service, the default RBAC policy).
- Verbs: `handlers` (get, list, create, update, patch, delete), `watch` (streams),
  `subresources` (scale), `reviews` (access reviews), `paging` (continue tokens).
- Writes: `lifecycle` (server-owned fields, deletion), `identity` (body versus URL),
  `admission` with `validation` and `schema`/`structural`/`formats` (CRD schemas),
  `patch`/`patchkeys` and `apply`/`fieldsets` (patch types, server-side apply).
- Formats: `codec` (JSON and YAML bodies, list documents), `protobuf` and `protobuf_schema*`
  (typed kubectl requests), `tables` (`as=Table`), `discovery`, `openapi`/`builtin_schemas`.
- Reading: `selectors` and `fieldselectors`. Callers: `auth` (bearer tokens, Keystone tokens
  in `keystone`, the authorizer chain), `rbac` (RBAC: rules, the in-memory index, the
  authorizer, escalation prevention, the default policy), `following` (a store prefix kept
  in memory by a watch). Failures: `errors` (Kubernetes Status).
"""
