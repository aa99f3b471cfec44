"""The SOAP API through PHP's SoapClient (WSDL mode, SOAP_SINGLE_ELEMENT_ARRAYS, a
WS-Security header built by hand), driven by ``php/call.php``."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from soap.operations import OPERATIONS_BY_NAME
from tests.interop.conftest import PASSWORD, create_user, submit_request
from tests.interop.scenario import walk_request_path

SCRIPT = pathlib.Path(__file__).parent / "php" / "call.php"
ARRAY_WRAPPERS = ({"int"}, {"string"}, {"Transaction"})


def _php_with_soap() -> str | None:
    php = shutil.which("php")
    if php is None:
        return None
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout
    return php if "soap" in modules.split() else None


@pytest.fixture(scope="module")
def php() -> str:
    """The php binary with the soap extension: skipped without it, except on CI (where the
    system packages are installed and a missing one is a failure)."""
    binary = _php_with_soap()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("php with the soap extension is missing (scripts/install-system-deps.sh "
                        "installs php-cli and php-soap)")
        pytest.skip("php with the soap extension is not installed (apt-get install php-cli "
                    "php-soap)")
    return binary


def run_php(php: str, wsdl: str, name: str, password: str, calls: list[dict[str, Any]], *,
            mode: str = "text") -> list[dict[str, Any]]:
    """Run ``calls`` through call.php and return its answers (parsed from its stdout)."""
    completed = subprocess.run([php, str(SCRIPT), wsdl, name, password, mode],
                               input=json.dumps(calls), capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def plain(value: Any) -> Any:
    """PHP's stdClass results as plain values; the array wrappers as lists."""
    if isinstance(value, dict):
        if set(value) in ARRAY_WRAPPERS:
            return [plain(item) for item in next(iter(value.values()))]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def wire(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def caller(php: str, wsdl: str, name: str, password: str) -> Callable[..., Any]:
    """``call(operation, *args)`` through PHP; a fault fails the test with its text."""
    def call(operation: str, *args: Any) -> Any:
        names = [param.name for param in OPERATIONS_BY_NAME[operation].params]
        params = {key: wire(value) for key, value in zip(names, args, strict=True)
                  if value is not None}
        (answer,) = run_php(php, wsdl, name, password, [{"operation": operation,
                                                         "params": params}])
        assert "fault" not in answer, answer
        result = plain(answer["result"])
        return [] if result is None and operation.endswith("GetList") else result

    return call


def test_request_path_with_php_soapclient(php: str, api_server: Any) -> None:
    """PHP's SoapClient walks the request path with a hand-built UsernameToken."""
    admin_wsdl = f"{api_server.url}/soap/cloudadmin?wsdl"
    user_wsdl = f"{api_server.url}/soap/clouduser?wsdl"
    walk_request_path(caller(php, admin_wsdl, "admin", api_server.password),
                      lambda name, password: caller(php, user_wsdl, name, password),
                      api_server.run_jobs, prefix="php")


def test_php_sees_faults_and_single_element_arrays(php: str, api_server: Any) -> None:
    """Faults reach PHP as SoapFault with the contract's code; a one-element list stays a
    list (SOAP_SINGLE_ELEMENT_ARRAYS)."""
    name = create_user(api_server, "phpfault", credit=50)
    own = submit_request(api_server, name)
    other = submit_request(api_server, create_user(api_server, "phpother", credit=50))
    answers = run_php(php, f"{api_server.url}/soap/clouduser?wsdl", name, PASSWORD, [
        {"operation": "CloudRequestGetList", "params": {"cloud_user": ""}},
        {"operation": "CloudRequestGetDetails", "params": {"request_id": other}},
        {"operation": "CloudRequestGetDetails", "params": {"request_id": own}},
    ])
    assert answers[0] == {"result": {"int": [own]}}
    assert answers[1]["fault"]["code"].endswith("Client.NotFound")
    assert answers[1]["fault"]["string"] == f"request_id: no request {other}"
    assert answers[2]["result"]["status"] == "new"
    (wrong,) = run_php(php, f"{api_server.url}/soap/clouduser?wsdl", name, "wrong-password",
                       [{"operation": "KernelGetList", "params": {}}])
    assert wrong["fault"]["code"].endswith("Client.AuthenticationFailed")


def test_php_password_digest_authenticates(php: str, api_server: Any) -> None:
    """A PasswordDigest built by PHP authenticates the caller."""
    name = create_user(api_server, "phpdigest")
    (answer,) = run_php(php, f"{api_server.url}/soap/clouduser?wsdl", name, PASSWORD,
                        [{"operation": "CloudUserGetDetails", "params": {"cloud_user": ""}}],
                        mode="digest")
    assert answer["result"]["name"] == name
