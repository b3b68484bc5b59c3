"""The IaaS kinds and their controllers, one subpackage per service (DESIGN.md section 2).

Every IaaS resource is an object in a `*.unistack.io/v1` group, served as a CRD so the same
objects work on a real Kubernetes cluster. Services do not import each other; what they share
(declaring and installing their CRDs) is in `unistack.iaas.crds`.
"""
