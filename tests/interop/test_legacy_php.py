"""openQRM's legacy API through PHP's SoapClient, as openQRM's example clients call it
(``php/legacy_client.php``: SOAP 1.2, WSDL mode on the published WSDLs, HTTP login and
password, one comma string per call), against the app served by waitress."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import shutil
import subprocess
import types
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from engine.cloud.models import CloudRequest, RequestStatus
from engine.events.models import Event
from tests.interop.conftest import read, serve

SCRIPT = pathlib.Path(__file__).parent / "php" / "legacy_client.php"
ADMIN_WSDL = "/openqrm/boot-service/cloudadmin.wdsl"
USER_WSDL = "/openqrm/boot-service/clouduser.wdsl"
PASSWORD = "legacy-interop-1"


@pytest.fixture(scope="module")
def php() -> str:
    """php with the soap extension: skipped without it, except on CI (where
    scripts/install-system-deps.sh installs it and a missing one is a failure)."""
    binary = shutil.which("php")
    modules = subprocess.run([binary, "-m"], capture_output=True, text=True, check=False
                             ).stdout.split() if binary else []
    if "soap" not in modules:
        if os.environ.get("CI") == "true":
            pytest.fail("php with the soap extension is missing (scripts/install-system-deps.sh "
                        "installs php-cli and php-soap)")
        pytest.skip("php with the soap extension is not installed")
    return binary


@pytest.fixture(scope="module")
def legacy_server(app_settings: dict[str, Any], db_url: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    """The app with the legacy API switched on, served by waitress on 127.0.0.1."""
    directory = tmp_path_factory.mktemp("legacy")
    url = f"sqlite:///{directory / 'legacy.sqlite'}" if db_url.startswith("sqlite") \
        else db_url
    with serve(dict(app_settings, **{"qrm.legacy_api": "true"}), url,
               directory / "sim-datacenter.sqlite") as server:
        yield server


def run_php(php: str, wsdl: str, login: str, password: str,
            calls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [php, str(SCRIPT), wsdl, login, password],
        input=json.dumps([{"operation": operation, "symbol": symbol}
                          for operation, symbol in calls]),
        capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return json.loads(completed.stdout)


def results(answers: list[dict[str, Any]]) -> list[Any]:
    for answer in answers:
        assert "fault" not in answer, answer
    return [answer["result"] for answer in answers]


def refusals(server: Any) -> list[tuple[str, str]]:
    return read(server, lambda request: [tuple(row) for row in request.dbsession.execute(
        select(Event.actor, Event.message).where(Event.name == "legacy.refused")
        .order_by(Event.id)).all()])


def test_openqrm_client_walks_the_request_path(php: str, legacy_server: Any) -> None:
    server = legacy_server
    admin_wsdl, user_wsdl = server.url + ADMIN_WSDL, server.url + USER_WSDL
    admin = f"admin,admin,{server.password}"

    def as_admin(*calls: tuple[str, str]) -> list[Any]:
        return results(run_php(php, admin_wsdl, "admin", server.password, list(calls)))

    def as_user(name: str, *calls: tuple[str, str]) -> list[Any]:
        return results(run_php(php, user_wsdl, name, PASSWORD, list(calls)))

    # the admin creates two cloud users and sets their CCUs
    alice_id, bob_id, *done = as_admin(
        ("CloudUserCreate", f"{admin},alice,{PASSWORD},alice@example.com"),
        ("CloudUserCreate", f"{admin},bob,{PASSWORD},bob@example.com"),
        ("CloudUserSetCCUs", f"{admin},alice,300"),
        ("CloudUserSetCCUs", f"{admin},bob,50"),
        ("CloudUserGetCCUs", f"{admin},alice"))
    assert isinstance(alice_id, int)
    assert isinstance(bob_id, int)
    assert done == [0, 0, 300]
    # alice provisions (openQRM's dd-mm-yyyy HH:MM dates), lists and reads her request
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    stop = now + dt.timedelta(hours=4)
    alice = f"user,alice,{PASSWORD}"
    (request_id,) = as_user("alice", (
        "CloudProvision", f"{alice},alice,{now:%d-%m-%Y %H:%M},{stop:%d-%m-%Y %H:%M},"
                          "default,debian-12,1024,1,2000,1,1,sim-vm,0,"))
    assert isinstance(request_id, int)
    listed, details, user_details = as_user(
        "alice", ("CloudRequestGetList", f"{alice},alice"),
        ("CloudRequestGetDetails", f"{alice},{request_id}"),
        ("CloudUserGetDetails", f"{alice},alice"))
    assert listed == [request_id]
    assert details["status"] == "new"
    assert (details["start"], details["stop"]) == (f"{now:%d-%m-%Y %H-%M}",
                                                   f"{stop:%d-%m-%Y %H-%M}")
    assert (details["ram_req"], details["resource_type_req"]) == ("1024", "sim-vm")
    assert (user_details["name"], user_details["ccunits"]) == ("alice", "300")
    # the admin approves; the engine provisions
    assert as_admin(("CloudRequestSetState", f"{admin},{request_id},approve")) == [0]
    server.run_jobs()
    (appliances,) = as_user("alice", ("CloudApplianceGetList", f"{alice},alice"))
    assert len(appliances) == 1
    (appliance, details) = as_user(
        "alice", ("CloudApplianceGetDetails", f"{alice},{appliances[0]}"),
        ("CloudRequestGetDetails", f"{alice},{request_id}"))
    assert appliance["cloud_appliance_state"] == "1"
    assert appliance["cloud_appliance_cr_id"] == str(request_id)
    assert details["status"] == "active"
    # extend by two hours (a Unix time, as openQRM's CloudRequestExtend takes it)
    new_stop = int((stop + dt.timedelta(hours=2)).timestamp())
    extended, details = as_user(
        "alice", ("CloudRequestExtend", f"{alice},{request_id},{new_stop}"),
        ("CloudRequestGetDetails", f"{alice},{request_id}"))
    assert extended == 0
    assert details["stop"] == f"{stop + dt.timedelta(hours=2):%d-%m-%Y %H-%M}"

    # a wrong password, and bob at alice's request: both null, as openQRM answered
    wrong = run_php(php, user_wsdl, "alice", "not-the-password", [
        ("CloudRequestGetDetails", f"user,alice,not-the-password,{request_id}")])
    bob = f"user,bob,{PASSWORD}"
    foreign = as_user("bob", ("CloudRequestGetDetails", f"{bob},{request_id}"),
                      ("CloudDeProvision", f"{bob},{request_id}"))
    assert wrong == [{"result": None}]
    assert foreign == [None, None]
    logged = refusals(server)
    assert ("clouduser:alice", "legacy API CloudRequestGetDetails refused: wrong user name "
            "or password") in logged
    assert ("clouduser:bob", f"legacy API CloudRequestGetDetails refused: request_id: no "
            f"request {request_id}") in logged
    assert ("clouduser:bob", f"legacy API CloudDeProvision refused: request_id: no request "
            f"{request_id}") in logged

    # alice deprovisions; the engine tears down
    assert as_user("alice", ("CloudDeProvision", f"{alice},{request_id}")) == [0]
    server.run_jobs()
    status = read(server, lambda request: request.dbsession.get(CloudRequest, request_id)
                  .status)
    assert status is RequestStatus.DONE
    (details,) = as_user("alice", ("CloudRequestGetDetails", f"{alice},{request_id}"))
    assert details["status"] == "done"
    (transactions,) = as_user("alice", ("CloudUserGetTransactions", f"{alice},alice,10"))
    assert any(row["reason"] != "" and row["charge"] not in ("", "0")
               for row in transactions)


def test_openqrm_client_sees_faults_for_malformed_strings(php: str, legacy_server: Any
                                                          ) -> None:
    """A string with the wrong field count reaches PHP as a SoapFault naming it."""
    server = legacy_server
    (answer,) = run_php(php, server.url + ADMIN_WSDL, "admin", server.password, [
        ("CloudUserGetCCUs", f"admin,admin,{server.password}")])
    assert answer["fault"]["code"].endswith("Sender")
    assert answer["fault"]["string"] == (
        "CloudUserGetCCUs takes 4 comma-separated fields (mode,user,password,cloud_user), "
        "not 3")
