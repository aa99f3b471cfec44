"""Cloud services: users and their limits, products, and requests (submit → approve → … →
done). Every face calls these; every rule lives here."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from pyramid.i18n import TranslationString
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from engine.accounts.credentials import VerifiedCredentials, verified_credentials
from engine.accounts.digest import DigestSecrets, authenticate_by_digest, digest_secrets
from engine.accounts.throttle import LoginThrottle, login_throttle
from engine.cloud.billing_port import BillingPort, RequestSpec
from engine.cloud.config import CloudConfigService
from engine.cloud.models import (
    QUOTA_HOLDING,
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    CloudUser,
    CloudUserLimits,
    CloudUserStatus,
    Product,
    ProductType,
    RequestStatus,
)
from engine.datacenter.models import (
    Image,
    Kernel,
    VirtualizationKind,
    VirtualizationType,
)
from engine.datacenter.services import supports_row_locks
from engine.db import utcnow
from engine.errors import (
    AccountNotActive,
    AuthenticationFailed,
    InsufficientCredit,
    InvalidState,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.paging import DEFAULT_SIZE, KeysetPager, Page
from engine.scheduler.kick import kick_after_commit
from engine.security import Actor, hash_password, verify_password
from engine.types import plain
from engine.validation import (
    check_email,
    check_int,
    check_name,
    check_password,
    check_text,
    check_time,
    invalid,
)

MIN_RUNTIME = dt.timedelta(hours=1)
#: the password hash of a removed account kept for its ledger: no password verifies
REMOVED_PASSWORD = "!removed"  # noqa: S105

LIMIT_FIELDS = ("resource_limit", "memory_limit_mb", "disk_limit_mb", "cpu_limit",
                "network_limit")

#: allowed request transitions (from -> to); anything else is InvalidState
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.NEW: frozenset({RequestStatus.APPROVED, RequestStatus.DENIED,
                                  RequestStatus.DEPROVISION}),
    RequestStatus.APPROVED: frozenset({RequestStatus.ACTIVE, RequestStatus.DEPROVISION,
                                       RequestStatus.NO_RESOURCES, RequestStatus.NEW,
                                       RequestStatus.DENIED}),
    RequestStatus.ACTIVE: frozenset({RequestStatus.DEPROVISION}),
    RequestStatus.DEPROVISION: frozenset({RequestStatus.DONE}),
    RequestStatus.DENIED: frozenset(),
    RequestStatus.DONE: frozenset(),
    RequestStatus.NO_RESOURCES: frozenset(),
}


#: statuses whose stop time may still be moved
EXTENDABLE = frozenset({RequestStatus.NEW, RequestStatus.APPROVED, RequestStatus.ACTIVE})


#: what a request's details show, loaded with the request in one go (no lazy load per field)
#: the console's and the portal's request lists: newest first
REQUEST_PAGER = KeysetPager(CloudRequest.id, descending=True)
#: the console's user list: by name (unique)
USER_PAGER = KeysetPager(CloudUser.name)

REQUEST_DETAILS = (joinedload(CloudRequest.user), joinedload(CloudRequest.kernel),
                   joinedload(CloudRequest.image), joinedload(CloudRequest.virtualization_type),
                   selectinload(CloudRequest.appliances))


def lock_row(db: Session, model: type, row_id: int) -> Any:
    """Load a row with a write lock (SQLite: its writers are serialised already)."""
    query = select(model).where(model.id == row_id).execution_options(populate_existing=True)
    if supports_row_locks(db):
        query = query.with_for_update()
    return db.execute(query).scalar_one_or_none()


def admin_only(actor: Actor) -> None:
    """Changes of the cloud's offer, money and configuration are for admins (and the
    engine's own system actors) only."""
    if not actor.is_admin:
        raise PermissionDenied(_("only an admin may do this"))


def owns(actor: Actor, user_id: int, user_name: str) -> bool:
    """Whether ``actor`` is the cloud user with this id (or, for an actor without id, name)."""
    return actor.id == user_id if actor.id is not None else actor.name == user_name


def account_status(name: str, status: CloudUserStatus) -> TranslationString:
    """Why an account that is not active cannot log in or submit."""
    return _("the account ${name} is ${status}", mapping={"name": name, "status": status.value})


