"""unistack: a converged private cloud.

One declarative control plane serving an OpenStack-compatible IaaS and a Kubernetes-compatible
orchestrator over one revisioned store. See ../shared/DESIGN.md for the layers; imports point
down only (enforced by import-linter, see pyproject.toml).
"""

__version__ = "0.1.0"
