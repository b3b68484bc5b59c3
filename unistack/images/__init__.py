"""OCI images: the content store, the registry API, the built-in images and the node-side puller.

This package is a low layer that imports nothing else from `unistack`:

- `reference` parses image names the way Docker does (`busybox` -> `library/busybox:latest`).
- `digests` computes and checks `sha256:<hex>` content digests.
- `oci` holds media types, manifest parsing and the host platform.
- `store` is the content-addressed blob store with named references (also used for VM images).
- `registry` serves the store as an OCI distribution (registry v2) HTTP API.
- `build` writes the built-in images (busybox) into the store, offline and deterministically.
- `pull` fetches images from a registry and unpacks layers for overlayfs (the node agent's side).
- `unpack` turns one layer tar into a directory, with OCI whiteouts in overlayfs form.
"""
