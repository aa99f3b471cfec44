"""What a machine boots: one decision, rendered as an iPXE script or a pxelinux file.

* a resource with an assigned kernel (and accepted) boots that kernel, with its id, its MAC,
  the server's URL and the root-mount parameters of its image's storage driver;
* an unknown MAC, a resource waiting for acceptance and an idle resource (no kernel
  assigned) boot the default kernel: the registration / idle entry.

Kernel parameters are ``qrm.<key>=<value>`` words; values never contain spaces or quotes
(the agent splits ``/proc/cmdline`` on blanks).
"""

from __future__ import annotations

import dataclasses
import re

#: what a kernel parameter's value may contain
PARAMETER_VALUE = re.compile(r"^[A-Za-z0-9._:/,=@+%~-]+$")
PARAMETER_KEY = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@dataclasses.dataclass(frozen=True)
class BootEntry:
    """A kernel to boot and the parameters it is given."""

    kernel: str
    #: ``(key, value)`` pairs, each becoming ``qrm.<key>=<value>``
    parameters: tuple[tuple[str, str], ...]
    kernel_args: str = ""

    @property
    def command_line(self) -> str:
        words = [self.kernel_args.strip()] if self.kernel_args.strip() else []
        words += [f"qrm.{key}={value}" for key, value in self.parameters]
        return " ".join(words)

    def parameter(self, key: str) -> str | None:
        return next((value for name, value in self.parameters if name == key), None)


def check_parameter(key: str, value: str) -> tuple[str, str]:
    """A parameter that is safe on a kernel command line; ValueError otherwise."""
    if not PARAMETER_KEY.match(key):
        raise ValueError(f"kernel parameter name {key!r} is not allowed")
    if not PARAMETER_VALUE.match(value):
        raise ValueError(f"kernel parameter qrm.{key} has a value with characters that a "
                         f"kernel command line cannot carry: {value!r}")
    return key, value


def render_ipxe(entry: BootEntry | None, *, base_url: str, comment: str) -> str:
    """The ``#!ipxe`` script of ``entry`` (None: say so and retry the boot in a minute)."""
    lines = ["#!ipxe", f"# QRM Cloud: {comment}"]
    if entry is None:
        lines += ["echo QRM Cloud: no kernel to boot; trying again in 60 seconds", "sleep 60",
                  "reboot"]
        return "\n".join(lines) + "\n"
    kernel_url = f"{base_url}/boot/kernels/{entry.kernel}"
    lines += [
        f"echo QRM Cloud: booting kernel {entry.kernel}",
        f"kernel {kernel_url}/vmlinuz {entry.command_line}",
        f"initrd {kernel_url}/initrd",
        "boot",
    ]
    return "\n".join(lines) + "\n"