class CloudUserService:
    """Cloud users: accounts, details, passwords, status, limits."""

    def __init__(self, db: Session, *, config: CloudConfigService, events: EventService,
                 billing: BillingPort, throttle: LoginThrottle | None = None,
                 digests: DigestSecrets | None = None,
                 credentials: VerifiedCredentials | None = None) -> None:
        self.db, self.config, self.events, self.billing = db, config, events, billing
        self.throttle = throttle
        self.digests = digests or DigestSecrets(None)
        self.credentials = credentials

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CloudUserService:
        return cls(request.dbsession, config=request.find_service(CloudConfigService),
                   events=request.find_service(EventService),
                   billing=request.find_service(BillingPort),
                   throttle=login_throttle(request), digests=digest_secrets(request),
                   credentials=verified_credentials(request))

    # -- look-ups with ownership ------------------------------------------------------------
    def resolve(self, name: str | None, *, actor: Actor) -> CloudUser:
        """The user ``name`` as ``actor`` may see it: a cloud user only names itself (an
        empty name means the caller); any other name is PermissionDenied."""
        name = (name or "").strip()
        if actor.is_cloud_user:
            if name and name != actor.name:
                raise PermissionDenied(_("a cloud user may only act on its own account"),
                                       field="cloud_user")
            user = self.db.get(CloudUser, actor.id) if actor.id else None
            if user is None:
                user = self.db.scalar(select(CloudUser).where(CloudUser.name == actor.name))
            if user is None:
                raise AuthenticationFailed(_("the account no longer exists"))
            return user
        if not name:
            raise ValidationError(_("cloud_user is required"), field="cloud_user")
        user = self.db.scalar(select(CloudUser).where(CloudUser.name == name))
        if user is None:
            raise NotFound(_("no cloud user named ${name}", mapping={"name": repr(name)}),
                           field="cloud_user")
        return user

    def by_id(self, user_id: int) -> CloudUser:
        user = self.db.get(CloudUser, user_id)
        if user is None:
            raise NotFound(_("no cloud user ${id}", mapping={"id": user_id}),
                           field="cloud_user")
        return user

    def names(self) -> list[str]:
        """The names of the cloud users (removed accounts kept for their ledger left out)."""
        return list(self.db.scalars(select(CloudUser.name).where(
            CloudUser.password_hash != REMOVED_PASSWORD).order_by(CloudUser.name)))

    def all(self, *, include_removed: bool = False) -> list[CloudUser]:
        """Every cloud user by name; removed accounts (kept for their ledger) only if asked."""
        query = select(CloudUser).order_by(CloudUser.name)
        if not include_removed:
            query = query.where(CloudUser.password_hash != REMOVED_PASSWORD)
        return list(self.db.scalars(query))

    def page(self, *, status: CloudUserStatus | None = None, after: str | None = None,
             before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """One page of ``all()`` by name, of one status if given."""
        query = select(CloudUser).where(CloudUser.password_hash != REMOVED_PASSWORD)
        if status is not None:
            query = query.where(CloudUser.status == status)
        return USER_PAGER.page(self.db, query, after=after, before=before, size=size)

    def status_counts(self) -> dict[CloudUserStatus, int]:
        """How many users (not removed) have each status, one grouped query."""
        return dict(self.db.execute(
            select(CloudUser.status, func.count(CloudUser.id))
            .where(CloudUser.password_hash != REMOVED_PASSWORD)
            .group_by(CloudUser.status)).all())

    def authenticate(self, name: str, password: str) -> CloudUser:
        """The active cloud user with these credentials, or AuthenticationFailed."""
        name = name or ""
        if self.throttle:
            self.throttle.check("clouduser", name)
        user = self.db.scalar(select(CloudUser).where(CloudUser.name == name))
        if not self._password_matches(name, password or "",
                                      user.password_hash if user else None):
            if self.throttle:
                self.throttle.record_failure("clouduser", name, "wrong user name or password")
            raise AuthenticationFailed(_("wrong user name or password"))
        if user.status is not CloudUserStatus.ACTIVE:
            self._refuse_inactive(name, user.status)
        return user

    def _end_sessions(self, user: CloudUser) -> None:
        # every browser session of the account ends (engine.accounts: session epochs)
        self.db.execute(update(CloudUser).where(CloudUser.id == user.id)
                        .values(session_epoch=CloudUser.session_epoch + 1)
                        .execution_options(synchronize_session="fetch"))

    def _refuse_inactive(self, name: str, status: CloudUserStatus) -> None:
        # recorded like a wrong password (and counted alike), with the real reason
        reason = account_status(name, status)
        if self.throttle:
            self.throttle.record_failure("clouduser", name, reason.interpolate())
        raise AccountNotActive(reason)

    def _password_matches(self, name: str, password: str, password_hash: str | None) -> bool:
        # the hash is read on every call: a password changed on any worker misses at once
        if self.credentials is None:
            return verify_password(password_hash, password)
        return self.credentials.verify("clouduser", name, password, password_hash)

    def authenticate_digest(self, name: str, *, digest: str, nonce: bytes,
                            created: str) -> CloudUser:
        """The active cloud user whose password gives this WS-Security PasswordDigest."""
        user = authenticate_by_digest(
            self.db, self.digests, throttle=self.throttle, role="clouduser", name=name,
            load=lambda n: self.db.scalar(select(CloudUser).where(CloudUser.name == n)),
            digest=digest, nonce=nonce, created=created)
        if user.status is not CloudUserStatus.ACTIVE:
            self._refuse_inactive(name, user.status)
        return user

    # -- changes ----------------------------------------------------------------------------
    def create(self, name: str, password: str, email: str, *, actor: Actor,
               forename: str = "", lastname: str = "", street: str = "", city: str = "",
               country: str = "", phone: str = "", language: str = "en",
               status: CloudUserStatus = CloudUserStatus.ACTIVE) -> CloudUser:
        """Create a cloud user with a limits row (all unlimited) and the configured starting
        credit (``auto_give_ccus``) booked on the ledger."""
        name = check_name(name, field="cloud_user", min_length=3)
        check_password(password)
        email = check_email(email)
        if self.db.scalar(select(CloudUser.id).where(CloudUser.name == name)) is not None:
            raise ValidationError(_("the name ${name} is taken", mapping={"name": repr(name)}),
                                  field="cloud_user")
        user = CloudUser(
            name=name, password_hash=hash_password(password), email=email,
            digest_secret=self.digests.seal(password),
            forename=check_text(forename, field="forename"),
            lastname=check_text(lastname, field="lastname"),
            street=check_text(street, field="street"), city=check_text(city, field="city"),
            country=check_text(country, field="country"),
            phone=check_text(phone, field="phone", max_length=50),
            language=language if language in ("en", "de") else "en", status=status,
            ccus=Decimal(0), limits=CloudUserLimits(),
        )
        self.db.add(user)
        self.db.flush()
        self.events.log(source="cloud", name="user.created", actor=actor, obj=user,
                        message=f"cloud user {name} created")
        starting = Decimal(self.config["auto_give_ccus"])
        if starting > 0:
            self.billing.credit(user, starting, reason="Starting credit",
                                comment="auto_give_ccus", actor=actor,
                                key=f"start-credit:user:{user.id}")
        return user

    def register(self, name: str, password: str, email: str, **details: Any) -> CloudUser:
        """Self-registration in the portal, when ``public_register_enabled`` is true."""
        if not self.config["public_register_enabled"]:
            raise PermissionDenied(_("registration is closed; ask the cloud's administrator"))
        if not self.config["cloud_enabled"]:
            raise InvalidState(_("the cloud is in maintenance"))
        return self.create(name, password, email, actor=Actor.cloud_user(name), **details)

    def set_details(self, name: str | None, *, actor: Actor, **details: Any) -> CloudUser:
        """Change personal details; only these fields can be written (no mass assignment)."""
        user = self.resolve(name, actor=actor)
        allowed = {"forename", "lastname", "street", "city", "country", "phone", "email",
                   "language"}
        unknown = set(details) - allowed
        if unknown:
            raise invalid(_("${field} cannot be changed"), sorted(unknown)[0])
        values = {}
        for field, value in details.items():
            if value is None:
                continue
            if field == "email":
                values[field] = check_email(value)
            elif field == "language":
                if value not in ("en", "de"):
                    raise ValidationError(_("language must be en or de"), field="language")
                values[field] = value
            else:
                values[field] = check_text(value, field=field,
                                           max_length=50 if field == "phone" else 100)
        for field, value in values.items():
            setattr(user, field, value)
        self.events.log(source="cloud", name="user.details", actor=actor, obj=user,
                        message=f"details of {user.name} changed: {', '.join(sorted(values))}")
        self.db.flush()
        return user

    def set_password(self, name: str | None, password: str, *, actor: Actor) -> CloudUser:
        user = self.resolve(name, actor=actor)
        user.password_hash = hash_password(check_password(password))
        user.digest_secret = self.digests.seal(password)
        self._end_sessions(user)
        self.events.log(source="cloud", name="user.password", actor=actor, obj=user,
                        message=f"password of {user.name} changed")
        return user

    def set_status(self, name: str, status: CloudUserStatus, *, actor: Actor) -> CloudUser:
        user = self.resolve(name, actor=actor)
        if not actor.is_admin:
            raise PermissionDenied(_("only an admin may change an account's status"))
        old, user.status = user.status, status
        self._end_sessions(user)
        self.events.log(source="cloud", name="user.status", actor=actor, obj=user,
                        message=f"{user.name}: {old.value} -> {status.value}")
        return user

    def remove(self, name: str, *, actor: Actor) -> None:
        """Remove a user who has no open requests and no ledger history.

        A user with a history is disabled instead (their ledger is kept)."""
        user = self.resolve(name, actor=actor)
        open_requests = self.db.scalar(select(func.count(CloudRequest.id)).where(
            CloudRequest.user_id == user.id, CloudRequest.status.not_in(
                [RequestStatus.DONE, RequestStatus.DENIED, RequestStatus.NO_RESOURCES])))
        if open_requests:
            raise InvalidState(_("${name} has ${count} request(s) that are not finished; "
                                 "deprovision them first",
                                 mapping={"name": user.name, "count": open_requests}),
                               field="cloud_user")
        has_history = self.db.scalar(select(func.count(CloudRequest.id)).where(
            CloudRequest.user_id == user.id)) or self.billing.has_history(user)
        self.events.log(source="cloud", name="user.removed", actor=actor, obj=user,
                        message=f"cloud user {user.name} removed")
        if has_history:
            # requests and ledger rows refer to the user; keep the row, close the account
            user.status = CloudUserStatus.DISABLED
            # frees the name for a new account; fits the 50 characters of the column
            user.name = f"{user.name[:30]}~removed~{user.id}"
            user.password_hash = REMOVED_PASSWORD
        else:
            self.db.delete(user)
        self.db.flush()

    def get_limits(self, name: str | None, *, actor: Actor) -> CloudUserLimits:
        return self.resolve(name, actor=actor).limits

    def set_limits(self, name: str, *, actor: Actor, **limits: Any) -> CloudUserLimits:
        user = self.resolve(name, actor=actor)
        if not actor.is_admin:
            raise PermissionDenied(_("only an admin may change limits"))
        values = {field: check_int(limits.get(field, getattr(user.limits, field)), field=field)
                  for field in LIMIT_FIELDS}
        for field, value in values.items():
            setattr(user.limits, field, value)
        self.events.log(source="cloud", name="user.limits", actor=actor, obj=user,
                        message=f"limits of {user.name}: "
                        + ", ".join(f"{k}={v}" for k, v in values.items()))
        self.db.flush()
        return user.limits

    def usage(self, user: CloudUser) -> dict[str, int]:
        """What the user's quota-holding requests take (appliances, memory, disk, CPUs, NICs)."""
        row = self.db.execute(
            select(
                func.coalesce(func.sum(CloudRequest.quantity), 0),
                func.coalesce(func.sum(CloudRequest.quantity * CloudRequest.memory_mb), 0),
                func.coalesce(func.sum(CloudRequest.quantity * CloudRequest.disk_mb), 0),
                func.coalesce(func.sum(CloudRequest.quantity * CloudRequest.cpus), 0),
                func.coalesce(func.sum(CloudRequest.quantity * CloudRequest.network_cards), 0),
            ).where(CloudRequest.user_id == user.id, CloudRequest.status.in_(QUOTA_HOLDING))
        ).one()
        return dict(zip(("resources", "memory_mb", "disk_mb", "cpus", "network_cards"),
                        (int(value) for value in row), strict=True))


class ProductService:
    """The cloud selector: products with hourly prices."""

    def __init__(self, db: Session, *, events: EventService) -> None:
        self.db, self.events = db, events

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> ProductService:
        return cls(request.dbsession, events=request.find_service(EventService))

    @staticmethod
    def parse_type(value: str) -> ProductType:
        try:
            return ProductType(value)
        except ValueError:
            raise ValidationError(
                _("product_type must be one of ${choices}",
                  mapping={"choices": ", ".join(t.value for t in ProductType)}),
                field="product_type") from None

    def list(self, product_type: ProductType | None = None, *, enabled_only: bool = False,
             actor: Actor | None = None) -> list[Product]:
        """Products by type and display order; a cloud user sees enabled ones only."""
        if actor is not None and actor.is_cloud_user:
            enabled_only = True
        query = select(Product).order_by(Product.type, Product.sort_id, Product.id)
        if product_type is not None:
            query = query.where(Product.type == product_type)
        if enabled_only:
            query = query.where(Product.enabled.is_(True))
        return list(self.db.scalars(query))

    def offered(self, product_type: ProductType) -> set[str]:
        """The values of the enabled products of one type."""
        return {product.quantity for product in self.list(product_type, enabled_only=True)}

    @staticmethod
    def _price(value: Any) -> Decimal:
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            raise ValidationError(_("price must be a number"), field="price") from None
        if not price.is_finite() or price < 0:
            raise ValidationError(_("price must be a number of at least 0"), field="price")
        return price

    def get(self, product_id: int, *, actor: Actor) -> Product:
        product = self.db.get(Product, product_id)
        if product is None or (actor.is_cloud_user and not product.enabled):
            raise NotFound(_("no product ${id}", mapping={"id": product_id}),
                           field="product_id")
        return product

    def find_enabled(self, product_type: ProductType, quantity: str) -> Product | None:
        return self.db.scalar(select(Product).where(
            Product.type == product_type, Product.quantity == quantity,
            Product.enabled.is_(True)))

    def add(self, product_type: ProductType, quantity: str, price: Any, name: str, *,
            actor: Actor, description: str = "", enabled: bool = True) -> Product:
        admin_only(actor)
        quantity = check_text(str(quantity), field="quantity", required=True)
        if product_type in (ProductType.CPU, ProductType.DISK, ProductType.MEMORY,
                            ProductType.NETWORK, ProductType.QUANTITY):
            quantity = str(check_int(quantity, field="quantity", minimum=1))
        price = self._price(price)
        if self.db.scalar(select(Product.id).where(Product.type == product_type,
                                                   Product.quantity == quantity)):
            raise ValidationError(_("a ${type} product for ${quantity} exists",
                                    mapping={"type": product_type.value,
                                             "quantity": quantity}), field="quantity")
        sort_id = (self.db.scalar(select(func.max(Product.sort_id)).where(
            Product.type == product_type)) or -1) + 1
        product = Product(type=product_type, quantity=quantity, price=price,
                          name=check_text(name, field="name", max_length=50, required=True),
                          description=check_text(description, field="description",
                                                 max_length=255),
                          enabled=enabled, sort_id=sort_id)
        self.db.add(product)
        self.db.flush()
        self.events.log(source="cloud", name="product.added", actor=actor, obj=product,
                        message=f"product {product_type.value} {quantity} at {price} CCU/h")
        return product

    def set_enabled(self, product_id: int, enabled: bool, *, actor: Actor) -> Product:
        admin_only(actor)
        product = self.get(product_id, actor=actor)
        product.enabled = enabled
        self.events.log(source="cloud", name="product.enabled" if enabled else
                        "product.disabled", actor=actor, obj=product,
                        message=f"product {product.type.value} {product.quantity} "
                        + ("enabled" if enabled else "disabled"))
        return product

    def set_price(self, product_id: int, price: Any, *, actor: Actor) -> Product:
        admin_only(actor)
        product = self.get(product_id, actor=actor)
        new_price = self._price(price)
        old, product.price = product.price, new_price
        self.events.log(source="cloud", name="product.price", actor=actor, obj=product,
                        message=f"product {product.id}: {old} -> {new_price} CCU/h")
        return product

    def remove(self, product_id: int, *, actor: Actor) -> None:
        admin_only(actor)
        product = self.get(product_id, actor=actor)
        self.events.log(source="cloud", name="product.removed", actor=actor, obj=product,
                        message=f"product {product.type.value} {product.quantity} removed")
        self.db.delete(product)
        self.db.flush()


class CloudRequestService:
    """Cloud requests: submission with every check, and the status transitions."""

    def __init__(self, db: Session, *, config: CloudConfigService, users: CloudUserService,
                 products: ProductService, billing: BillingPort, events: EventService,
                 request: Any) -> None:
        self.db, self.config, self.users, self.products = db, config, users, products
        self.billing, self.events, self.request = billing, events, request

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CloudRequestService:
        return cls(request.dbsession, config=request.find_service(CloudConfigService),
                   users=request.find_service(CloudUserService),
                   products=request.find_service(ProductService),
                   billing=request.find_service(BillingPort),
                   events=request.find_service(EventService), request=request)

    # -- reading ----------------------------------------------------------------------------
    def get(self, request_id: Any, *, actor: Actor, for_update: bool = False) -> CloudRequest:
        """A request the actor may see; someone else's is answered like a missing one.
        ``for_update`` locks its row, so a status change is checked against its newest
        state (an admin approving while its user deprovisions, say)."""
        request_id = check_int(request_id, field="request_id", minimum=1)
        cloud_request = lock_row(self.db, CloudRequest, request_id) if for_update \
            else self.db.get(CloudRequest, request_id, options=REQUEST_DETAILS)
        if cloud_request is None or (actor.is_cloud_user and not owns(
                actor, cloud_request.user_id, cloud_request.user.name)):
            raise NotFound(_("no request ${id}", mapping={"id": request_id}),
                           field="request_id")
        return cloud_request

    def list(self, *, actor: Actor, cloud_user: str | None = None,
             statuses: Iterable[RequestStatus] | None = None) -> list[CloudRequest]:
        query = select(CloudRequest).order_by(CloudRequest.id.desc()).options(
            selectinload(CloudRequest.user), selectinload(CloudRequest.appliances),
            selectinload(CloudRequest.virtualization_type), selectinload(CloudRequest.image),
            selectinload(CloudRequest.kernel))
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.where(CloudRequest.user_id == user.id)
        if statuses is not None:
            query = query.where(CloudRequest.status.in_(list(statuses)))
        return list(self.db.scalars(query))

    def list_ids(self, *, actor: Actor, cloud_user: str | None = None) -> list[int]:
        """Ids of the requests ``list`` returns, newest first: one column, no rows loaded."""
        query = select(CloudRequest.id).order_by(CloudRequest.id.desc())
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.where(CloudRequest.user_id == user.id)
        # 100,000 rows make 100,000 short-lived tuples and no cycles: collecting the
        # process's whole heap for them (several times) would cost more than the query
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self.db.connection().execute(query).scalars().all()
        finally:
            if collecting:
                gc.enable()

    def page(self, *, actor: Actor, cloud_user: str | None = None,
             status: RequestStatus | None = None, after: str | None = None,
             before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """One page of ``list()`` (newest first), with what a list row shows loaded in a
        fixed number of queries: the user, type, image and appliances of the page's rows."""
        query = select(CloudRequest).options(
            selectinload(CloudRequest.user), selectinload(CloudRequest.appliances),
            selectinload(CloudRequest.virtualization_type), selectinload(CloudRequest.image))
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.where(CloudRequest.user_id == user.id)
        if status is not None:
            query = query.where(CloudRequest.status == status)
        return REQUEST_PAGER.page(self.db, query, after=after, before=before, size=size)

    def status_counts(self, *, actor: Actor, cloud_user: str | None = None
                      ) -> dict[RequestStatus, int]:
        """``count_by_status`` of the requests ``page`` lists (one user's, if given or if
        the actor is a cloud user): the filters' counts, one grouped query."""
        query = select(CloudRequest.status, func.count(CloudRequest.id))
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.where(CloudRequest.user_id == user.id)
        return dict(self.db.execute(query.group_by(CloudRequest.status)).all())

    def count_by_status(self) -> dict[RequestStatus, int]:
        """How many requests have each status (statuses without any are left out)."""
        return dict(self.db.execute(select(CloudRequest.status, func.count(CloudRequest.id))
                                    .group_by(CloudRequest.status)).all())

    def kernels(self, *, actor: Actor) -> list[Kernel]:
        kernels = list(self.db.scalars(select(Kernel).order_by(Kernel.name)))
        if self.config["cloud_selector"]:
            offered = self.products.offered(ProductType.KERNEL)
            kernels = [kernel for kernel in kernels if kernel.name in offered]
        return kernels

    def images(self, *, actor: Actor) -> list[Image]:
        """Master images everyone may use, plus the actor's own private images (admins: all
        masters and private images)."""
        query = select(Image).where(Image.is_master.is_(True)).order_by(Image.name)
        if actor.is_cloud_user:
            query = query.where((Image.owner_id.is_(None)) | (Image.owner_id == actor.id))
        return list(self.db.scalars(query))

    def virtualization_types(self, *, actor: Actor) -> list[VirtualizationType]:
        types = [vtype for vtype in self.db.scalars(
            select(VirtualizationType).order_by(VirtualizationType.id))
            if vtype.kind is not VirtualizationKind.HOST]
        if not self.config["request_physical_systems"]:
            types = [t for t in types if t.kind is not VirtualizationKind.PHYSICAL]
        if self.config["cloud_selector"]:
            offered = self.products.offered(ProductType.RESOURCE)
            types = [t for t in types if t.name in offered]
        return types

    def puppet_groups(self, *, actor: Actor) -> list[str]:
        return sorted(self.products.offered(ProductType.PUPPET))

    # -- submit -----------------------------------------------------------------------------
    def submit(self, *, actor: Actor, cloud_user: str | None, start: Any, stop: Any,
               kernel: str, image: str, memory_mb: Any, cpus: Any, disk_mb: Any,
               network_cards: Any, quantity: Any, virtualization: str, ha: bool = False,
               clone_on_deploy: bool | None = None,
               puppet_groups: Iterable[str] = ()) -> CloudRequest:
        """Validate a request and reserve its quota in this transaction, or raise and write
        nothing. Checks: the cloud is open, the user active, names known, values within the
        global maxima, enabled products (selector mode), per-user and global limits as
        ``current + requested <= limit``, and credit for the first hour."""
        if not self.config["cloud_enabled"]:
            raise InvalidState(_("the cloud is in maintenance; no new requests are accepted"))
        user = self.users.resolve(cloud_user, actor=actor)
        if user.status is not CloudUserStatus.ACTIVE:
            raise PermissionDenied(account_status(user.name, user.status), field="cloud_user")
        # Serialise submissions of one user: the quota check below must see every other
        # reservation of this user (a row lock; SQLite serialises writers anyway).
        lock_row(self.db, CloudUser, user.id)
        values = self._check_values(
            start=start, stop=stop, memory_mb=memory_mb, cpus=cpus, disk_mb=disk_mb,
            network_cards=network_cards, quantity=quantity)
        kernel_row = self._kernel(kernel)
        image_row = self._image(image, user=user)
        vtype = self._virtualization(virtualization)
        groups = tuple(dict.fromkeys(check_text(g, field="puppet_groups", max_length=50)
                                     for g in puppet_groups if g and g.strip()))
        ha = bool(ha)
        self._check_options(ha=ha, puppet_groups=groups, actor=actor)
        if self.config["cloud_selector"]:
            self._check_products(values, kernel=kernel_row.name, virtualization=vtype.name,
                                 puppet_groups=groups)
        self._check_limits(user, values)
        spec = RequestSpec(kernel=kernel_row.name, virtualization=vtype.name,
                           memory_mb=values["memory_mb"], cpus=values["cpus"],
                           disk_mb=values["disk_mb"], network_cards=values["network_cards"],
                           quantity=values["quantity"], ha=ha, puppet_groups=groups)
        quote = self.billing.quote(spec)
        self._check_credit(user, quote.total)
        clone = self._clone_on_deploy(clone_on_deploy, image_row)
        cloud_request = CloudRequest(
            user=user, status=RequestStatus.NEW, kernel=kernel_row, image=image_row,
            virtualization_type=vtype, ha=ha, clone_on_deploy=clone,
            puppet_groups=list(groups), price_per_hour=quote.per_appliance,
            price_breakdown=quote.components, **values)
        self.db.add(cloud_request)
        self.db.flush()
        self.events.log(source="cloud", name="request.submitted", actor=actor,
                        obj=cloud_request,
                        message=f"request {cloud_request.id} of {user.name}: "
                        f"{values['quantity']} x {vtype.name}, {values['cpus']} CPU, "
                        f"{values['memory_mb']} MB, {values['disk_mb']} MB disk, "
                        f"{quote.total} CCU/h")
        if self.config["auto_provision"]:
            self.transition(cloud_request, RequestStatus.APPROVED,
                            actor=Actor.system("auto_provision"), reason="auto_provision")
        return cloud_request

    def _check_values(self, **raw: Any) -> dict[str, Any]:
        now = utcnow()
        start = check_time(raw["start"], field="start") if raw["start"] else now
        stop = check_time(raw["stop"], field="stop")
        if stop < start + MIN_RUNTIME:
            raise ValidationError(_("stop must be at least one hour after start"),
                                  field="stop")
        if stop < now + MIN_RUNTIME:
            raise ValidationError(_("stop must be at least one hour from now"), field="stop")
        return {
            "start": start, "stop": stop,
            "memory_mb": check_int(raw["memory_mb"], field="memory_mb", minimum=1),
            "cpus": check_int(raw["cpus"], field="cpus", minimum=1),
            "disk_mb": check_int(raw["disk_mb"], field="disk_mb", minimum=1,
                                 maximum=self.config["max_disk_size"]),
            "network_cards": check_int(raw["network_cards"], field="network_cards", minimum=1,
                                       maximum=self.config["max_network_interfaces"]),
            "quantity": check_int(raw["quantity"], field="quantity", minimum=1,
                                  maximum=self.config["max_resources_per_cr"]),
        }

    def _kernel(self, name: str) -> Kernel:
        kernel = self.db.scalar(select(Kernel).where(Kernel.name == (name or "")))
        if kernel is None:
            raise NotFound(_("no kernel named ${name}", mapping={"name": repr(name)}),
                           field="kernel")
        return kernel

    def _image(self, name: str, *, user: CloudUser) -> Image:
        image = self.db.scalar(select(Image).where(Image.name == (name or "")))
        if image is None or not image.is_master or image.owner_id not in (None, user.id):
            raise NotFound(_("no image named ${name}", mapping={"name": repr(name)}),
                           field="image")
        return image

    def _virtualization(self, name: str) -> VirtualizationType:
        vtype = self.db.scalar(select(VirtualizationType).where(
            VirtualizationType.name == (name or "")))
        if vtype is None or vtype.kind is VirtualizationKind.HOST:
            raise NotFound(_("no virtualization type named ${name}",
                             mapping={"name": repr(name)}), field="virtualization")
        if vtype.kind is VirtualizationKind.PHYSICAL and not self.config[
                "request_physical_systems"]:
            raise ValidationError(_("physical systems cannot be requested"),
                                  field="virtualization")
        return vtype

    def _check_credit(self, user: CloudUser, first_hour: Decimal) -> None:
        """With billing on, the balance must pay the first hour of this request and an hour
        of every other request the user holds (so that credit is not promised twice)."""
        if not self.config["cloud_billing_enabled"]:
            return
        held = self.db.scalar(select(func.coalesce(func.sum(
            CloudRequest.price_per_hour * CloudRequest.quantity), 0)).where(
            CloudRequest.user_id == user.id, CloudRequest.status.in_(
                [RequestStatus.NEW, RequestStatus.APPROVED, RequestStatus.ACTIVE])))
        held = Decimal(str(held or 0))
        balance = self.billing.balance(user)
        if balance <= 0 or balance < first_hour + held:
            if held:
                message = _("the first hour costs ${price} CCUs and the other requests of "
                            "${name} ${held} CCUs per hour, but ${name} has ${balance}",
                            mapping={"price": plain(first_hour), "held": plain(held),
                                     "name": user.name, "balance": plain(balance)})
            else:
                message = _("the first hour costs ${price} CCUs but ${name} has ${balance}",
                            mapping={"price": plain(first_hour), "name": user.name,
                                     "balance": plain(balance)})
            raise InsufficientCredit(message, field="cloud_user")

    def options(self, *, actor: Actor) -> dict[str, Any]:
        """The optional choices the cloud offers now: ``ha`` (bool), ``puppet_groups``
        (names; empty when not offered) and ``clone_on_deploy_choice`` (whether the user may
        decide about clone-on-deploy)."""
        ha = self.config["show_ha_checkbox"] and (
            not self.config["cloud_selector"]
            or self.products.find_enabled(ProductType.HA, "1") is not None)
        return {"ha": ha,
                "puppet_groups": (self.puppet_groups(actor=actor)
                                  if self.config["show_puppet_groups"] else []),
                "clone_on_deploy_choice": not self.config["default_clone_on_deploy"]}

    def _check_options(self, *, ha: bool, puppet_groups: tuple[str, ...],
                       actor: Actor) -> None:
        """High availability and puppet groups only where the cloud offers them."""
        offered = self.options(actor=actor)
        if ha and not offered["ha"]:
            raise ValidationError(_("high availability is not offered"), field="ha")
        if puppet_groups and not self.config["show_puppet_groups"]:
            raise ValidationError(_("applications (puppet groups) are not offered"),
                                  field="puppet_groups")

    def _check_products(self, values: dict[str, Any], *, kernel: str, virtualization: str,
                        puppet_groups: tuple[str, ...]) -> None:
        wanted = [
            (ProductType.CPU, str(values["cpus"]), "cpus"),
            (ProductType.MEMORY, str(values["memory_mb"]), "memory_mb"),
            (ProductType.DISK, str(values["disk_mb"]), "disk_mb"),
            (ProductType.NETWORK, str(values["network_cards"]), "network_cards"),
            (ProductType.QUANTITY, str(values["quantity"]), "quantity"),
            (ProductType.KERNEL, kernel, "kernel"),
            (ProductType.RESOURCE, virtualization, "virtualization"),
        ] + [(ProductType.PUPPET, group, "puppet_groups") for group in puppet_groups]
        for product_type, quantity, field in wanted:
            if self.products.find_enabled(product_type, quantity) is None:
                raise invalid(_("${field} ${quantity} is not offered (no enabled ${type} "
                                "product)"), field, quantity=quantity,
                              type=product_type.value)

    def _check_limits(self, user: CloudUser, values: dict[str, Any]) -> None:
        usage = self.users.usage(user)
        quantity = values["quantity"]
        asked = {
            "resource_limit": ("resources", quantity, "quantity"),
            "memory_limit_mb": ("memory_mb", quantity * values["memory_mb"], "memory_mb"),
            "disk_limit_mb": ("disk_mb", quantity * values["disk_mb"], "disk_mb"),
            "cpu_limit": ("cpus", quantity * values["cpus"], "cpus"),
            "network_limit": ("network_cards", quantity * values["network_cards"],
                              "network_cards"),
        }
        limits = user.limits
        for limit_field, (usage_key, requested, field) in asked.items():
            limit = getattr(limits, limit_field) if limits else 0
            if limit and usage[usage_key] + requested > limit:
                raise LimitExceeded(
                    _("${field}: ${name} holds ${held} and asks for ${requested}, but the "
                      "limit is ${limit}", mapping={"field": field, "name": user.name,
                                                    "held": usage[usage_key],
                                                    "requested": requested, "limit": limit}),
                    field=field)
        max_apps = self.config["max_apps_per_user"]
        if max_apps and usage["resources"] + quantity > max_apps:
            raise LimitExceeded(
                _("quantity: ${name} holds ${held} appliance(s) and asks for ${requested}, "
                  "but the cloud allows ${limit} per user",
                  mapping={"name": user.name, "held": usage["resources"],
                           "requested": quantity, "limit": max_apps}), field="quantity")

    def _clone_on_deploy(self, asked: bool | None, image: Image) -> bool:
        if image.owner_id is not None:
            return False  # a private image is the user's own disk: used, never cloned
        if self.config["default_clone_on_deploy"] or asked is None:
            return True  # the user's choice counts only where the cloud offers one
        return bool(asked)

    # -- transitions ------------------------------------------------------------------------
    def transition(self, cloud_request: CloudRequest, status: RequestStatus, *, actor: Actor,
                   reason: str = "") -> CloudRequest:
        """Move a request along the table of allowed transitions; log it; schedule the next
        engine step after the commit."""
        current = cloud_request.status
        if status is current:
            return cloud_request
        if status not in TRANSITIONS[current]:
            raise InvalidState(_("request ${id} is ${status} and cannot become ${new_status}",
                                 mapping={"id": cloud_request.id, "status": current.value,
                                          "new_status": status.value}), field="state")
        if status is RequestStatus.NEW and cloud_request.appliances:
            raise InvalidState(_("request ${id} is being provisioned already",
                                 mapping={"id": cloud_request.id}), field="state")
        cloud_request.status = status
        cloud_request.status_reason = reason
        cloud_request.status_changed_at = utcnow()
        needs_engine = status in (RequestStatus.APPROVED, RequestStatus.DEPROVISION,
                                  RequestStatus.NO_RESOURCES)
        cloud_request.next_step_at = utcnow() if needs_engine else None
        cloud_request.failed_attempts = 0
        if status is RequestStatus.ACTIVE:
            cloud_request.next_step_at = cloud_request.stop
        self.db.flush()
        level = EventLevel.WARNING if status is RequestStatus.NO_RESOURCES else EventLevel.NOTICE
        self.events.log(source="cloud", name=f"request.{status.value}", actor=actor,
                        obj=cloud_request, level=level,
                        message=f"request {cloud_request.id}: {current.value} -> {status.value}"
                        + (f" ({reason})" if reason else ""))
        if needs_engine:
            kick_after_commit(self.request, "cloud.sweep")
        return cloud_request

    def allowed_actions(self, cloud_request: CloudRequest, *, actor: Actor) -> frozenset[str]:
        """What ``actor`` may do with the request now: a subset of ``approve``, ``deny``,
        ``deprovision``, ``extend``, ``remove``, ``retry`` (for showing only the buttons that
        work)."""
        status, possible = cloud_request.status, TRANSITIONS[cloud_request.status]
        actions = set()
        if RequestStatus.DEPROVISION in possible:
            actions.add("deprovision")
        if status in EXTENDABLE:
            actions.add("extend")
        if actor.is_admin:
            if status in (RequestStatus.APPROVED, RequestStatus.ACTIVE, RequestStatus.DEPROVISION,
                          RequestStatus.NO_RESOURCES) and cloud_request.next_step_at is None \
                    and cloud_request.failed_attempts:
                actions.add("retry")  # the engine gave up after repeated failed steps
            if RequestStatus.APPROVED in possible:
                actions.add("approve")
            if RequestStatus.DENIED in possible and not cloud_request.appliances:
                actions.add("deny")
            if status in (RequestStatus.NEW, RequestStatus.DENIED, RequestStatus.DONE,
                          RequestStatus.NO_RESOURCES):
                actions.add("remove")
        return frozenset(actions)

    def approve(self, request_id: Any, *, actor: Actor) -> CloudRequest:
        self._admin_only(actor)
        return self.transition(self.get(request_id, actor=actor, for_update=True),
                               RequestStatus.APPROVED, actor=actor)

    def deny(self, request_id: Any, *, actor: Actor, reason: str = "") -> CloudRequest:
        self._admin_only(actor)
        cloud_request = self.get(request_id, actor=actor, for_update=True)
        if cloud_request.appliances:
            raise InvalidState(_("request ${id} is being provisioned already; deprovision it "
                                 "instead", mapping={"id": cloud_request.id}), field="state")
        return self.transition(cloud_request, RequestStatus.DENIED, actor=actor, reason=reason)

    def deprovision(self, request_id: Any, *, actor: Actor, reason: str = "") -> CloudRequest:
        """Tear the request down (user, admin, stop time, credit): new, approved or active."""
        cloud_request = self.get(request_id, actor=actor, for_update=True)
        return self.transition(cloud_request, RequestStatus.DEPROVISION, actor=actor,
                               reason=reason or f"by {actor.label}")

    def set_state(self, request_id: Any, state: str, *, actor: Actor) -> CloudRequest:
        """Admin state change by name (``approve``/``deny`` accepted for the old API)."""
        names = {"approved": "approve", "approve": "approve", "denied": "deny",
                 "deny": "deny", "new": "new", "deprovision": "deprovision"}
        action = names.get((state or "").strip().lower())
        if action is None:
            raise ValidationError(_("state must be approved, denied, new or deprovision"),
                                  field="state")
        if action == "approve":
            return self.approve(request_id, actor=actor)
        if action == "deny":
            return self.deny(request_id, actor=actor)
        if action == "deprovision":
            self._admin_only(actor)
            return self.deprovision(request_id, actor=actor)
        self._admin_only(actor)
        return self.transition(self.get(request_id, actor=actor, for_update=True),
                               RequestStatus.NEW, actor=actor, reason="reset by admin")

    def extend(self, request_id: Any, stop: Any, *, actor: Actor) -> CloudRequest:
        cloud_request = self.get(request_id, actor=actor, for_update=True)
        if cloud_request.status not in EXTENDABLE:
            raise InvalidState(_("request ${id} is ${status} and cannot be extended",
                                 mapping={"id": cloud_request.id,
                                          "status": cloud_request.status.value}),
                               field="request_id")
        stop = check_time(stop, field="stop")
        if stop < cloud_request.start + MIN_RUNTIME or stop < utcnow() + MIN_RUNTIME:
            raise ValidationError(_("stop must be at least one hour after start and from now"),
                                  field="stop")
        old, cloud_request.stop = cloud_request.stop, stop
        if cloud_request.status is RequestStatus.ACTIVE:
            cloud_request.next_step_at = stop
        self.events.log(source="cloud", name="request.extended", actor=actor,
                        obj=cloud_request, message=f"request {cloud_request.id}: stop "
                        f"{old:%Y-%m-%d %H:%M} -> {stop:%Y-%m-%d %H:%M} UTC")
        return cloud_request

    def remove(self, request_id: Any, *, actor: Actor) -> None:
        """Delete a request that never ran (new or denied) or whose teardown is complete and
        that was never charged (charged requests stay for the ledger)."""
        self._admin_only(actor)
        cloud_request = self.get(request_id, actor=actor, for_update=True)
        if cloud_request.status not in (RequestStatus.NEW, RequestStatus.DENIED,
                                        RequestStatus.DONE, RequestStatus.NO_RESOURCES):
            raise InvalidState(_("request ${id} is ${status}; only new, denied, done or "
                                 "no-resources requests can be removed",
                                 mapping={"id": cloud_request.id,
                                          "status": cloud_request.status.value}),
                               field="request_id")
        if any(ca.state is not CloudApplianceState.REMOVED
               for ca in cloud_request.appliances):
            raise InvalidState(_("request ${id} still has appliances being torn down",
                                 mapping={"id": cloud_request.id}), field="request_id")
        if self.billing.has_history(cloud_request.user, request_id=cloud_request.id):
            raise InvalidState(_("request ${id} was charged; it is kept with the ledger",
                                 mapping={"id": cloud_request.id}), field="request_id")
        self.events.log(source="cloud", name="request.removed", actor=actor,
                        obj=cloud_request, message=f"request {cloud_request.id} removed")
        for cloud_appliance in cloud_request.appliances:
            self.db.delete(cloud_appliance)
        self.db.delete(cloud_request)
        self.db.flush()

    _admin_only = staticmethod(admin_only)

    # -- cloud appliances -------------------------------------------------------------------
    def appliance(self, appliance_id: Any, *, actor: Actor) -> CloudAppliance:
        appliance_id = check_int(appliance_id, field="appliance_id", minimum=1)
        cloud_appliance = self.db.get(CloudAppliance, appliance_id)
        if cloud_appliance is None or (actor.is_cloud_user and not owns(
                actor, cloud_appliance.request.user_id, cloud_appliance.request.user.name)):
            raise NotFound(_("no appliance ${id}", mapping={"id": appliance_id}),
                           field="appliance_id")
        return cloud_appliance

    def appliances(self, *, actor: Actor, cloud_user: str | None = None
                   ) -> list[CloudAppliance]:
        query = select(CloudAppliance).join(CloudRequest).order_by(CloudAppliance.id.desc())
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.where(CloudRequest.user_id == user.id)
        return list(self.db.scalars(query))

    def appliance_ids(self, *, actor: Actor, cloud_user: str | None = None) -> list[int]:
        """The ids of ``appliances()``, newest first: one single-column query."""
        query = select(CloudAppliance.id).order_by(CloudAppliance.id.desc())
        if actor.is_cloud_user or cloud_user:
            user = self.users.resolve(cloud_user, actor=actor)
            query = query.join(CloudRequest).where(CloudRequest.user_id == user.id)
        return list(self.db.scalars(query))

    def comment_appliance(self, appliance_id: Any, comment: str, *, actor: Actor
                          ) -> CloudAppliance:
        cloud_appliance = self.appliance(appliance_id, actor=actor)
        cloud_appliance.comment = check_text(comment, field="comment", max_length=255)
        self.events.log(source="cloud", name="appliance.comment", actor=actor,
                        obj=cloud_appliance, level=EventLevel.INFO,
                        message=f"comment of appliance {cloud_appliance.id} changed")
        return cloud_appliance
