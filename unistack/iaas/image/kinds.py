"""The image kind, group `image.unistack.io`, in the owner project's namespace.

`metadata.name` is the Glance id (a dashed UUID). `spec` holds what users set: name, formats,
visibility, protected, os_hidden, min_disk/min_ram, tags, `properties` (the free-form string
properties Glance shows at the top level) and `members` (project id → status and times).
`status` holds what the data says: Glance's `status` (queued, saving, uploading, importing,
active, deactivated, killed), size, checksum (MD5), the multihash (SHA-512) and `digest`, the
sha256 of the blob in the image store that holds the data.

A task (Glance's `POST /v2/tasks`) is a `Task` in the namespace of the project that made it:
`spec` holds the request (type, input) and who asked; `status` its progress (pending,
processing, success, failure), result, message and `expires_at`, after which it is deleted.
"""

from __future__ import annotations

from unistack.iaas.crds import Kind

GROUP = "image.unistack.io"

IMAGES = Kind(
    GROUP,
    "Image",
    "images",
    namespaced=True,
    columns=(
        ("Display-Name", ".spec.name"),
        ("Status", ".status.status"),
        ("Visibility", ".spec.visibility"),
        ("Size", ".status.size"),
    ),
)

# Glance's metadata definitions: one object per namespace (cluster-wide: a namespace's name is
# unique in the cloud), its objects, properties, tags and resource type associations in spec.
METADEF_NAMESPACES = Kind(
    GROUP,
    "MetadefNamespace",
    "metadefnamespaces",
    columns=(("Namespace", ".spec.namespace"), ("Visibility", ".spec.visibility")),
)

TASKS = Kind(
    GROUP,
    "Task",
    "tasks",
    namespaced=True,
    columns=(("Type", ".spec.type"), ("Status", ".status.status")),
)

ALL = (IMAGES, METADEF_NAMESPACES, TASKS)
