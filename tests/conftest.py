"""Test fixtures: the schema from ``alembic upgrade head``, one rolled-back outer transaction
per test, the real app, and requests for service-level tests.

``QRM_TEST_DATABASE_URL`` selects PostgreSQL or MariaDB; SQLite (a temporary file) otherwise.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import transaction
from alembic import command
from alembic.config import Config
from pyramid.scripting import prepare
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from engine.app import make_config
from engine.db import get_engine, get_session_factory
from engine.security import Actor

ROOT = pathlib.Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    return Config(str(ROOT / "development.ini"))


def migrate(engine: Any, *, fresh: bool) -> None:
    """Bring the database at ``engine`` to head (from scratch if ``fresh``)."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        if fresh:
            command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("QRM_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'qrm-test.sqlite'}"


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Any]:
    engine = get_engine({"sqlalchemy.url": db_url})
    migrate(engine, fresh=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app_settings(db_url: str) -> dict[str, Any]:
    return {
        "sqlalchemy.url": db_url,
        "qrm.session_secret": "test-secret-test-secret-test-secret",
        "qrm.kick": "inline",
        "qrm.scheduler": "false",
        "qrm.sim.boot_delay": "0",
        "qrm.secret_key": "test-server-key-test-server-key",
        "pyramid.default_locale_name": "en",
        # cheap hashes: every log-in and API call verifies one (production keeps the
        # library's costs)
        "qrm.argon2.time_cost": "1",
        "qrm.argon2.memory_cost": "1024",
        "qrm.argon2.parallelism": "1",
    }


@pytest.fixture(scope="session")
def app_config(app_settings: dict[str, Any], db_engine: Any) -> Any:
    config = make_config(app_settings)
    config.commit()
    return config


@pytest.fixture(scope="session")
def wsgi_app(app_config: Any) -> Any:
    return app_config.make_wsgi_app()


@pytest.fixture
def registry(app_config: Any) -> Any:
    return app_config.registry


@pytest.fixture
def connection(db_engine: Any, registry: Any) -> Iterator[Any]:
    """One outer transaction per test, rolled back at the end: every commit inside the test
    (web requests, jobs) becomes a savepoint of it."""
    connection = db_engine.connect()
    outer = connection.begin()
    saved = registry["dbsession_factory"]
    registry["dbsession_factory"] = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield connection
    finally:
        registry["dbsession_factory"] = saved
        outer.rollback()
        connection.close()


@contextlib.contextmanager
def new_request(registry: Any) -> Iterator[Any]:
    env = prepare(registry=registry)
    request = env["request"]
    request.tm = transaction.TransactionManager(explicit=True)
    request.tm.begin()
    try:
        yield request
    finally:
        if request.tm.isDoomed() or request.tm.get().status == "Active":
            request.tm.abort()
        env["closer"]()


@pytest.fixture
def pyramid_request(registry: Any, connection: Any) -> Iterator[Any]:
    """A request for service-level tests: ``pyramid_request.find_service(...)``; call
    ``commit(pyramid_request)`` to commit (to the test's savepoint) and start anew."""
    with new_request(registry) as request:
        yield request


def commit(request: Any) -> None:
    """Commit the request's transaction (firing after-commit kicks) and begin a new one.

    Marked changed even when this request only read: zope.sqlalchemy rolls a read-only
    session back, and that would also undo what web requests of the test wrote meanwhile
    (their savepoints sit inside this one's)."""
    from zope.sqlalchemy import mark_changed

    mark_changed(request.dbsession)
    request.tm.commit()
    request.tm.begin()


@pytest.fixture(autouse=True)
def sim_state(request: pytest.FixtureRequest, tmp_path: pathlib.Path,
              monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Every test its own simulated datacenter: the ``sim`` plugin's state file (which does
    not roll back with the test's transaction) under ``tmp_path``. ``QRM_SIM_STATE`` reaches
    every app configured during the test (``committing_registry``, ``live_server``, the CLI);
    the session's app was configured once, so its settings are pointed there too."""
    path = tmp_path / "sim-datacenter.sqlite"
    monkeypatch.setenv("QRM_SIM_STATE", str(path))
    if "app_config" in request.fixturenames:
        settings = request.getfixturevalue("app_config").registry.settings
        monkeypatch.setitem(settings, "qrm.sim.state", str(path))
    return path


@pytest.fixture
def admin_actor() -> Actor:
    return Actor.admin("root-admin", None)


@pytest.fixture
def testapp(wsgi_app: Any, connection: Any) -> Any:
    import webtest

    return webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "localhost"})


@pytest.fixture
def committing_registry(app_settings: dict[str, Any], db_url: str, tmp_path: pathlib.Path
                        ) -> Iterator[Any]:
    """A registry whose transactions really commit (for tests of concurrent processes).

    SQLite: a fresh database file per test. PostgreSQL/MariaDB: the shared test database,
    rebuilt from scratch afterwards so later tests start clean.
    """
    url = db_url
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'committing.sqlite'}"
    engine = get_engine({"sqlalchemy.url": url})
    migrate(engine, fresh=not url.startswith("sqlite"))
    config = make_config(dict(app_settings, **{"sqlalchemy.url": url}))
    config.registry["dbsession_factory"] = get_session_factory(engine)
    config.commit()
    try:
        yield config.registry
    finally:
        if not url.startswith("sqlite"):
            migrate(engine, fresh=True)
        engine.dispose()


__all__ = ["commit", "create_engine", "migrate", "new_request"]


# -- the demo cloud -------------------------------------------------------------------------
DEMO_PASSWORD = "demo-password-1"


@pytest.fixture
def demo_cloud(pyramid_request: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The demo datacenter and cloud (sim plugin started, products, admin ``admin`` and cloud
    user ``demo``, both with password ``DEMO_PASSWORD``), committed to the test's savepoint."""
    from engine.cloud.demo import load_demo

    monkeypatch.setenv("QRM_DEMO_PASSWORD", DEMO_PASSWORD)
    credentials = load_demo(pyramid_request)
    commit(pyramid_request)
    return {"request": pyramid_request, "credentials": credentials,
            "password": DEMO_PASSWORD}


def run_jobs(registry: Any, *job_ids: str, rounds: int = 5) -> None:
    """Run the named jobs (default: the engine's moving parts) a few rounds, as the scheduler
    would, each run in its own transaction."""
    from engine.scheduler.runner import run_job

    job_ids = job_ids or ("plugins.monitor", "cloud.sweep", "billing.charge")
    for _ in range(rounds):
        for job_id in job_ids:
            run_job(registry, registry["qrm.jobs"][job_id])


@pytest.fixture
def live_server(committing_registry: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real app served by waitress on 127.0.0.1 (a free port) over a committing database
    with the demo loaded; yields an object with ``url``, ``registry`` and ``password``."""
    import socket
    import threading
    import types

    from waitress.server import create_server

    from engine.cloud.demo import load_demo
    from engine.scheduler.runner import run_in_transaction

    monkeypatch.setenv("QRM_DEMO_PASSWORD", DEMO_PASSWORD)
    run_in_transaction(committing_registry, load_demo)
    from pyramid.router import Router

    app = Router(committing_registry)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}", registry=committing_registry,
                                    password=DEMO_PASSWORD, port=port)
    finally:
        stop_server(server)
        thread.join(timeout=10)


def stop_server(server: Any) -> None:
    """Stop a waitress server: its loop ends once every channel is closed, including the
    keep-alive connections of clients, so they are closed from inside the loop's thread."""

    def close_everything() -> None:
        for channel in list(server._map.values()):
            channel.close()

    server.trigger.pull_trigger(close_everything)
