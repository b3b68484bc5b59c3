"""The Kubernetes-compatible API server over the store.

Modules: `resources` (declared resource types and the registry), `kinds` (the built-in kinds),
`errors` (Status errors), `routing` (request paths), `handlers` (the verbs), `watch`
(streams), `patch` and `apply` (patch types and server-side apply), `selectors`, `tables`,
`validation` and `schema` (admission), `discovery` and `openapi`, `crds`, `auth`, `app` (the
ASGI application) and `server` (uvicorn with TLS). It imports only `unistack.store`.
"""
