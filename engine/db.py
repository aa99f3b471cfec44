"""Database wiring: one MetaData with a naming convention, engines, sessions bound to pyramid_tm.

Application code never commits: ``request.dbsession`` is joined to ``request.tm`` by
zope.sqlalchemy, and a scheduled job gets the same arrangement from the job runner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import zope.sqlalchemy
from sqlalchemy import DateTime, MetaData, engine_from_config, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from engine import clock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the only kind of time the engine handles), from
    the engine's one clock (``engine.clock``)."""
    return clock.now()


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    SQLite and MariaDB have no time-zone-aware column type, so values are stored as naive UTC
    and handed back aware. Naive input is refused: it is always a bug.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            # MariaDB's DATETIME drops fractions of a second unless asked for them
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the engine stores UTC-aware times only")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: execution option of a connection whose SQLite transaction begins deferred (see
#: ``begin_for_reading``)
DEFERRED_BEGIN = "qrm_sqlite_deferred_begin"


def begin_for_reading(request: Any) -> None:
    """Let the transaction of ``request`` begin without SQLite's write lock, for a unit of
    work that only reads (an API call to a read-only operation): a plain (deferred)
    ``BEGIN`` instead of ``BEGIN IMMEDIATE``, so that it reads its snapshot (WAL) while a
    writer holds the lock, instead of queueing behind every writer.

    To be called before the request's session first touches the database; later it changes
    nothing (the transaction has begun IMMEDIATE, which is always safe). Other databases
    are not affected. A write in such a transaction is still correct: SQLite either takes
    the lock for it or, when another writer committed since this transaction's snapshot,
    refuses it ("database is locked"); ``is_deferred_write_conflict`` makes that error
    retryable, and the retry (any attempt after the first) begins IMMEDIATE again.
    """
    if request.environ.get("retry.attempt", 0):
        return
    dbsession = request.dbsession
    dbsession.execution_options = dbsession.execution_options.union({DEFERRED_BEGIN: True})


def is_deferred_write_conflict(request: Any, error: BaseException) -> bool:
    """Whether ``error`` is SQLite refusing a write in a transaction that began deferred
    (``begin_for_reading``): the unit of work can run again, from an IMMEDIATE begin."""
    from sqlalchemy.exc import OperationalError

    dbsession = request.__dict__.get("dbsession")  # made on first use (reified)
    if not isinstance(error, OperationalError) or dbsession is None:
        return False
    return (bool(dbsession.execution_options.get(DEFERRED_BEGIN, False))
            and "database is locked" in str(error.orig))


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE so concurrent writers queue instead of failing
    (reads asked for with ``begin_for_reading`` begin deferred)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(DEFERRED_BEGIN):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.", **options: Any) -> Engine:
    """Create the engine from settings; SQLite gets the pragmas it needs to be a real database."""
    url = make_url(settings[prefix + "url"])
    if url.get_backend_name() == "mysql":
        options.setdefault("pool_recycle", 3600)
    if url.get_backend_name() != "sqlite":
        # a server may have dropped an idle connection; a local file cannot
        options.setdefault("pool_pre_ping", True)
    engine = engine_from_config(settings, prefix, **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def get_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_tm_session(session_factory: sessionmaker[Session], transaction_manager: Any,
                   request: Any = None) -> Session:
    """A session joined to ``transaction_manager``: commit/abort belong to the manager."""
    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def includeme(config: Any) -> None:
    """Add ``request.dbsession`` (one session per request, joined to ``request.tm``)."""
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    if config.registry.get("dbsession_factory") is None:
        config.registry["dbsession_factory"] = get_session_factory(get_engine(settings))

    def dbsession(request: Any) -> Session:
        # Looked up per request so that tests can bind the factory to their own connection.
        return get_tm_session(request.registry["dbsession_factory"], request.tm, request=request)

    config.add_request_method(dbsession, reify=True)
