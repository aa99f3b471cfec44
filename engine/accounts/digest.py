"""WS-Security PasswordDigest support.

A digest (``b64(sha1(nonce + created + password))``) can only be checked against the password
itself, so accounts keep, besides their argon2 hash, a copy of the password encrypted with the
server's key (``qrm.secret_key`` / ``QRM_SECRET_KEY``). Without a key nothing is kept and
digest tokens are refused with a sentence saying what to send instead. Nonces are recorded in
the database (``wsse_nonce``) so that a token cannot be replayed on any worker.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import pathlib
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.accounts.models import WsseNonce
from engine.db import utcnow
from engine.errors import AuthenticationFailed
from engine.i18n import _

log = logging.getLogger(__name__)

#: how long a nonce is remembered: twice the freshness window of a token's Created
NONCE_LIFETIME = dt.timedelta(minutes=10)


def load_secret_key(settings: dict[str, Any]) -> str | None:
    """The server key: ``qrm.secret_key``, else the file ``qrm.secret_key_file`` (created
    with a random key if missing — for development machines), else None."""
    key = settings.get("qrm.secret_key")
    if key:
        return str(key)
    path = settings.get("qrm.secret_key_file")
    if not path:
        return None
    file = pathlib.Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return file.read_text().strip()


class DigestSecrets:
    """Seals and opens the reversible password copies."""

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(
            hashlib.sha256(key.encode()).digest())) if key else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, password: str) -> str | None:
        return self._fernet.encrypt(password.encode()).decode() if self._fernet else None

    def open(self, sealed: str | None) -> str | None:
        if not sealed or self._fernet is None:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            log.warning("a digest secret does not open with this server's key")
            return None


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """The WS-Security PasswordDigest: ``b64(sha1(nonce + created + password))``."""
    digest = hashlib.sha1(nonce + created.encode() + password.encode(),
                          usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def digest_matches(password: str | None, *, digest: str, nonce: bytes, created: str) -> bool:
    if password is None:
        return False
    return hmac.compare_digest(password_digest(nonce, created, password), digest)


def use_nonce(db: Session, username: str, nonce: bytes) -> None:
    """Record a token's nonce; refuse it if it was seen within ``NONCE_LIFETIME``."""
    now = utcnow()
    db.execute(delete(WsseNonce).where(WsseNonce.created_at < now - NONCE_LIFETIME))
    try:
        with db.begin_nested():
            db.add(WsseNonce(username=username, nonce=base64.b64encode(nonce).decode(),
                             created_at=now))
            db.flush()
    except IntegrityError:
        raise AuthenticationFailed(_("this UsernameToken nonce was used before; send a fresh "
                                     "token")) from None


DIGEST_DISABLED = _("PasswordDigest tokens are not enabled on this server (it has no secret "
                    "key); send PasswordText over HTTPS or use HTTP Basic")


def authenticate_by_digest(db: Session, digests: DigestSecrets, *, throttle: Any, role: str,
                           name: str, load: Any, digest: str, nonce: bytes,
                           created: str) -> Any:
    """The account ``load(name)`` if its sealed password gives ``digest``; the caller checks
    its status. Failures count against the name like failed password log-ins."""
    if not digests.enabled:
        raise AuthenticationFailed(DIGEST_DISABLED)
    if throttle:
        throttle.check(role, name)
    use_nonce(db, name, nonce)
    if throttle:
        # a call that faults is rolled back, nonce and all: record it again afterwards so
        # that the token cannot be replayed
        throttle.tm.get().addAfterAbortHook(_persist_nonce, args=(
            throttle.session_factory, name, nonce))
    account = load(name)
    password = digests.open(account.digest_secret) if account else None
    if not digest_matches(password, digest=digest, nonce=nonce, created=created):
        if throttle:
            throttle.record_failure(role, name, "wrong password digest")
        raise AuthenticationFailed(_("wrong user name or password"))
    return account


def _persist_nonce(session_factory: Any, username: str, nonce: bytes) -> None:
    session = session_factory()
    try:
        session.add(WsseNonce(username=username, nonce=base64.b64encode(nonce).decode(),
                              created_at=utcnow()))
        session.commit()
    except IntegrityError:
        session.rollback()  # recorded already
    finally:
        session.close()


def digest_secrets(request: Any) -> DigestSecrets:
    registry = request.registry
    if "qrm.digest_secrets" not in registry:
        registry["qrm.digest_secrets"] = DigestSecrets(load_secret_key(registry.settings))
    return registry["qrm.digest_secrets"]
