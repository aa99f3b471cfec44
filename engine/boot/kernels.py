"""Kernel files: ``qrm kernels add`` copies a vmlinuz and an initrd into
``qrm.boot.kernel_dir/<name>/`` and registers the kernel with their sizes and SHA-256 sums;
the boot face serves them from there."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
from typing import Any

from sqlalchemy.orm import Session

from engine.boot.config import BootSettings, boot_settings
from engine.datacenter.models import Kernel
from engine.datacenter.services import DatacenterService
from engine.errors import NotFound, ValidationError
from engine.i18n import _
from engine.security import Actor
from engine.validation import check_name

#: the files of a kernel, by the name they are served under
KERNEL_FILES = ("vmlinuz", "initrd")


def copy_with_digest(source: pathlib.Path, target: pathlib.Path) -> tuple[int, str]:
    """Copy ``source`` to ``target`` atomically (a temporary file renamed into place);
    return the size and SHA-256 of what was copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    size = 0
    with source.open("rb") as reader, tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", delete=False) as writer:
        try:
            for block in iter(lambda: reader.read(1 << 20), b""):
                sha.update(block)
                size += len(block)
                writer.write(block)
            writer.flush()
            os.fsync(writer.fileno())
        except BaseException:
            os.unlink(writer.name)
            raise
    os.chmod(writer.name, 0o644)
    os.replace(writer.name, target)
    return size, sha.hexdigest()


class KernelFileService:
    """Kernels with files: add one from a vmlinuz and an initrd, find a file to serve."""

    def __init__(self, db: Session, *, settings: BootSettings,
                 datacenter: DatacenterService) -> None:
        self.db, self.settings, self.datacenter = db, settings, datacenter

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> KernelFileService:
        return cls(request.dbsession, settings=boot_settings(request),
                   datacenter=request.find_service(DatacenterService))

    def directory(self, name: str) -> pathlib.Path:
        return self.settings.kernel_dir / check_name(name, field="kernel")

    def add(self, name: str, *, vmlinuz: pathlib.Path, initrd: pathlib.Path, actor: Actor,
            version: str = "", comment: str = "") -> Kernel:
        """Copy the two files into the kernel directory and register kernel ``name``.

        The files are copied before the row is written (a refused name copies nothing); a
        transaction that fails afterwards leaves them behind, and adding the kernel again
        overwrites them."""
        check_name(name, field="kernel")
        for path, field in ((vmlinuz, "vmlinuz"), (initrd, "initrd")):
            if not pathlib.Path(path).is_file():
                raise ValidationError(_("no such file: ${path}", mapping={"path": str(path)}),
                                      field=field)
        if self.db.query(Kernel.id).filter(Kernel.name == name).first() is not None:
            raise ValidationError(_("a kernel named ${name} exists already",
                                    mapping={"name": repr(name)}), field="kernel")
        directory = self.directory(name)
        vmlinuz_size, vmlinuz_sha = copy_with_digest(pathlib.Path(vmlinuz),
                                                     directory / "vmlinuz")
        initrd_size, initrd_sha = copy_with_digest(pathlib.Path(initrd), directory / "initrd")
        kernel = self.datacenter.add_kernel(name, version=version, actor=actor)
        kernel.comment = comment
        kernel.vmlinuz_size, kernel.vmlinuz_sha256 = vmlinuz_size, vmlinuz_sha
        kernel.initrd_size, kernel.initrd_sha256 = initrd_size, initrd_sha
        self.db.flush()
        return kernel

    def file(self, name: str, which: str) -> tuple[pathlib.Path, Kernel]:
        """The path of kernel ``name``'s ``vmlinuz`` or ``initrd``; NotFound otherwise."""
        if which not in KERNEL_FILES:
            raise NotFound(_("no kernel file ${file}", mapping={"file": repr(which)}),
                           field="file")
        kernel = self.datacenter.kernel(name)
        path = self.directory(kernel.name) / which
        if not kernel.has_files or not path.is_file():
            raise NotFound(_("kernel ${name} has no files", mapping={"name": kernel.name}),
                           field="kernel")
        return path, kernel
