"""The guest side of the tiny VM image: the scripts its busybox initramfs boots with.

`unistack.images.vmimage` packs these into the initramfs; the image is the same for every
server, and what differs per server comes on the kernel command line, which the qemu driver
(`unistack.dataplane.qemu`) writes as a config drive would:

    unistack.id=<server id> unistack.hostname=<name> unistack.ip=10.0.0.5/24
    unistack.gw=10.0.0.1 unistack.dns=10.0.0.2,10.0.0.3 unistack.mtu=1450

Boot: `/init` mounts proc, sysfs, devtmpfs and devpts, loads the boot modules (virtio, the
ACPI power button and evdev, in dependency order) and hands PID 1 to busybox `init`, whose
`/etc/inittab` runs `/etc/init.d/rcS`: busybox `acpid` first (the power button — QMP
`system_powerdown` — runs `poweroff`), hostname, eth0 statically from `unistack.ip` and
`unistack.gw` or else by `udhcpc`, a route to the metadata service, dropbear when the image
has it, the console line `unistack: instance <id> up, eth0 <ip>`, then in the background a
watcher that prints `unistack: disks vda vdb` whenever the set of virtio disks changes
(hot-plug), then the late modules (ext4) and the ext4 on `/dev/vda` (when there is one) on
`/mnt`, and last, in the background, the metadata service (EC2 paths: instance-id, hostname,
public-keys): no key logs in before the root disk is mounted. A root shell
respawns on ttyS0; Ctrl-Alt-Del (QMP `send-key`) reboots cleanly.

Busybox has neither `sudo` nor `lsblk`, which Tempest's guest checks run (`sudo sh -c ...`,
`lsblk -lb --nodeps`): `/usr/bin/sudo` runs its command as it is (the only login is root),
and `/usr/bin/lsblk` prints the disks of /sys/block in lsblk's columns.

Everything here is text: `guest_files(boot_modules, late_modules, with_dropbear)` decides the
files.
"""

from __future__ import annotations

from dataclasses import dataclass

METADATA_URL = "http://169.254.169.254/latest/meta-data"
UDHCPC_SCRIPT = "/usr/share/udhcpc/default.script"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
SUDO = "/usr/bin/sudo"
LSBLK = "/usr/bin/lsblk"
DROPBEAR = "/usr/sbin/dropbear"
MODULE_DIR = "/lib/modules"
PATH = "/sbin:/bin:/usr/sbin:/usr/bin"


@dataclass(frozen=True)
class GuestFile:
    path: str  # absolute, in the initramfs
    text: str
    mode: int = 0o644


