"""The network-boot settings (``qrm.boot.*``), read once per use from the registry."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

from engine.settings import as_bool

#: how long a hand-over code in a boot script stays valid, and how long after the engine
#: rebooted a resource its next boot script still carries one
HANDOVER_TTL_S = 600
ACCEPT_AUTO, ACCEPT_MANUAL = "auto", "manual"


@dataclasses.dataclass(frozen=True)
class BootSettings:
    #: the server's URL as booting machines reach it (``qrm.boot.url``, else
    #: ``qrm.public_url``), without a trailing slash
    url: str
    #: the kernel of unknown and idle machines (``qrm.boot.default_kernel``)
    default_kernel: str
    #: where ``qrm kernels add`` keeps kernel files (``qrm.boot.kernel_dir``)
    kernel_dir: pathlib.Path
    #: where the pxelinux files are written (``qrm.boot.tftp_root``); None: no classic PXE
    tftp_root: pathlib.Path | None
    #: ``auto``: unknown machines become idle resources; ``manual``: they wait for an admin
    accept_new: str
    #: seconds between an agent's reports (``qrm.boot.report_interval``)
    report_interval: int
    #: kernel arguments before the engine's own (``qrm.boot.kernel_args``)
    kernel_args: str
    #: whether the agent in the initramfs fetches the server's newer copy of itself
    fetch_agent: bool

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> BootSettings:
        url = (settings.get("qrm.boot.url") or settings.get("qrm.public_url")
               or "http://127.0.0.1:6543")
        tftp_root = settings.get("qrm.boot.tftp_root") or None
        accept_new = str(settings.get("qrm.boot.accept_new") or ACCEPT_AUTO).strip().lower()
        if accept_new not in (ACCEPT_AUTO, ACCEPT_MANUAL):
            raise ValueError(f"qrm.boot.accept_new must be auto or manual, not {accept_new!r}")
        return cls(
            url=str(url).rstrip("/"),
            default_kernel=str(settings.get("qrm.boot.default_kernel") or "default"),
            kernel_dir=pathlib.Path(settings.get("qrm.boot.kernel_dir") or "var/kernels"),
            tftp_root=pathlib.Path(tftp_root) if tftp_root else None,
            accept_new=accept_new,
            report_interval=int(settings.get("qrm.boot.report_interval") or 30),
            kernel_args=str(settings.get("qrm.boot.kernel_args",
                                         "console=tty0 console=ttyS0,115200")),
            fetch_agent=as_bool(settings.get("qrm.boot.fetch_agent", True)),
        )


def boot_settings(request_or_registry: Any) -> BootSettings:
    registry = getattr(request_or_registry, "registry", request_or_registry)
    return BootSettings.from_settings(registry.settings)
