"""What the ``kvm`` plugin keeps in the engine's database: one row per KVM host.

A KVM host is a ``Resource`` of kind host (virtualization type ``kvm``); its row here holds
what only this plugin needs: the libvirt URI, the domain type, the interface XML of its VMs
and the directory of its qcow2 volumes. Drivers never read it inside the caller's
transaction: see ``plugins.kvm.settings``.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base


class KvmHost(Base):
    """The libvirt side of one KVM host resource."""

    __tablename__ = "kvm_host"

    resource_id: Mapped[int] = mapped_column(
        ForeignKey("resource.id", ondelete="CASCADE"), primary_key=True)
    #: ``qemu+ssh://root@HOST/system`` (a remote host), ``qemu:///system`` (this machine)
    uri: Mapped[str] = mapped_column(String(255))
    #: ``kvm`` (hardware virtualization) or ``qemu`` (TCG, no KVM on the host)
    domain_type: Mapped[str] = mapped_column(String(10), default="kvm")
    #: the ``<interface>`` element of each NIC as a ``string.Template`` (``$mac``,
    #: ``$index``, ``$name``); NULL: the plugin's default (libvirt's network ``default``)
    interface_xml: Mapped[str | None] = mapped_column(Text)
    #: where the host's qcow2 volumes live (the ``qcow2`` storage on this host)
    image_dir: Mapped[str | None] = mapped_column(String(255))


__all__ = ["KvmHost"]
