"""`unistack verify tempest`: run OpenStack Tempest against a running unistack cloud.

The steps, in the order `unistack.cli.verify` calls them:

    ensure_tempest(venv)             a virtualenv with Tempest, pinned and cached per machine
    load_cloud(clouds.yaml)          where the cloud is, and the admin credentials
    discover(cloud) -> CloudFacts    Keystone token and catalog, images, flavors, the public
                                     network, network extensions, microversions (plain HTTP)
    init_workspace(tempest, ws)      `tempest init`: it refuses a non-empty directory, so it
                                     runs before the config is written
    write_config(facts, ws)          ws/etc/tempest.conf (pure: facts in, file out)
    run(tempest, ws, regex, n)       `tempest run --subunit` -> ws/results.subunit,
                                     ws/summary.json
    print_summary(summary, console)  a table of passed/failed/skipped per service

The subunit stream is read by `unistack.verify.subunit`. The features a young cloud lacks
are in `FEATURE_FLAGS`, one place to change them.

Instance validation is on when the cloud has a public network: Tempest boots its servers
with a key pair, a security group allowing SSH and ping, and a floating IP, and logs in as
`root` (the container guests run the host's dropbear, `unistack.dataplane.sshd`; the tiny
VM image its own) to check hostnames, vCPUs, disks and reboots from inside.

The scenario tests upload `[scenario] img_file` and boot it. When this machine has built the
tiny VM (`unistack.images.vmimage`) and the cloud offers it, that file is its root disk, the
one `unistack.openstack.image.vmimages` registers as `unistack-vm`: Tempest's copy carries
the registered image's `kernel_id`, `ramdisk_id` and `os_command_line`, so it boots as the
original does, and the timestamps Tempest keeps across reboots go to that disk (`/mnt`).
Without the VM image the section is left out, and Tempest's CirrOS default stays.
"""

from __future__ import annotations

import configparser
import email.message
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from unistack.images import vmimage
from unistack.openstack.image import vmimages
from unistack.verify.subunit import (
    OUTCOME_NAMES,
    Summary,
    decode_subunit,
    final_outcomes,
    summarize,
)

TEMPEST_REQUIREMENTS = ("tempest==47.0.0", "stestr", "python-subunit")
DEFAULT_VENV = Path("~/.cache/unistack/tempest-venv").expanduser()
INSTALLED_MARKER = "unistack-requirements.txt"
CONFIG_FILE = Path("etc/tempest.conf")
RESULTS_FILE = "results.subunit"
SUMMARY_FILE = "summary.json"
HTTP_TIMEOUT = 30.0
BUILD_TIMEOUT = 300
PROJECT_NETWORK_CIDR = "10.100.0.0/16"
SSH_USER = "root"  # the built-in images' only login (busybox, the tiny VM)
SSH_TIMEOUT = 180
SSH_CONNECT_TIMEOUT = 30
# the tiny VM's root disk is mounted there (`unistack.images.vminit`); its / is a RAM disk
VM_PERSISTENT_DIR = "/mnt"
VM_RAM_MB = 512  # the least memory the tiny VM is booted with (m1.tiny)
# what boots the VM's root disk, copied from the registered image to Tempest's upload of it
VM_BOOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line")

