"""Classic PXE: the boot decisions as pxelinux files in ``qrm.boot.tftp_root``.

``pxelinux.cfg/01-<mac with dashes>`` per known resource and ``pxelinux.cfg/default`` for
everything else, rendered from the rows and written after the commit by the
``boot.pxelinux`` job: atomically (a temporary file renamed into place), only when the text
changed, and a file whose resource is gone is removed. The files carry no hand-over code
(a TFTP file is readable by anyone on the network and outlives a boot); an agent booted this
way asks for its code at ``/boot/handover`` (docs/boot.md).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Mapping

from engine.boot.decisions import BootEntry

CONFIG_DIR = "pxelinux.cfg"
#: kernels are reached below the TFTP root under this name (a link to qrm.boot.kernel_dir)
KERNELS_LINK = "qrm-kernels"
HEADER = "# written by QRM Cloud from its database: changes here are overwritten\n"


def file_name(mac: str) -> str:
    """``01-52-54-00-12-34-56``: the name pxelinux looks for first (Ethernet, dashes)."""
    return "01-" + mac.lower().replace(":", "-")


def render(entry: BootEntry | None, *, reason: str = "") -> str:
    """The text of one pxelinux file; ``entry`` None: no kernel to boot (boot locally)."""
    lines = [HEADER.rstrip("\n")]
    if reason:
        lines.append(f"# {reason}")
    if entry is None:
        lines += ["DEFAULT local", "PROMPT 0", "TIMEOUT 1", "LABEL local", "  LOCALBOOT 0"]
        return "\n".join(lines) + "\n"
    lines += [
        "DEFAULT qrm", "PROMPT 0", "TIMEOUT 1", "LABEL qrm",
        f"  KERNEL {KERNELS_LINK}/{entry.kernel}/vmlinuz",
        f"  INITRD {KERNELS_LINK}/{entry.kernel}/initrd",
        f"  APPEND {entry.command_line}",
        # BOOTIF=01-<mac> on the command line: the agent knows which NIC booted
        "  IPAPPEND 2",
    ]
    return "\n".join(lines) + "\n"


def _write_atomically(path: pathlib.Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
    return True


def write_tree(tftp_root: pathlib.Path, files: Mapping[str, str], *,
               kernel_dir: pathlib.Path) -> dict[str, list[str]]:
    """Make ``tftp_root/pxelinux.cfg`` hold exactly ``files`` (name -> text) among the
    per-MAC files and ``default``; return what was written and removed. Idempotent."""
    directory = tftp_root / CONFIG_DIR
    directory.mkdir(parents=True, exist_ok=True)
    link = tftp_root / KERNELS_LINK
    if not link.exists() and not link.is_symlink():
        link.symlink_to(kernel_dir.resolve(), target_is_directory=True)
    written = [name for name, text in sorted(files.items())
               if _write_atomically(directory / name, text)]
    removed = []
    for path in sorted(directory.glob("01-*")):
        if path.name not in files:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return {"written": written, "removed": removed}
