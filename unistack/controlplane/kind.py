"""The `ControlPlane` kind (group `controlplane.unistack.io`): one object says what the
self-hosted control plane should be, as Mirantis Rockoon's OpenStackDeployment does.

`spec.release` is the version every service runs (the image tag), `spec.size` a preset
(`single`, `small`, `ha`, see `presets`) and `spec.services.<name>` per-service overrides
(`replicas`, `resources`). The operator (`operator`) writes `status`: each service's
ready/desired replicas, the release it runs, and the upgrade in progress.

Unlike the IaaS kinds, whose specs the OpenStack facades validate, this CRD carries a
structural schema, so the API server itself rejects a bad size or a negative replica count
with a Kubernetes `Status`, and `unistack manifests` ships the same definition.
"""

from __future__ import annotations

from typing import Any

from unistack.client.resources import ResourceRef

Obj = dict[str, Any]

GROUP = "controlplane.unistack.io"
VERSION = "v1alpha1"
KIND = "ControlPlane"
PLURAL = "controlplanes"
NAMESPACE = "unistack-system"
NAME = "unistack"
SIZES = ("single", "small", "ha")

REF = ResourceRef(GROUP, VERSION, PLURAL, True, KIND)

_QUANTITY: Obj = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
_RESOURCES: Obj = {
    "type": "object",
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_OVERRIDE: Obj = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer", "minimum": 0, "maximum": 20},
        "resources": _RESOURCES,
    },
}
_SPEC: Obj = {
    "type": "object",
    "required": ["release"],
    "properties": {
        "release": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
        "size": {"type": "string", "enum": list(SIZES), "default": "single"},
        "services": {"type": "object", "additionalProperties": _OVERRIDE},
    },
}
_STATUS: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def definition() -> Obj:
    """The CustomResourceDefinition, with its schema, status subresource and columns."""
    columns = [
        {"name": "Release", "type": "string", "jsonPath": ".spec.release"},
        {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    schema = {"type": "object", "properties": {"spec": _SPEC, "status": _STATUS}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": KIND.lower(),
                "listKind": f"{KIND}List",
                "shortNames": ["cp"],
                "categories": ["unistack"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def new(release: str, size: str = "single") -> Obj:
    """The object `unistack up` creates."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"release": release, "size": size},
    }