# Feature flags per [*-feature-enabled] section: what a young cloud does not do yet. Tempest
# skips the tests of a disabled feature instead of failing them.
FEATURE_FLAGS: dict[str, dict[str, bool]] = {
    "identity-feature-enabled": {
        "api_v2": False,
        "api_v2_admin": False,
        "api_v3": True,
        "trust": True,
        "access_rules": False,
        "security_compliance": False,
        "domain_specific_drivers": False,
    },
    "compute-feature-enabled": {
        "live_migration": False,
        "block_migration_for_live_migration": False,
        # a disk carried between hosts' agents (`agent.diskmove`); Tempest runs its tests
        # when min_compute_nodes (the hypervisors up) says there are two
        "cold_migration": True,
        "resize": True,
        "shelve": True,
        "shelve_migrate": False,
        "suspend": True,
        "pause": True,
        "rescue": True,
        # the rescue image's hw_rescue_device and hw_rescue_bus (2.87): every disk kept
        "stable_rescue": True,
        "snapshot": True,
        "interface_attach": True,
        "attach_encrypted_volume": False,
        # served (`dataplane.configdrive`), but Tempest mounts the drive in the guest, which a
        # system container (no CAP_SYS_ADMIN) cannot, and the default image is one
        "config_drive": False,
        "metadata_service": True,  # 169.254.169.254, from every guest
        "hostname_fqdn_sanitization": True,  # `a.b.c` boots as hostname `a-b-c`
        # served (a container's root password, `dataplane.injection`) and Tempest's test of it
        # passes, but it moves the class's one validation floating IP to its own server
        # (`_setup_validation_fip`), so the class's next SSH checks (test_reboot_server_hard)
        # find nobody there; DevStack leaves it off too
        "change_password": False,
        "enable_instance_password": False,
        "personality": True,  # injected at the first boot, and in the metadata
        "swap_volume": False,
        "volume_multiattach": False,  # on with a multiattach volume type (`_multiattach_type`)
        "vnc_console": False,
        "spice_console": False,
        "serial_console": False,
        "console_output": True,
    },
    "image-feature-enabled": {
        "api_v2": True,
        "import_image": True,
        "manage_locations": False,
        "os_glance_reserved": True,
        "image_format_enforcement": False,  # data is stored as given, not inspected
    },
    "volume-feature-enabled": {
        "backup": True,  # backups are registry artifacts (unistack.agent.backupstore)
        "snapshot": True,
        "clone": True,
        "manage_snapshot": False,
        "manage_volume": False,
        "extend_attached_volume": True,  # the guest sees the new size (volume-extended)
    },
    "network-feature-enabled": {
        "ipv6": True,  # IPv6 subnets, SLAAC and address modes are served (API only)
        "port_security": True,
        "ipv6_subnet_attributes": True,
    },
}

# The scheduler filters whose hints Tempest may use: its own defaults, and the hints the
# scheduler honours besides (`iaas.compute.scheduler`), as DevStack lists them.
SCHEDULER_FILTERS = (
    "AvailabilityZoneFilter",
    "ComputeFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
    "SameHostFilter",
    "DifferentHostFilter",
)

# Catalog types, in order of preference, for each service Tempest knows by its project name.
SERVICE_TYPES: dict[str, tuple[str, ...]] = {
    "keystone": ("identity",),
    "nova": ("compute",),
    "glance": ("image",),
    "neutron": ("network",),
    "cinder": ("block-storage", "volumev3", "volume"),
}


class VerifyError(Exception):
    """The cloud or its configuration cannot be verified; the message says why."""


# --- the Tempest virtualenv -----------------------------------------------------------------


def ensure_tempest(venv: Path = DEFAULT_VENV) -> Path:
    """A virtualenv at `venv` with `TEMPEST_REQUIREMENTS`; returns its `tempest` executable.

    Quick when already there: a marker file records what was installed, and a change of the
    pinned requirements reinstalls into the same virtualenv.
    """
    tempest = venv / "bin" / "tempest"
    marker = venv / INSTALLED_MARKER
    wanted = "\n".join(TEMPEST_REQUIREMENTS) + "\n"
    if tempest.exists() and marker.exists() and marker.read_text() == wanted:
        return tempest
    if not (venv / "bin" / "python").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *TEMPEST_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return tempest


# --- the cloud: clouds.yaml and discovery ---------------------------------------------------


@dataclass(frozen=True)
class CloudAccess:
    """One cloud of a clouds.yaml: Keystone's URL and the admin's password credentials."""

    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: str = "RegionOne"

    @property
    def identity_v3(self) -> str:
        """The Keystone v3 root, whether `auth_url` names it or the unversioned root."""
        url = self.auth_url.rstrip("/")
        return url if url.endswith("/v3") else f"{url}/v3"


