"""Admin accounts and browser sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.accounts.credentials import VerifiedCredentials, verified_credentials
from engine.accounts.digest import DigestSecrets, authenticate_by_digest, digest_secrets
from engine.accounts.models import AdminUser
from engine.accounts.throttle import LoginThrottle, login_throttle
from engine.errors import AccountNotActive, AuthenticationFailed, ValidationError
from engine.events.services import EventService
from engine.i18n import _
from engine.security import Actor, hash_password, verify_password
from engine.validation import check_name, check_password


class AccountService:
    """Admin accounts; resolves the acting user of a browser session."""

    def __init__(self, db: Session, events: EventService,
                 throttle: LoginThrottle | None = None,
                 digests: DigestSecrets | None = None,
                 credentials: VerifiedCredentials | None = None) -> None:
        self.db, self.events, self.throttle = db, events, throttle
        self.digests = digests or DigestSecrets(None)
        self.credentials = credentials

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> AccountService:
        return cls(request.dbsession, request.find_service(EventService),
                   login_throttle(request), digest_secrets(request),
                   verified_credentials(request))

    def create_admin(self, name: str, password: str, *, email: str = "",
                     actor: Actor) -> AdminUser:
        """Create an admin account; the name must be free."""
        check_name(name, field="name")
        check_password(password, field="password")
        if self.db.scalar(select(AdminUser).where(AdminUser.name == name)) is not None:
            raise ValidationError(_("an admin named ${name} exists already",
                                    mapping={"name": repr(name)}), field="name")
        admin = AdminUser(name=name, password_hash=hash_password(password), email=email,
                          digest_secret=self.digests.seal(password))
        self.db.add(admin)
        self.db.flush()
        self.events.log(source="accounts", name="admin.created", actor=actor, obj=admin,
                        message=f"admin {name} created")
        return admin

    def set_admin_password(self, name: str, password: str, *, actor: Actor) -> AdminUser:
        check_password(password, field="password")
        admin = self.db.scalar(select(AdminUser).where(AdminUser.name == name))
        if admin is None:
            raise ValidationError(_("no admin named ${name}", mapping={"name": repr(name)}),
                                  field="name")
        admin.password_hash = hash_password(password)
        admin.digest_secret = self.digests.seal(password)
        self.end_sessions(Actor.admin(admin.name, admin.id))
        self.events.log(source="accounts", name="admin.password", actor=actor, obj=admin,
                        message=f"password of admin {name} changed")
        return admin

    def set_admin_active(self, name: str, active: bool, *, actor: Actor) -> AdminUser:
        """Enable or disable an admin account; either way its browser sessions end."""
        admin = self.db.scalar(select(AdminUser).where(AdminUser.name == name))
        if admin is None:
            raise ValidationError(_("no admin named ${name}", mapping={"name": repr(name)}),
                                  field="name")
        admin.active = active
        self.end_sessions(Actor.admin(admin.name, admin.id))
        self.events.log(source="accounts", name="admin.status", actor=actor, obj=admin,
                        message=f"admin {name} {'enabled' if active else 'disabled'}")
        return admin

    def authenticate_admin(self, name: str, password: str) -> AdminUser:
        """Return the active admin with these credentials, or raise AuthenticationFailed."""
        if self.throttle:
            self.throttle.check("admin", name)
        admin = self.db.scalar(select(AdminUser).where(AdminUser.name == name))
        if not self._password_matches(name, password, admin.password_hash if admin else None):
            if self.throttle:
                self.throttle.record_failure("admin", name, "wrong user name or password")
            raise AuthenticationFailed(_("wrong user name or password"))
        if not admin.active:
            self._refuse_inactive(name)
        return admin

    def _refuse_inactive(self, name: str) -> None:
        # recorded like a wrong password (and counted alike), with the real reason
        reason = _("this admin account is disabled")
        if self.throttle:
            self.throttle.record_failure("admin", name, reason.interpolate())
        raise AccountNotActive(reason)

    def _password_matches(self, name: str, password: str, password_hash: str | None) -> bool:
        if self.credentials is None:
            return verify_password(password_hash, password)
        return self.credentials.verify("admin", name, password, password_hash)

    def authenticate_admin_digest(self, name: str, *, digest: str, nonce: bytes,
                                  created: str) -> AdminUser:
        """The active admin whose password gives this WS-Security PasswordDigest."""
        admin = authenticate_by_digest(
            self.db, self.digests, throttle=self.throttle, role="admin", name=name,
            load=lambda n: self.db.scalar(select(AdminUser).where(AdminUser.name == n)),
            digest=digest, nonce=nonce, created=created)
        if not admin.active:
            self._refuse_inactive(name)
        return admin

    # -- browser sessions ----------------------------------------------------------------------
    # A session holds the account's session epoch of its log-in; raising the epoch (log-out,
    # a new password, a status change) ends every session of the account at once, on every
    # worker, although the sessions themselves live in signed cookies.
    @staticmethod
    def _account_model(actor: Actor) -> Any:
        if actor.role == "admin":
            return AdminUser
        if actor.role == "clouduser":
            from engine.cloud.models import CloudUser

            return CloudUser
        return None

    def session_epoch(self, actor: Actor) -> int | None:
        """The epoch a new session of ``actor`` is to carry (None: not a browser account)."""
        model = self._account_model(actor)
        if model is None or actor.id is None:
            return None
        return self.db.scalar(select(model.session_epoch).where(model.id == actor.id))

    def end_sessions(self, actor: Actor) -> None:
        """End every browser session of ``actor``'s account (counted up in the database, so
        that two at once both count)."""
        model = self._account_model(actor)
        if model is None or actor.id is None:
            return
        self.db.execute(update(model).where(model.id == actor.id)
                        .values(session_epoch=model.session_epoch + 1)
                        .execution_options(synchronize_session="fetch"))

    def actor_for_session(self, session: Any) -> Actor | None:
        """The actor a browser session belongs to, if the account still exists, is active and
        has not ended its sessions since this one began."""
        data = session.get("actor")
        if not data:
            return None
        if data.get("role") == "admin":
            admin = self.db.get(AdminUser, data.get("id"))
            if admin is None or not admin.active or data.get("epoch") != admin.session_epoch:
                return None
            return Actor.admin(admin.name, admin.id)
        if data.get("role") == "clouduser":
            from engine.cloud.models import CloudUser, CloudUserStatus

            user = self.db.get(CloudUser, data.get("id"))
            if (user is None or user.status is not CloudUserStatus.ACTIVE
                    or data.get("epoch") != user.session_epoch):
                return None
            return Actor.cloud_user(user.name, user.id)
        return None
