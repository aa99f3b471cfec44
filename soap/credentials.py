"""Who is calling: WS-Security UsernameToken (SOAP header) or HTTP Basic, checked per call.

The cloud-admin endpoints take admin accounts only, the cloud-user endpoints active cloud
users only; the accounts' services check the passwords. A UsernameToken may carry its
password as text or as a digest (``b64(sha1(nonce + created + password))``); a token whose
``Created`` is more than five minutes away from now is refused, and so is a digest nonce seen
before within that window. The accounts' services check digests (``engine.accounts.digest``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from pyramid.authentication import extract_http_basic_credentials

from engine.accounts.services import AccountService
from engine.cloud.services import CloudUserService
from engine.db import begin_for_reading, utcnow
from engine.errors import AccountNotActive, AuthenticationFailed, PermissionDenied
from engine.i18n import _ as engine_message  # the engine's message, not the soap catalog's
from engine.security import Actor

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TOKEN_PROFILE = ("http://docs.oasis-open.org/wss/2004/01/"  # noqa: S105 (a URI)
                 "oasis-200401-wss-username-token-profile-1.0")
PASSWORD_TEXT = TOKEN_PROFILE + "#PasswordText"
PASSWORD_DIGEST = TOKEN_PROFILE + "#PasswordDigest"

#: how far a token's Created may be from now (either way: clocks drift)
FRESHNESS = dt.timedelta(minutes=5)

ADMIN_ROLE = "cloudadmin"
USER_ROLE = "clouduser"


@dataclasses.dataclass(frozen=True)
class UsernameToken:
    username: str
    password: str
    digest: bool
    nonce: bytes | None
    created: str | None


def _child(element: Any, namespace: str, name: str) -> Any:
    return element.find(f"{{{namespace}}}{name}")


def _text(element: Any) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse_username_token(header_elements: Iterable[Any] | None) -> UsernameToken | None:
    """The UsernameToken of a SOAP header (the list spyne keeps in ``ctx.in_header_doc``),
    or None when there is no wsse:Security header."""
    elements = () if header_elements is None else header_elements
    security = next((element for element in elements
                     if element.tag == f"{{{WSSE_NS}}}Security"), None)
    if security is None:
        return None
    token = _child(security, WSSE_NS, "UsernameToken")
    if token is None:
        raise AuthenticationFailed("the wsse:Security header carries no UsernameToken")
    password = _child(token, WSSE_NS, "Password")
    password_type = password.get("Type", PASSWORD_TEXT) if password is not None else ""
    if password_type not in (PASSWORD_TEXT, PASSWORD_DIGEST):
        raise AuthenticationFailed(f"unsupported password type {password_type!r}; use "
                                   "PasswordText or PasswordDigest")
    nonce_text = _text(_child(token, WSSE_NS, "Nonce"))
    try:
        nonce = base64.b64decode(nonce_text, validate=True) if nonce_text else None
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("the UsernameToken's Nonce is not base64") from None
    created = _text(_child(token, WSU_NS, "Created")) or None
    return UsernameToken(
        username=_text(_child(token, WSSE_NS, "Username")),
        password=password.text or "" if password is not None else "",
        digest=password_type == PASSWORD_DIGEST, nonce=nonce, created=created)


def check_created(created: str | None, *, now: dt.datetime | None = None) -> None:
    """Refuse a token created more than five minutes ago (or ahead)."""
    if created is None:
        return
    try:
        moment = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise AuthenticationFailed("the UsernameToken's Created is not a time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    now = now or utcnow()
    if moment < now - FRESHNESS:
        raise AuthenticationFailed("the UsernameToken was created more than 5 minutes ago; "
                                   "send a fresh one")
    if moment > now + FRESHNESS:
        raise AuthenticationFailed("the UsernameToken's Created lies in the future; check "
                                   "the client's clock")


def authenticate(request: Any, role: str, header_elements: Iterable[Any] | None = None, *,
                 read_only: bool = False) -> Actor:
    """The actor of one API call, from a UsernameToken in ``header_elements`` or from HTTP
    Basic; raises AuthenticationFailed or PermissionDenied. ``read_only``: the call's
    operation only reads, so its transaction need not take SQLite's write lock.

    The right password of a disabled (or pending) account is answered exactly like a wrong
    one; the event log has the real reason."""
    try:
        return _authenticate(request, role, header_elements, read_only=read_only)
    except AccountNotActive:
        raise AuthenticationFailed(engine_message("wrong user name or password")) from None


def _authenticate(request: Any, role: str, header_elements: Iterable[Any] | None, *,
                  read_only: bool) -> Actor:
    token = parse_username_token(header_elements)
    if read_only and not (token is not None and token.digest):
        # (a digest token writes its nonce in this transaction: that one begins as writers do)
        begin_for_reading(request)
    if token is None:
        basic = extract_http_basic_credentials(request)
        if basic is None:
            raise AuthenticationFailed("credentials are missing: send a WS-Security "
                                       "UsernameToken or HTTP Basic credentials")
        return _login(request, role, basic.username, basic.password)
    check_created(token.created)
    if not token.digest:
        return _login(request, role, token.username, token.password)
    if token.nonce is None or token.created is None:
        raise AuthenticationFailed("a PasswordDigest token needs a Nonce and a Created")
    return _login_digest(request, role, token)


def _login(request: Any, role: str, username: str, password: str) -> Actor:
    users = request.find_service(CloudUserService)
    if role == USER_ROLE:
        user = users.authenticate(username, password)
        return Actor.cloud_user(user.name, user.id)
    try:
        admin = request.find_service(AccountService).authenticate_admin(username, password)
    except AuthenticationFailed:
        _refuse_cloud_user(users, username, password)
        raise
    return Actor.admin(admin.name, admin.id)


def _refuse_cloud_user(users: CloudUserService, username: str, password: str) -> None:
    # Valid cloud-user credentials at the cloud-admin endpoint: the caller is known but has
    # the wrong role, which the contract answers with PermissionDenied.
    try:
        users.authenticate(username, password)
    except AuthenticationFailed:
        return
    raise PermissionDenied("cloud users may not use the cloud-admin API; use the cloud-user "
                           "endpoint")


def _login_digest(request: Any, role: str, token: UsernameToken) -> Actor:
    # the services check the digest against the account's sealed password and record the
    # nonce in the database, so no worker accepts a replay
    check = {"digest": token.password, "nonce": token.nonce, "created": token.created}
    if role == USER_ROLE:
        user = request.find_service(CloudUserService).authenticate_digest(
            token.username, **check)
        return Actor.cloud_user(user.name, user.id)
    admin = request.find_service(AccountService).authenticate_admin_digest(
        token.username, **check)
    return Actor.admin(admin.name, admin.id)