def load_cloud(path: Path, name: str = "unistack") -> CloudAccess:
    try:
        clouds = yaml.safe_load(path.read_text()) or {}
        cloud = clouds["clouds"][name]
        auth = cloud["auth"]
        return CloudAccess(
            auth_url=auth["auth_url"],
            username=auth["username"],
            password=auth["password"],
            project_name=auth["project_name"],
            user_domain_name=auth.get("user_domain_name", "Default"),
            project_domain_name=auth.get("project_domain_name", "Default"),
            region_name=cloud.get("region_name", "RegionOne"),
        )
    except OSError as error:
        raise VerifyError(f"cannot read {path}: {error.strerror}") from error
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise VerifyError(f"{path} has no usable cloud {name!r}: {error!r}") from error


@dataclass(frozen=True)
class Microversions:
    minimum: str
    maximum: str


@dataclass(frozen=True)
class Network:
    id: str
    name: str


@dataclass(frozen=True)
class ScenarioImage:
    """The file Tempest's scenario tests upload, as the cloud registered it."""

    file: Path
    disk_format: str
    container_format: str
    properties: Mapping[str, str]
    image_id: str = ""  # the registered image, which `vm_servers` boots Tempest's servers from


@dataclass(frozen=True)
class CloudFacts:
    """What Tempest's configuration needs to know about one running cloud."""

    access: CloudAccess
    catalog_types: Mapping[str, str]  # Tempest's service name -> the type in the catalog
    images: tuple[str, ...] = ()  # ids of active images
    flavors: tuple[str, ...] = ()  # ids, smallest first
    public_network: Network | None = None
    network_extensions: tuple[str, ...] | None = None  # None: not discovered, assume all
    compute_microversions: Microversions | None = None
    volume_microversions: Microversions | None = None
    multiattach_type: str | None = None  # a volume type whose volumes attach to many servers
    compute_nodes: int = 1  # hypervisors enabled and up: Tempest's min_compute_nodes
    scenario_image: ScenarioImage | None = None  # None: Tempest's default img_file
    vm_flavors: tuple[str, ...] = ()  # the flavors the tiny VM boots with, smallest first

    def available(self, service: str) -> bool:
        return service in self.catalog_types


@dataclass(frozen=True)
class Token:
    value: str
    project_id: str
    endpoints: Mapping[str, str]  # catalog type -> public URL


def discover(cloud: CloudAccess, vm_image_dir: Path | None = None) -> CloudFacts:
    """Ask the running cloud, as its admin, for everything `write_config` needs; the tiny
    VM's files, when built, are looked for in `vm_image_dir` (`vmimage.machine_dir()`)."""
    try:
        return _discover(cloud, vm_image_dir)
    except (KeyError, TypeError, AttributeError) as error:
        raise VerifyError(f"the cloud answered without an expected field: {error!r}") from error


def _discover(cloud: CloudAccess, vm_image_dir: Path | None) -> CloudFacts:
    token = authenticate(cloud)
    catalog_types = _catalog_types(token.endpoints)
    compute = _versioned_compute(token.endpoints.get("compute"))
    flavors = _smallest_flavors(token, compute) if compute else []
    image = token.endpoints.get("image")
    network = token.endpoints.get("network")
    volume = token.endpoints.get(catalog_types.get("cinder", ""))
    return CloudFacts(
        access=cloud,
        catalog_types=catalog_types,
        images=_active_images(token, image) if image else (),
        flavors=tuple(f["id"] for f in flavors),
        vm_flavors=tuple(f["id"] for f in flavors if int(f.get("ram") or 0) >= VM_RAM_MB),
        public_network=_public_network(token, network) if network else None,
        network_extensions=_network_extensions(token, network) if network else None,
        compute_microversions=_microversions(token, _unscoped(compute, token)) if compute else None,
        volume_microversions=_microversions(token, _unscoped(volume, token)) if volume else None,
        multiattach_type=_multiattach_type(token, volume) if volume else None,
        compute_nodes=_compute_nodes(token, compute) if compute else 1,
        scenario_image=_vm_image(token, image, vm_image_dir) if image and vm_image_dir else None,
    )


MULTIATTACH_TYPE = "multiattach"
MULTIATTACH_SPEC = "<is> True"


