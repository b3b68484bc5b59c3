"""A representative slice of Tempest against `unistack up`, through `unistack verify tempest`.

`make tempest` runs every API test of the five services; this slice (about 110 tests:
projects, users, roles, tokens and application credentials; server create and keypairs;
image upload and sharing; routers; volumes) keeps `make test` quick. Tempest is
installed once per machine into its own virtualenv; without network access to PyPI on a
machine that has not got it yet, the test skips and says so.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import Cluster
from unistack.verify import tempest

pytestmark = pytest.mark.e2e

# Projects acting as domains (is_domain) are not built yet: docs/tempest.md lists the gaps.
SLICE = (
    r"^(?!.*test_create_is_domain_project)tempest\.api\."
    r"(identity\.(admin\.v3\.test_(projects|users|roles|tokens|groups|domains)"
    r"|v3\.test_(tokens|application_credentials|users|projects))"
    r"|compute\.(servers\.test_create_server|keypairs\.test_keypairs(_negative)?)"
    r"|image\.v2\.(test_images_member|test_images\.BasicOperationsImagesTest)"
    r"|network\.test_routers"
    r"|volume\.test_volumes_get)\."
)


def test_tempest_slice_of_every_service_passes(cluster: Cluster) -> None:
    try:
        tempest.ensure_tempest()
    except (OSError, subprocess.CalledProcessError, tempest.VerifyError) as exc:
        pytest.skip(f"Tempest could not be installed here: {exc}")
    workspace = cluster.state_dir / "tempest"
    result = cluster.unistack(
        "verify",
        "tempest",
        "--regex",
        SLICE,
        "--concurrency",
        "2",
        "--workspace",
        str(workspace),
        timeout=600,
    )
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["failed"] == 0, f"{summary['failures']}\n{result.stdout[-3000:]}"
    assert summary["passed"] >= 90, summary
    assert set(summary["by_service"]) == {"identity", "compute", "image", "network", "volume"}
