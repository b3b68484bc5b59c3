# unistack: `make up` runs it, `make test` tests it. See README.md.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages unistack needs at run time: runc runs pods and system-container servers,
# skopeo pushes images, busybox-static is the built-in busybox image and the VM's userland,
# nftables and iproute2 do pod and tenant networking, xfsprogs makes the volume pool (reflinks),
# qemu-system-x86 and qemu-utils run VM servers and their qcow2 disks, dropbear-bin is the VM's
# SSH server (and container servers', lent as copies patchelf points at the lent loader),
# e2fsprogs makes its root disk, dnsmasq-base serves DHCP on tenant networks,
# haproxy is the gateway in front of the self-hosted API pods, curl goes into the built-in
# busybox guest image (a guest reads its metadata with it, as cirros's does), and Tempest's
# scenario tests run `ping` on the host to check floating IPs (iputils-ping); radvd sends
# a router's IPv6 advertisements on its subnets (SLAAC, DHCPv6 flags), as Neutron's L3 agent.
APT_PACKAGES := runc skopeo busybox-static nftables iproute2 xfsprogs qemu-system-x86 \
	qemu-utils dropbear-bin e2fsprogs dnsmasq-base haproxy curl patchelf genisoimage \
	iputils-ping radvd
# The built-in VM image (kernel from Debian's package, busybox initramfs, qcow2 root disk), built
# once per machine; `unistack up` offers it as the `unistack-vm` image.
VM_IMAGE := $(HOME)/.cache/unistack/vm

.PHONY: install apt up down status test e2e lint bench tempest clean

install: apt $(STAMP) $(VM_IMAGE)/manifest.json

$(VM_IMAGE)/manifest.json: | $(STAMP)
	$(BIN)/python -m unistack.images.vmimage $(VM_IMAGE)

# Installs only missing packages, and only as root; `apt-get update` runs once, if needed.
apt:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
	  dpkg -s "$$package" >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "missing Debian packages:$$missing (run 'make install' as root)" >&2; exit 1; \
	  fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@

up: install
	$(BIN)/unistack up

down:
	@if [ -x $(BIN)/unistack ]; then $(BIN)/unistack down; else echo "not installed, nothing to stop"; fi

status: install
	$(BIN)/unistack status

# Every unit and integration test and a representative slice of each real-client suite;
# the longer end-to-end scenarios (marked `deep`) run in `make e2e`.
test: lint
	$(BIN)/pytest -q --durations=15 -m "not deep" tests/

# The whole end-to-end suite, the deep scenarios included (these add about 10 minutes).
e2e: install
	$(BIN)/pytest -q --durations=15 tests/e2e/

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m bench

# Against the running `unistack up` (default state dir): Tempest in its own virtualenv.
tempest: install
	$(BIN)/unistack verify tempest --regex '^tempest\.api\.(identity|compute|image|network|volume)'


clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache .import_linter_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