def _multiattach_type(token: Token, volume: str) -> str:
    """The name of a volume type with `multiattach="<is> True"`, made when there is none, as
    DevStack makes its `multiattach` type for Tempest."""
    _, body = _http("GET", f"{volume}/types?is_public=None", token.value)
    for vtype in body.get("volume_types") or []:
        if (vtype.get("extra_specs") or {}).get("multiattach") == MULTIATTACH_SPEC:
            return str(vtype["name"])
    wanted = {"name": MULTIATTACH_TYPE, "extra_specs": {"multiattach": MULTIATTACH_SPEC}}
    _, made = _http("POST", f"{volume}/types", token.value, {"volume_type": wanted})
    return str(made["volume_type"]["name"])


def authenticate(cloud: CloudAccess) -> Token:
    """A project-scoped token for the cloud's user, with the catalog's public endpoints."""
    user = {
        "name": cloud.username,
        "password": cloud.password,
        "domain": {"name": cloud.user_domain_name},
    }
    project = {"name": cloud.project_name, "domain": {"name": cloud.project_domain_name}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project},
        }
    }
    headers, reply = _http("POST", f"{cloud.identity_v3}/auth/tokens", body=body)
    token = headers.get("X-Subject-Token")
    if not token:
        raise VerifyError("Keystone issued no X-Subject-Token")
    catalog = reply["token"].get("catalog", [])
    project_id = reply["token"].get("project", {}).get("id", "")
    return Token(token, project_id, _public_endpoints(catalog, cloud.region_name))


def _public_endpoints(catalog: list[dict[str, Any]], region: str) -> dict[str, str]:
    endpoints = {}
    for service in catalog:
        public = [e for e in service.get("endpoints", []) if e.get("interface") == "public"]
        in_region = [e for e in public if region in (e.get("region"), e.get("region_id"))]
        chosen = in_region or public
        if chosen:
            endpoints[service["type"]] = chosen[0]["url"].rstrip("/")
    return endpoints


