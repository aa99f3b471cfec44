"""DHCP configuration for ISC dhcpd, Kea and dnsmasq, generated from the resources and IP
groups and kept up to date by the ``dhcp.write`` job (docs/dhcp.md)."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.dhcp import triggers
    from engine.dhcp.jobs import INTERVAL_S, JOB_ID, write_job
    from engine.dhcp.services import DhcpService

    config.register_service_factory(DhcpService.create_service, DhcpService)
    config.add_job(JOB_ID, write_job, INTERVAL_S)
    triggers.install()
