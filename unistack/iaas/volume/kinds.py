"""The block-storage kinds (group `volume.unistack.io`), all namespaced per project.

`Volume` and `VolumeSnapshot` keep the OpenStack attributes in `spec` and the lifecycle
(`status`, what the backend provisioned) in `status`; `VolumeAttachment` is one attachment of
a volume to an instance (the attachments API and the classic attach flow share it);
`VolumeType` lives in the shared namespace (no project owns a type); `VolumeQuota` holds a
project's quota overrides (named by the project id); `VolumeMessage` is a user message
about a failed operation (Cinder's messages API), written by the controller;
`VolumeService` what an admin set on a service (disabled, frozen); `VolumeQosSpec` a QoS
specification types refer to (shared, like types); `VolumeGroupType`, `VolumeGroup` and
`VolumeGroupSnapshot` are Cinder's generic volume groups (a group's volumes carry its id).
`VolumeTransfer` offers a volume to another project (accepting moves the volume object,
and its snapshots, into the acceptor's namespace; the old objects let go of the finalizer
first, so the backend keeps the data). `VolumeBackup` is a copy of a volume (or of one of its
snapshots) kept off the pool, in the registry, so that it outlives the volume; its spec
remembers what a restore gives the new volume back (metadata, bootability), its status the
lifecycle and, while `restoring`, the volume it is restored into. The facade
(`unistack.openstack.volume`) writes intent, the controller provisions.
"""

from __future__ import annotations

from unistack.iaas.crds import Kind

GROUP = "volume.unistack.io"
FINALIZER = "volume.unistack.io/backend"

VOLUMES = Kind(
    GROUP,
    "Volume",
    "volumes",
    namespaced=True,
    short_names=("vol",),
    columns=(("Display-Name", ".spec.name"), ("Size", ".spec.size"), ("Status", ".status.status")),
)
SNAPSHOTS = Kind(
    GROUP,
    "VolumeSnapshot",
    "volumesnapshots",
    namespaced=True,
    columns=(
        ("Display-Name", ".spec.name"),
        ("Volume", ".spec.volume_id"),
        ("Status", ".status.status"),
    ),
)
ATTACHMENTS = Kind(
    GROUP,
    "VolumeAttachment",
    "volumeattachments",
    namespaced=True,
    columns=(
        ("Volume", ".spec.volume_id"),
        ("Instance", ".spec.instance_uuid"),
        ("Status", ".spec.status"),
    ),
)
TYPES = Kind(GROUP, "VolumeType", "volumetypes", namespaced=True)
QUOTAS = Kind(GROUP, "VolumeQuota", "volumequotas", namespaced=True, columns=())
MESSAGES = Kind(
    GROUP,
    "VolumeMessage",
    "volumemessages",
    namespaced=True,
    columns=(("Resource", ".spec.resource_uuid"), ("Message", ".spec.user_message")),
)

SERVICES = Kind(
    GROUP,
    "VolumeService",
    "volumeservices",
    namespaced=True,
    columns=(("Binary", ".spec.binary"), ("Host", ".spec.host")),
)

QOS_SPECS = Kind(GROUP, "VolumeQosSpec", "volumeqosspecs", namespaced=True)

GROUP_TYPES = Kind(GROUP, "VolumeGroupType", "volumegrouptypes", namespaced=True)
GROUPS = Kind(
    GROUP,
    "VolumeGroup",
    "volumegroups",
    namespaced=True,
    columns=(("Display-Name", ".spec.name"), ("Status", ".status.status")),
)
GROUP_SNAPSHOTS = Kind(
    GROUP,
    "VolumeGroupSnapshot",
    "volumegroupsnapshots",
    namespaced=True,
    columns=(("Display-Name", ".spec.name"), ("Group", ".spec.group_id")),
)

TRANSFERS = Kind(
    GROUP,
    "VolumeTransfer",
    "volumetransfers",
    namespaced=True,
    columns=(("Display-Name", ".spec.name"), ("Volume", ".spec.volume_id")),
)

BACKUPS = Kind(
    GROUP,
    "VolumeBackup",
    "volumebackups",
    namespaced=True,
    columns=(
        ("Display-Name", ".spec.name"),
        ("Volume", ".spec.volume_id"),
        ("Status", ".status.status"),
    ),
)

ALL = (
    TRANSFERS,
    BACKUPS,
    VOLUMES,
    SNAPSHOTS,
    ATTACHMENTS,
    TYPES,
    QUOTAS,
    MESSAGES,
    SERVICES,
    QOS_SPECS,
    GROUP_TYPES,
    GROUPS,
    GROUP_SNAPSHOTS,
)
