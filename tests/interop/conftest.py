"""The API server for the interoperability tests: the real app on 127.0.0.1 over a committing
database with the demo cloud and a full price list, started once per test module (a fresh
migration per server costs more than all the calls of a module together).

Every SOAP request and response it handles is recorded, and after each test the ones of that
test are validated with xmllint against the SOAP envelope and the schemas embedded in the
endpoint's WSDL (``tests.interop.xmlcheck``): a message that does not validate fails the
test."""

from __future__ import annotations

import contextlib
import itertools
import pathlib
import socket
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from pyramid.router import Router
from waitress.server import create_server

from billing.services import BillingService
from engine.app import make_config
from engine.cloud.demo import load_demo
from engine.cloud.models import CloudUserStatus, ProductType
from engine.cloud.services import CloudRequestService, CloudUserService, ProductService
from engine.db import get_engine, get_session_factory
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from tests.conftest import DEMO_PASSWORD, migrate, run_jobs, stop_server
from tests.interop.xmlcheck import Recorder, check_messages

#: what the interop requests ask for; offered as products where the seeded price list has
#: no such product
OFFERS = {
    ProductType.CPU: ("1", "2"), ProductType.MEMORY: ("512", "1024"),
    ProductType.DISK: ("2000", "4000"), ProductType.NETWORK: ("1",),
    ProductType.QUANTITY: ("1", "2"),
}
#: a good password for the accounts the tests create
PASSWORD = "interop-password-1"

_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    """A cloud user name no other test of the server uses."""
    return f"{prefix}{next(_names)}"


def offer_products(request: Any) -> None:
    """Add the products the tests' requests need and the price list lacks (1 CCU per hour
    each)."""
    products = request.find_service(ProductService)
    existing = {(product.type, product.quantity) for product in products.list()}
    for product_type, quantities in OFFERS.items():
        for quantity in quantities:
            if (product_type, quantity) not in existing:
                products.add(product_type, quantity, 1, f"{product_type.value} {quantity}",
                             actor=Actor.system("tests"))


ADMIN = Actor.system("tests")


def create_user(server: Any, prefix: str, *, credit: int = 0,
                status: CloudUserStatus = CloudUserStatus.ACTIVE) -> str:
    """A new cloud user (password ``PASSWORD``) with ``credit`` CCUs; returns its name."""
    name = unique_name(prefix)

    def create(request: Any) -> None:
        user = request.find_service(CloudUserService).create(
            name, PASSWORD, f"{name}@example.com", actor=ADMIN, status=status)
        if credit:
            request.find_service(BillingService).credit(user, credit, reason="Test credit",
                                                        comment="", actor=ADMIN)

    run_in_transaction(server.registry, create)
    return name


def submit_request(server: Any, name: str, *, approve: bool = False) -> int:
    """A request of ``name`` (one small VM for three hours); approved and provisioned by
    the engine if ``approve``. Returns its id."""
    import datetime as dt

    def submit(request: Any) -> int:
        requests = request.find_service(CloudRequestService)
        cloud_request = requests.submit(
            actor=ADMIN, cloud_user=name, start=None,
            stop=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3), kernel="default",
            image="debian-12", memory_mb=512, cpus=1, disk_mb=2000, network_cards=1,
            quantity=1, virtualization="sim-vm")
        if approve:
            requests.approve(cloud_request.id, actor=ADMIN)
        return cloud_request.id

    request_id = run_in_transaction(server.registry, submit)
    if approve:
        server.run_jobs()
    return request_id


def read(server: Any, func: Any) -> Any:
    """``func(request)`` in a transaction of its own (to check what the API left behind)."""
    return run_in_transaction(server.registry, func)


@contextlib.contextmanager
def serve(settings: dict[str, Any], url: str, sim_state: pathlib.Path
          ) -> Iterator[types.SimpleNamespace]:
    """Serve the app over the database at ``url`` (migrated from scratch), with its own
    simulated datacenter in ``sim_state``, until the block ends; PostgreSQL and MariaDB
    databases are rebuilt afterwards for the tests after."""
    engine = get_engine({"sqlalchemy.url": url})
    migrate(engine, fresh=not url.startswith("sqlite"))
    config = make_config(dict(settings, **{"sqlalchemy.url": url,
                                           "qrm.sim.state": str(sim_state)}))
    config.registry["dbsession_factory"] = get_session_factory(engine)
    config.commit()
    registry = config.registry
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QRM_DEMO_PASSWORD", DEMO_PASSWORD)
        run_in_transaction(registry, load_demo)
    run_in_transaction(registry, offer_products)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = Recorder(Router(registry))
    server = create_server(recorder, host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}", registry=registry,
                                    password=DEMO_PASSWORD, port=port,
                                    run_jobs=lambda: run_jobs(registry),
                                    messages=recorder.messages, wsdls={})
    finally:
        stop_server(server)
        thread.join(timeout=5)
        if not url.startswith("sqlite"):
            migrate(engine, fresh=True)
        engine.dispose()


@pytest.fixture(scope="module")
def api_server(app_settings: dict[str, Any], db_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    """The app with the demo loaded, served for the whole test module: ``url``,
    ``registry``, ``password`` (of ``admin`` and ``demo``), ``run_jobs()``."""
    url = db_url
    directory: pathlib.Path = tmp_path_factory.mktemp("interop")
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{directory / 'api.sqlite'}"
    # app_settings carry cheap argon2 costs: every API call verifies a password
    with serve(app_settings, url, directory / "sim-datacenter.sqlite") as server:
        yield server


def wsdls_of(server: types.SimpleNamespace) -> dict[str, bytes]:
    """The live server's WSDLs by endpoint name (fetched once per server)."""
    import urllib.request

    for endpoint in ("cloudadmin", "clouduser"):
        if endpoint not in server.wsdls:
            with urllib.request.urlopen(f"{server.url}/soap/{endpoint}?wsdl",
                                        timeout=30) as response:
                server.wsdls[endpoint] = response.read()
    return server.wsdls


@pytest.fixture(autouse=True)
def soap_messages_validate(request: pytest.FixtureRequest, tmp_path: pathlib.Path
                           ) -> Iterator[None]:
    """After a test that used the API server: every SOAP request and response of the test
    validates against the envelope and the endpoint's embedded schemas."""
    if "api_server" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("api_server")
    first = len(server.messages)
    yield
    messages = server.messages[first:]
    if not messages:
        return
    problems = check_messages(messages, wsdls_of(server), tmp_path / "soap-messages")
    assert not problems, "SOAP messages that do not validate:\n" + "\n".join(problems)
