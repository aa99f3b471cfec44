"""Who is acting: actors, password hashing, and the Pyramid security policy.

Two roles: admins (``admin_user``) and cloud users (``cloud_user``). A browser session holds
``(role, id)`` and the account's session epoch (log-out, a new password and a status change
raise it, which ends every session of the account); the SOAP/XML-RPC faces authenticate
each call and set the identity themselves.
Paths a face declares stateless (``config.add_stateless_path_prefix``: the APIs) get an
empty session that is never read from or written to a cookie.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.interfaces import ISession
from pyramid.security import Allowed, Denied
from pyramid.session import SignedCookieSessionFactory
from zope.interface import implementer

from engine.permissions import ROLE_PERMISSIONS, Permissions, Role

_hasher = PasswordHasher()
#: verified against when a name is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def configure_password_hashing(settings: dict[str, Any]) -> None:
    """argon2 costs from the settings (``qrm.argon2.time_cost``, ``.memory_cost`` in KiB,
    ``.parallelism``); the library's defaults otherwise. Every hash carries its parameters,
    so existing ones keep verifying after a change."""
    global _hasher  # noqa: PLW0603  (one hasher per process, set at start-up)
    defaults = PasswordHasher()
    _hasher = PasswordHasher(
        time_cost=int(settings.get("qrm.argon2.time_cost", defaults.time_cost)),
        memory_cost=int(settings.get("qrm.argon2.memory_cost", defaults.memory_cost)),
        parallelism=int(settings.get("qrm.argon2.parallelism", defaults.parallelism)),
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check of a password against an argon2 hash (``None``: unknown account)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who does something: written with every state change into the event log."""

    role: str  # "admin", "clouduser", "system", "plugin"
    name: str
    id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.role}:{self.name}"

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.ADMIN, "system")

    @property
    def is_cloud_user(self) -> bool:
        return self.role == Role.CLOUD_USER

    @classmethod
    def system(cls, name: str = "scheduler") -> Actor:
        return cls("system", name)

    @classmethod
    def admin(cls, name: str, id: int | None = None) -> Actor:
        return cls(Role.ADMIN.value, name, id)

    @classmethod
    def cloud_user(cls, name: str, id: int | None = None) -> Actor:
        return cls(Role.CLOUD_USER.value, name, id)


class SecurityPolicy:
    """Identity from the session (browser faces) or set per call (``request.api_actor``)."""

    def identity(self, request: Any) -> Actor | None:
        api_actor = getattr(request, "api_actor", None)
        if api_actor is not None:
            return api_actor
        from engine.accounts.services import AccountService

        return request.find_service(AccountService).actor_for_session(request.session)

    def authenticated_userid(self, request: Any) -> str | None:
        actor = request.identity
        return actor.label if actor else None

    def permits(self, request: Any, context: Any, permission: str) -> Allowed | Denied:
        if permission == Permissions.PUBLIC:
            return Allowed("public")
        actor = request.identity
        if actor is None:
            return Denied("not logged in")
        try:
            role = Role(actor.role)
        except ValueError:
            return Denied(f"role {actor.role} has no permissions")
        if permission in ROLE_PERMISSIONS[role]:
            return Allowed(f"{role} may {permission}")
        return Denied(f"{role} may not {permission}")

    def remember(self, request: Any, userid: Actor, **kw: Any) -> list:
        from engine.accounts.services import AccountService

        epoch = request.find_service(AccountService).session_epoch(userid)
        request.session.invalidate()
        request.session["actor"] = {"role": userid.role, "id": userid.id, "name": userid.name,
                                    "epoch": epoch}
        return []

    def forget(self, request: Any, **kw: Any) -> list:
        """Log out: this session and every other one of the same account end."""
        actor = request.identity
        if actor is not None and getattr(request, "api_actor", None) is None:
            from engine.accounts.services import AccountService

            request.find_service(AccountService).end_sessions(actor)
        request.session.invalidate()
        return []


#: registry key of the path prefixes whose requests carry no browser session
STATELESS_PREFIXES_KEY = "qrm.stateless_path_prefixes"


@implementer(ISession)
class StatelessSession(dict):
    """The session of a request on a stateless path (an API call): empty, and forgotten
    with the request — no cookie is read, verified, reissued or set."""

    new = True

    def __init__(self, _request: Any = None) -> None:
        super().__init__()
        self.created = time.time()

    def changed(self) -> None:
        pass

    def invalidate(self) -> None:
        self.clear()

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        pass

    def pop_flash(self, queue: str = "") -> list:
        return []

    def peek_flash(self, queue: str = "") -> list:
        return []

    def new_csrf_token(self) -> str:
        raise RuntimeError("a stateless (API) request has no session for a CSRF token")

    def get_csrf_token(self) -> str:
        return self.new_csrf_token()


def session_factory_for(browser_sessions: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The browser's session factory, except on the stateless paths."""

    def make_session(request: Any) -> Any:
        prefixes = request.registry.get(STATELESS_PREFIXES_KEY, ())
        if prefixes and request.path_info.startswith(prefixes):
            return StatelessSession(request)
        return browser_sessions(request)

    return make_session


def add_stateless_path_prefix(config: Any, prefix: str) -> None:
    """Config directive: requests below ``prefix`` (``/soap/``) carry no browser session;
    their views authenticate each call themselves."""
    prefixes = tuple(config.registry.get(STATELESS_PREFIXES_KEY, ()))
    if prefix not in prefixes:
        config.registry[STATELESS_PREFIXES_KEY] = (*prefixes, prefix)


def includeme(config: Any) -> None:
    settings = config.get_settings()
    configure_password_hashing(settings)
    from engine.settings import as_bool

    config.add_directive("add_stateless_path_prefix", add_stateless_path_prefix)
    config.set_session_factory(session_factory_for(
        SignedCookieSessionFactory(
            settings["qrm.session_secret"],
            cookie_name="qrm_session",
            httponly=True,
            samesite="Lax",
            secure=as_bool(settings.get("qrm.secure_cookies", "false")),
            timeout=8 * 3600,
            reissue_time=600,
        )
    ))
    config.set_csrf_storage_policy(SessionCSRFStoragePolicy())
    config.set_default_csrf_options(require_csrf=True)
    config.set_security_policy(SecurityPolicy())
