"""What authorising a volume writes on the storage host: an NFS export line or an iSCSI
target definition, one file per volume, owned by the plugin.

* NFS (``export = nfs``): the volume is mounted at ``<export_root>/<vg>/<lv>`` and exported
  to the machine's IP address alone by ``<exports_dir>/qrm-<vg>@<lv>.exports`` (one line;
  ``exportfs -ra`` afterwards when the host has it). The machine mounts
  ``<server>:<export_root>/<vg>/<lv>``.
* iSCSI (``export = iscsi``): ``<iscsi_config_dir>/qrm-<vg>@<lv>.conf``, a tgt target
  ``<iqn_prefix>:<vg>.<lv>`` backed by the volume that admits only the machine's initiator
  name (``<iqn_prefix>:initiator.<its MAC, hex digits only>``) and, when known, its IP
  address (``tgt-admin --update`` afterwards when the host has it).

Revoking (``authenticate(machine=None)``) removes the file, reloads, and unmounts an NFS
volume. ``@`` cannot occur in LVM names, so file names never collide.
"""

from __future__ import annotations

import ipaddress
import re

from engine.errors import DriverError
from engine.plugins.drivers import MachineRef
from plugins.lvm.config import LvmConfig

ISCSI_PORT = 3260

#: write stdin to "$1" atomically (the directory is made first)
WRITE_FILE = ('set -e; mkdir -p "$(dirname "$1")"; cat > "$1.qrm-new"; '
              'mv -f "$1.qrm-new" "$1"')
#: print "$1" if it exists (exit 0 either way)
READ_FILE = 'if [ -f "$1" ]; then cat "$1"; fi'
#: re-read the export table, if this host has exportfs
RELOAD_NFS = 'if command -v exportfs >/dev/null 2>&1; then exportfs -ra; fi'
#: (re)configure or drop target "$2" from the tgt configuration, if this host has tgt-admin
#: ("$1": update or delete; a target that is not there is not an error when deleting)
RELOAD_ISCSI = ('command -v tgt-admin >/dev/null 2>&1 || exit 0; '
                'if [ "$1" = update ]; then tgt-admin --update "$2"; '
                'else tgt-admin -f --delete "$2" >/dev/null 2>&1 || true; fi')
#: mount device "$1" at "$2" unless something is mounted there already
MOUNT = ('set -e; mkdir -p "$2"; '
         'if ! grep -qs "^[^ ]* $2 " /proc/mounts; then mount "$1" "$2"; fi')
#: unmount "$1" if mounted, and remove the empty mount point
UMOUNT = ('if grep -qs "^[^ ]* $1 " /proc/mounts; then umount "$1" || exit 1; fi; '
          'rmdir "$1" 2>/dev/null; exit 0')

_IQN_PART = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _file_stem(config: LvmConfig, lv: str) -> str:
    return f"qrm-{config.volume_group}@{lv}"


def nfs_file(config: LvmConfig, lv: str) -> str:
    return f"{config.exports_dir}/{_file_stem(config, lv)}.exports"


def iscsi_file(config: LvmConfig, lv: str) -> str:
    return f"{config.iscsi_config_dir}/{_file_stem(config, lv)}.conf"


def mount_point(config: LvmConfig, lv: str) -> str:
    return f"{config.export_root}/{config.volume_group}/{lv}"


def device(config: LvmConfig, lv: str) -> str:
    return f"/dev/{config.volume_group}/{lv}"


def nfs_line(config: LvmConfig, lv: str, machine: MachineRef) -> str:
    """The export line that lets exactly ``machine`` mount the volume."""
    if not machine.ip:
        raise DriverError(f"storage {config.storage}: machine {machine.id} has no IP address "
                          "yet, and NFS exports name their client by address")
    return f"{mount_point(config, lv)} {_ip(config, machine)}({config.nfs_options})\n"


def _ip(config: LvmConfig, machine: MachineRef) -> str:
    try:
        return str(ipaddress.ip_address(str(machine.ip).strip()))
    except ValueError:
        raise DriverError(f"storage {config.storage}: machine {machine.id} has no valid IP "
                          f"address ({machine.ip!r})") from None


def target_iqn(config: LvmConfig, lv: str) -> str:
    """The iSCSI target name of a volume (refused for names an IQN cannot carry as they
    are: they would be ambiguous once lower-cased)."""
    for part in (config.volume_group, lv):
        if not _IQN_PART.fullmatch(part):
            raise DriverError(f"storage {config.storage}: {part!r} cannot be part of an iSCSI "
                              "name (lower-case letters, digits, '.', '-' only)")
    return f"{config.iqn_prefix}:{config.volume_group}.{lv}"


def initiator_iqn(config: LvmConfig, mac: str) -> str:
    """The initiator name a machine uses: derived from its MAC."""
    digits = re.sub(r"[^0-9a-f]", "", mac.lower())
    if len(digits) != 12:
        raise DriverError(f"storage {config.storage}: {mac!r} is not a MAC address")
    return f"{config.iqn_prefix}:initiator.{digits}"


def iscsi_definition(config: LvmConfig, lv: str, machine: MachineRef) -> str:
    """A tgt target (targets.conf syntax) for the volume, admitting only ``machine``."""
    initiator = initiator_iqn(config, machine.mac)
    lines = [f"# written by QRM Cloud (lvm-storage, storage {config.storage}): "
             f"volume {config.volume_group}/{lv} for machine {int(machine.id)}",
             f"<target {target_iqn(config, lv)}>",
             f"    backing-store {device(config, lv)}",
             f"    initiator-name {initiator}"]
    if machine.ip:
        lines.append(f"    initiator-address {_ip(config, machine)}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"