def guest_files(
    boot_modules: tuple[str, ...], late_modules: tuple[str, ...], with_dropbear: bool
) -> list[GuestFile]:
    """The initramfs's own files (besides busybox, the modules and dropbear)."""
    return [
        GuestFile("/init", init_script(boot_modules), 0o755),
        GuestFile("/etc/inittab", INITTAB),
        GuestFile("/etc/init.d/rcS", rc_start(late_modules, with_dropbear), 0o755),
        GuestFile("/etc/init.d/rcK", RC_STOP, 0o755),
        GuestFile(UDHCPC_SCRIPT, UDHCPC_EVENT_SCRIPT, 0o755),
        GuestFile("/etc/acpi/PWRF/00000080", "#!/bin/sh\nexec poweroff\n", 0o755),
        GuestFile(SUDO, SUDO_SCRIPT, 0o755),
        GuestFile(LSBLK, LSBLK_SCRIPT, 0o755),
        GuestFile("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        GuestFile("/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        GuestFile("/etc/group", "root:x:0:\n"),
        GuestFile("/etc/shells", "/bin/sh\n/bin/ash\n"),
        GuestFile("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
        GuestFile("/etc/hosts", "127.0.0.1 localhost\n"),
    ]


def init_script(modules: tuple[str, ...]) -> str:
    """PID 1 until busybox init: the pseudo filesystems and the modules, in this order."""
    lines = [
        "#!/bin/busybox sh",
        "# unistack tiny VM: mount the pseudo filesystems, load the modules, start init",
        f"export PATH={PATH}",
        "mkdir -p /proc /sys /dev /run /tmp /mnt /root /var/run /var/log",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        "mkdir -p /dev/pts && mount -t devpts devpts /dev/pts",
    ]
    lines += load_modules(modules)
    lines.append("exec /sbin/init")
    return "\n".join(lines) + "\n"


def load_modules(modules: tuple[str, ...]) -> list[str]:
    return [
        f"insmod {MODULE_DIR}/{name}.ko || echo 'unistack: insmod {name} failed'"
        for name in modules
    ]


INITTAB = """\
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
"""

RC_STOP = """\
#!/bin/sh
echo "unistack: instance $(hostname) shutting down"
umount /mnt 2>/dev/null
exit 0
"""


def rc_start(late_modules: tuple[str, ...], with_dropbear: bool) -> str:
    """The boot script: the kernel arguments, eth0, the `up` line, then what the `up` line
    need not wait for (the filesystem modules, the root disk), and the keys after the disk."""
    parts = [
        "#!/bin/sh",
        "# unistack tiny VM: configure from the kernel command line, then the metadata service",
        f"export PATH={PATH}",
        KERNEL_ARG,
        ADDRESS_OF,
        metadata_function(),
        WATCH_DISKS,
        "acpid -c /etc/acpi -l /var/log/acpid.log",  # first: a powerdown may come early
        CONFIGURE,
    ]
    if with_dropbear:
        parts.append(f"mkdir -p /etc/dropbear && {DROPBEAR} -R -s -K 60")
    parts += [
        'echo "unistack: instance${ID:+ $ID} up, eth0 $(address_of eth0)"',
        "watch_disks </dev/null >/dev/console 2>&1 &",
        *load_modules(late_modules),
        MOUNT_DISK,
        # the keys last: whoever logs in finds the root disk on /mnt (Tempest keeps files
        # there across reboots, `[scenario] target_dir`)
        "fetch_metadata </dev/null >/dev/console 2>&1 &",
    ]
    return "\n".join(parts) + "\n"


KERNEL_ARG = """\
kernel_arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "unistack.$1="*) echo "${word#*=}"; return ;; esac
    done
}"""

ADDRESS_OF = """\
address_of() {
    set -- $(ip -4 -o addr show dev "$1" 2>/dev/null)
    echo "${4%%/*}"
}"""

CONFIGURE = f"""\
ID=$(kernel_arg id)
ADDRESS=$(kernel_arg ip)
GATEWAY=$(kernel_arg gw)
MTU=$(kernel_arg mtu)
NAME=$(kernel_arg hostname)
hostname "${{NAME:-unistack}}"
ip link set dev lo up
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
ip link set dev eth0 ${{MTU:+mtu $MTU}} up
if [ -n "$ADDRESS" ]; then
    ip addr replace "$ADDRESS" dev eth0
    [ -n "$GATEWAY" ] && ip route replace default via "$GATEWAY" dev eth0
    if [ -n "$GATEWAY" ]; then
        ip route replace 169.254.169.254 via "$GATEWAY" dev eth0
    else
        ip route replace 169.254.169.254 dev eth0
    fi
else
    udhcpc -i eth0 -b -t 5 -T 1 -s {UDHCPC_SCRIPT} -x "hostname:$(hostname)" -O staticroutes
fi
DNS=$(kernel_arg dns)
if [ -n "$DNS" ]; then
    for server in $(echo "$DNS" | tr ',' ' '); do echo "nameserver $server"; done > /etc/resolv.conf
fi"""

MOUNT_DISK = """\
if [ -b /dev/vda ] && mount -t ext4 /dev/vda /mnt 2>/dev/null; then
    echo "unistack: /dev/vda mounted on /mnt"
fi"""

WATCH_DISKS = """\
watch_disks() {
    seen=
    while :; do
        now=$(ls /sys/block | grep '^vd' | tr '\\n' ' ')
        [ "$now" != "$seen" ] && echo "unistack: disks ${now% }"
        seen=$now
        sleep 1
    done
}"""


def metadata_function() -> str:
    """`fetch_metadata`: instance-id (retried while the network settles), hostname, keys."""
    fetch = "timeout 3 wget -q -O -"  # not wget -T: busybox 1.35 segfaults when it fires
    return f"""\
fetch_metadata() {{
    for attempt in 1 2 3 4 5; do
        id=$({fetch} {METADATA_URL}/instance-id 2>/dev/null) && break
        sleep 2
    done
    [ -n "$id" ] || {{ echo "unistack: no metadata service"; return 0; }}
    name=$({fetch} {METADATA_URL}/hostname 2>/dev/null) && hostname "${{name%%.*}}"
    mkdir -p /root/.ssh && chmod 700 /root/.ssh
    for entry in $({fetch} {METADATA_URL}/public-keys/ 2>/dev/null); do
        key=$({fetch} "{METADATA_URL}/public-keys/${{entry%%=*}}/openssh-key") || continue
        grep -qxF "$key" {AUTHORIZED_KEYS} 2>/dev/null || echo "$key" >> {AUTHORIZED_KEYS}
    done
    chmod 600 {AUTHORIZED_KEYS} 2>/dev/null
    echo "unistack: metadata instance-id $id, hostname $(hostname)"
}}"""


SUDO_SCRIPT = """\
#!/bin/sh
# sudo stand-in (busybox has none): root is the only login, so run the command as it is
exec "$@"
"""

# lsblk's columns with TYPE right-aligned, as util-linux prints them: Tempest's `get_disks`
# finds `disk` under the header's TYPE. Options (`-lb --nodeps`) are what this prints anyway.
LSBLK_SCRIPT = """\
#!/bin/sh
# lsblk stand-in (busybox has none): the disks of /sys/block, sizes in bytes
row() { printf '%-8s %7s %2s %12s %2s %4s %s\\n' "$@"; }
row NAME MAJ:MIN RM SIZE RO TYPE MOUNTPOINTS
for block in /sys/block/*; do
    name=${block##*/}
    case "$name" in loop*|ram*) continue ;; esac
    [ -r "$block/dev" ] || continue
    sectors=$(cat "$block/size")
    row "$name" "$(cat "$block/dev")" "$(cat "$block/removable")" "$((sectors * 512))" \\
        "$(cat "$block/ro")" disk ""
done
"""


UDHCPC_EVENT_SCRIPT = """\
#!/bin/sh
# udhcpc event script: apply the lease with ip(8), classless routes (option 121) included
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
bound|renew)
    ip addr replace "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for gateway in $router; do
        ip route replace default via "$gateway" dev "$interface"
        break
    done
    set -- $staticroutes
    while [ $# -ge 2 ]; do
        ip route replace "$1" via "$2" dev "$interface"
        shift 2
    done
    if [ -n "$dns" ]; then
        for server in $dns; do echo "nameserver $server"; done > /etc/resolv.conf
    fi
    ;;
esac
exit 0
"""