def _catalog_types(endpoints: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for service, types in SERVICE_TYPES.items():
        present = [t for t in types if t in endpoints]
        if present:
            found[service] = present[0]
    return found


def _active_images(token: Token, image: str) -> tuple[str, ...]:
    """Active public images: every test project can boot them (an admin's list also shows
    private images of projects earlier runs left behind, which others cannot use)."""
    url = f"{_unversioned(image)}/v2/images?visibility=public&status=active&sort=name:asc"
    _, reply = _http("GET", url, token.value)
    return tuple(i["id"] for i in reply.get("images", []) if i.get("status") == "active")


def _vm_image(token: Token, image: str, vm_image_dir: Path) -> ScenarioImage | None:
    """The tiny VM's root disk on this machine, with the formats and boot properties the
    cloud registered it with; None when it is not built here or the cloud does not offer it."""
    disk = vm_image_dir / vmimage.DISK
    if not disk.is_file():
        return None
    query = f"name={vmimages.NAME}&visibility=public&status=active"
    _, reply = _http("GET", f"{_unversioned(image)}/v2/images?{query}", token.value)
    bootable = [i for i in reply.get("images", []) if i.get("kernel_id")]
    if not bootable:
        return None
    registered = bootable[0]
    properties = {key: str(registered[key]) for key in VM_BOOT_PROPERTIES if registered.get(key)}
    formats = (str(registered["disk_format"]), str(registered["container_format"]))
    return ScenarioImage(disk, *formats, properties, str(registered["id"]))


def _smallest_flavors(token: Token, compute: str) -> list[dict[str, Any]]:
    _, reply = _http("GET", f"{compute}/flavors/detail", token.value)
    return sorted(reply.get("flavors", []), key=lambda f: (f["ram"], f["vcpus"], f["disk"]))


def _compute_nodes(token: Token, compute: str) -> int:
    """How many hypervisors take servers now (enabled and up); at least one."""
    _, reply = _http("GET", f"{compute}/os-hypervisors/detail", token.value)
    hypervisors = reply.get("hypervisors", [])
    up = [h for h in hypervisors if h.get("state") == "up" and h.get("status") == "enabled"]
    return max(1, len(up))


def _public_network(token: Token, network: str) -> Network | None:
    url = f"{_unversioned(network)}/v2.0/networks?router:external=true"
    _, reply = _http("GET", url, token.value)
    networks = reply.get("networks", [])
    return Network(networks[0]["id"], networks[0].get("name", "")) if networks else None


def _network_extensions(token: Token, network: str) -> tuple[str, ...] | None:
    try:
        _, reply = _http("GET", f"{_unversioned(network)}/v2.0/extensions", token.value)
    except VerifyError:
        return None
    return tuple(sorted(e["alias"] for e in reply.get("extensions", [])))


def _microversions(token: Token, root: str) -> Microversions | None:
    """The microversion range of the newest entry of a version document at `root`."""
    _, reply = _http("GET", f"{root}/", token.value)
    versions = [v for v in _version_entries(reply) if v.get("version")]
    if not versions:
        return None
    newest = max(versions, key=lambda v: _version_key(v["version"]))
    return Microversions(newest.get("min_version") or newest["version"], newest["version"])


def _version_entries(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The entries of any of the three shapes of an OpenStack version document."""
    if isinstance(document.get("version"), dict):
        return [document["version"]]
    versions = document.get("versions", [])
    return list(versions.get("values", []) if isinstance(versions, dict) else versions)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _versioned_compute(url: str | None) -> str | None:
    """Nova's endpoint is catalogued as `.../v2.1`; an unversioned one gets it appended."""
    if url is None or re.search(r"/v2(\.1)?(/[0-9a-f]+)?$", url):
        return url
    return f"{url}/v2.1"


def _unversioned(url: str) -> str:
    """`http://h/image/v2` -> `http://h/image`; an unversioned URL is returned as it is."""
    return re.sub(r"/v\d+(\.\d+)?$", "", url)


def _unscoped(url: str, token: Token) -> str:
    """A block-storage endpoint without its `/{project_id}` suffix: the version root."""
    suffix = f"/{token.project_id}"
    return url.removesuffix(suffix) if token.project_id else url


def _http(
    method: str, url: str, token: str | None = None, body: Any = None
) -> tuple[email.message.Message, dict[str, Any]]:
    """One JSON call; the headers are looked up without regard to case."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise VerifyError(f"{method} {url}: {error.code} {error.read()[:200]!r}") from error
    except (urllib.error.URLError, OSError) as error:
        raise VerifyError(f"{method} {url}: {error}") from error
    except ValueError as error:
        raise VerifyError(f"{method} {url}: the reply is not JSON") from error


# --- the Tempest workspace and its configuration --------------------------------------------


def init_workspace(tempest: Path, workspace: Path) -> None:
    """`tempest init` once. Tempest's registry of workspace names goes to a scratch file: a
    name left in `~/.tempest/workspace.yaml` would make the next init of that name fail."""
    if (workspace / ".stestr.conf").exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        registry = str(Path(scratch) / "workspace.yaml")
        command = [str(tempest), "init", "--workspace-path", registry, str(workspace)]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise VerifyError(f"tempest init {workspace} failed: {done.stderr.strip()[-500:]}")


def write_config(facts: CloudFacts, workspace: Path, vm_servers: bool = False) -> Path:
    path = workspace / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as stream:
        tempest_config(facts, workspace, vm_servers).write(stream)
    path.chmod(0o600)  # it holds the admin password
    return path


def tempest_config(
    facts: CloudFacts, workspace: Path, vm_servers: bool = False
) -> configparser.ConfigParser:
    """Tempest's configuration for the cloud. `vm_servers`: Tempest's servers boot the tiny
    VM (QEMU) instead of the first public image (a system container), so what only a VM does
    is tested too: with two hosts up, live migration."""
    config = configparser.ConfigParser(interpolation=None)
    sections = {
        "DEFAULT": {"log_dir": str(workspace / "logs"), "log_file": "tempest.log"},
        "oslo_concurrency": {"lock_path": str(workspace / "tempest_lock")},
        "auth": _auth_section(facts.access),
        "identity": _identity_section(facts.access),
        "service_available": _services_section(facts),
        "compute": _compute_section(facts),
        "validation": _validation_section(facts),
        "network": _network_section(facts),
        "volume": _volume_section(facts),
    }
    for name, flags in FEATURE_FLAGS.items():
        sections[name] = {key: str(value).lower() for key, value in flags.items()}
    sections["network-feature-enabled"].update(_network_features(facts))
    # the metadata's hostname is the server's alone (Nova appends its dhcp_domain, novalocal)
    sections["compute-feature-enabled"]["dhcp_domain"] = ""
    multiattach = "true" if facts.multiattach_type else "false"
    sections["compute-feature-enabled"]["volume_multiattach"] = multiattach
    sections["compute-feature-enabled"]["scheduler_enabled_filters"] = ",".join(SCHEDULER_FILTERS)
    if facts.scenario_image:
        sections["scenario"] = _scenario_section(facts.scenario_image)
    if vm_servers:
        if facts.scenario_image is None or not facts.vm_flavors:
            raise VerifyError("the tiny VM image is not built here or not offered by the cloud")
        sections["compute"].update(_vm_servers(facts.scenario_image, facts.vm_flavors))
        moving = str(facts.compute_nodes >= 2).lower()  # a VM moves live between two hosts
        sections["compute-feature-enabled"].update(
            live_migration=moving,
            block_migration_for_live_migration=moving,
            volume_backed_live_migration=moving,
        )
    config.read_dict(sections)
    return config


def _auth_section(access: CloudAccess) -> dict[str, str]:
    return {
        "use_dynamic_credentials": "true",
        "admin_username": access.username,
        "admin_password": access.password,
        "admin_project_name": access.project_name,
        "admin_domain_name": access.user_domain_name,
    }


def _identity_section(access: CloudAccess) -> dict[str, str]:
    return {"uri_v3": access.identity_v3, "auth_version": "v3", "region": access.region_name}


def _services_section(facts: CloudFacts) -> dict[str, str]:
    available = {name: str(facts.available(name)).lower() for name in SERVICE_TYPES}
    del available["keystone"]  # Tempest has no switch for identity: it is always there
    return {**available, "swift": "false"}


def _compute_section(facts: CloudFacts) -> dict[str, str]:
    section = {
        "image_ref": _first(facts.images),
        "image_ref_alt": _second(facts.images),
        "flavor_ref": _first(facts.flavors),
        "flavor_ref_alt": _second(facts.flavors),
        "build_timeout": str(BUILD_TIMEOUT),
        "region": facts.access.region_name,
        "min_compute_nodes": str(facts.compute_nodes),
    }
    return section | _microversion_keys(facts.compute_microversions)


def _vm_servers(image: ScenarioImage, flavors: tuple[str, ...]) -> dict[str, str]:
    return {
        "image_ref": image.image_id,
        "image_ref_alt": image.image_id,
        "flavor_ref": _first(flavors),
        "flavor_ref_alt": _second(flavors),
    }


def _network_section(facts: CloudFacts) -> dict[str, str]:
    section = {"project_network_cidr": PROJECT_NETWORK_CIDR, "region": facts.access.region_name}
    if facts.public_network:
        section["public_network_id"] = facts.public_network.id
        section["floating_network_name"] = facts.public_network.name
    return section


def _validation_section(facts: CloudFacts) -> dict[str, str]:
    """SSH into every validatable server through a floating IP of the public network."""
    if facts.public_network is None:
        return {"run_validation": "false"}  # no floating IPs: the guests cannot be reached
    return {
        "run_validation": "true",
        "connect_method": "floating",
        "auth_method": "keypair",
        "ssh_key_type": "ecdsa",
        "security_group": "true",
        "security_group_rules": "true",
        "image_ssh_user": SSH_USER,
        "image_alt_ssh_user": SSH_USER,
        "ssh_timeout": str(SSH_TIMEOUT),
        "connect_timeout": str(SSH_CONNECT_TIMEOUT),
        "ping_timeout": str(SSH_TIMEOUT),
        "network_for_ssh": facts.public_network.name,
        "ip_version_for_ssh": "4",
    }


def _scenario_section(image: ScenarioImage) -> dict[str, str]:
    return {
        "img_file": str(image.file),
        "img_disk_format": image.disk_format,
        "img_container_format": image.container_format,
        "img_properties": dict_option(image.properties),
        "target_dir": VM_PERSISTENT_DIR,
    }


def dict_option(values: Mapping[str, str]) -> str:
    """An oslo.config dict option's text, `key:value,key:value`.

    oslo splits the text at commas (joining a piece back only when it has no colon), each
    pair at its first colon, and strips both sides: a value with a comma, or with spaces at
    an end, may not come back as it was, so it is left out. (Compute boots a root disk that
    has no `os_command_line` with the VM image's own, `qemuargs.DEFAULT_KERNEL_ARGS`.)
    """
    pairs = [
        f"{key}:{value}"
        for key, value in values.items()
        if "," not in value and value == value.strip() and not set(key) & set(",: ")
    ]
    return ",".join(pairs)


def _network_features(facts: CloudFacts) -> dict[str, str]:
    features = {"floating_ips": str(facts.public_network is not None).lower()}
    if facts.network_extensions is not None:
        features["api_extensions"] = ",".join(facts.network_extensions)
    return features


def _volume_section(facts: CloudFacts) -> dict[str, str]:
    section = {
        "catalog_type": facts.catalog_types.get("cinder", "block-storage"),
        "region": facts.access.region_name,
        "build_timeout": str(BUILD_TIMEOUT),
        # what our one volume backend reports (types' extra specs in Tempest name them)
        "storage_protocol": "fake",
        "vendor_name": "unistack",
        "backend_names": "fake-backend",
    }
    if facts.multiattach_type:
        section["volume_type_multiattach"] = facts.multiattach_type
    return section | _microversion_keys(facts.volume_microversions)


def _microversion_keys(versions: Microversions | None) -> dict[str, str]:
    if versions is None:
        return {}  # unset: Tempest skips the microversioned tests
    return {"min_microversion": versions.minimum, "max_microversion": versions.maximum}


def _first(ids: tuple[str, ...]) -> str:
    return ids[0] if ids else ""


def _second(ids: tuple[str, ...]) -> str:
    return ids[1] if len(ids) > 1 else _first(ids)


# --- running Tempest and reading its subunit stream -----------------------------------------


def run(tempest: Path, workspace: Path, regex: str, concurrency: int) -> Summary:
    """`tempest run` in an initialised, configured workspace; the stream and summary are saved
    next to it. Tempest's exit code is not an error: the summary says what failed."""
    results = workspace / RESULTS_FILE
    command = [str(tempest), "run", "--config-file", str(workspace / CONFIG_FILE)]
    command += ["--regex", regex, "--concurrency", str(concurrency), "--subunit"]
    with results.open("wb") as stream:
        subprocess.run(command, cwd=workspace, stdout=stream, check=False)
    summary = summarize(final_outcomes(decode_subunit(results.read_bytes())))
    (workspace / SUMMARY_FILE).write_text(json.dumps(summary.as_json(), indent=2) + "\n")
    return summary


FAILURES_SHOWN = 20


def print_summary(summary: Summary, console: Console) -> None:
    table = Table(title="Tempest")
    table.add_column("service")
    for name in OUTCOME_NAMES:
        table.add_column(name, justify="right")
    for service, counts in summary.by_service.items():
        table.add_row(service, *(str(counts[name]) for name in OUTCOME_NAMES))
    table.add_section()
    table.add_row("total", str(summary.passed), str(summary.failed), str(summary.skipped))
    console.print(table)
    for test_id in summary.failures[:FAILURES_SHOWN]:
        console.print(f"[red]FAILED[/] {test_id}", highlight=False)
    if len(summary.failures) > FAILURES_SHOWN:
        console.print(f"... and {len(summary.failures) - FAILURES_SHOWN} more failures")
