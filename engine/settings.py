"""Settings: the ini file, with environment overrides for secrets and URLs.

Environment variables win over the ini so that one ``production.ini`` can be shipped while
database URLs and secrets come from the deployment (never from the repository).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

#: environment variable -> setting key
ENVIRONMENT_OVERRIDES = {
    "QRM_DATABASE_URL": "sqlalchemy.url",
    "QRM_SESSION_SECRET": "qrm.session_secret",
    "QRM_SECRET_KEY": "qrm.secret_key",
    "QRM_PUBLIC_URL": "qrm.public_url",
    "QRM_SCHEDULER": "qrm.scheduler",
    "QRM_SIM_BOOT_DELAY": "qrm.sim.boot_delay",
    "QRM_CLOCK": "qrm.clock",
    "QRM_SIM_STATE": "qrm.sim.state",
    # where the command worker's SSH keys and known_hosts file live on this machine
    "QRM_SSH_KEY_FILE": "qrm.ssh.key_file",
    "QRM_SSH_KEY_DIR": "qrm.ssh.key_dir",
    "QRM_SSH_KNOWN_HOSTS": "qrm.ssh.known_hosts",
}

TRUTHY = {"1", "true", "yes", "on"}


def as_bool(value: Any) -> bool:
    """Read an ini-style boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUTHY


def normalize_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``settings`` with environment overrides and defaults applied."""
    result = dict(settings)
    for variable, key in ENVIRONMENT_OVERRIDES.items():
        if os.environ.get(variable):
            result[key] = os.environ[variable]
    if not result.get("sqlalchemy.url"):
        raise ValueError("sqlalchemy.url is not set (ini file or QRM_DATABASE_URL)")
    if as_bool(result.get("qrm.require_secrets", False)):
        # Several processes (web workers, schedulers) must share one truth: a secret made
        # up per process would log users out between workers and seal digests unreadably.
        for key, variable in (("qrm.session_secret", "QRM_SESSION_SECRET"),
                              ("qrm.secret_key", "QRM_SECRET_KEY")):
            if not result.get(key) and not (key == "qrm.secret_key"
                                            and result.get("qrm.secret_key_file")):
                raise ValueError(f"{key} is not set: set the environment variable {variable} "
                                 "(the same value for every process of this deployment)")
    if not result.get("qrm.session_secret"):
        # A random secret per process start is safe (sessions end at restart) but not for
        # several workers; production.ini documents that QRM_SESSION_SECRET must be set.
        result["qrm.session_secret"] = secrets.token_urlsafe(32)
    result.setdefault("qrm.scheduler", "false")
    result.setdefault("qrm.kick", "thread")
    return result


def check_public_url(settings: Mapping[str, Any]) -> None:
    """A production web server (``qrm.require_secrets``) needs ``qrm.public_url``: the WSDL's
    address is built from it, never from a client's ``Host`` header."""
    public_url = str(settings.get("qrm.public_url") or "").strip()
    if as_bool(settings.get("qrm.require_secrets", False)) and not public_url:
        raise ValueError("qrm.public_url is not set: set the environment variable "
                         "QRM_PUBLIC_URL to the URL clients reach this server at (e.g. "
                         "https://cloud.example.com; the WSDL's address is built from it)")
    if public_url and not public_url.startswith(("http://", "https://")):
        raise ValueError(f"qrm.public_url must start with http:// or https://, not "
                         f"{public_url!r}")
