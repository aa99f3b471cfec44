"""Routes of the boot face."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    config.add_route("boot.ipxe", "/boot/ipxe")
    config.add_route("boot.kernel_file", "/boot/kernels/{name}/{file}")
    config.add_route("boot.agent", "/boot/agent.sh")
    config.add_route("boot.register", "/boot/register")
    config.add_route("boot.handover", "/boot/handover")
    config.add_route("boot.report", "/boot/report")
