"""The XML-RPC API through PHP's xmlrpc extension (xmlrpc-epi, Debian ``php-xmlrpc``),
driven by ``php/xmlrpc.php``: it cannot send ``<nil/>`` (a PHP null goes out as an empty
string), so a transaction without a request id relies on the empty string standing for
nil."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from decimal import Decimal
from typing import Any

import pytest

from tests.interop.conftest import PASSWORD, create_user

SCRIPT = pathlib.Path(__file__).parent / "php" / "xmlrpc.php"


@pytest.fixture(scope="module")
def php() -> str:
    """php with the xmlrpc extension: skipped without it, except on CI (where the system
    packages are installed and a missing one is a failure)."""
    binary = shutil.which("php")
    modules = (subprocess.run([binary, "-m"], capture_output=True, text=True, check=True)
               .stdout.split() if binary else [])
    if "xmlrpc" not in modules:
        message = ("php with the xmlrpc extension is missing (scripts/install-system-deps.sh "
                   "installs php-cli and php-xmlrpc)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def run_php(php: str, url: str, name: str, password: str,
            calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    completed = subprocess.run([php, str(SCRIPT), url, name, password],
                               input=json.dumps(calls), capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_php_pushes_a_transaction_without_a_request_id(php: str, api_server: Any) -> None:
    """PHP's null request id (sent as <string/>) is nil: the movement belongs to no request
    and the balance changes by the amount."""
    name = create_user(api_server, "phprpc", credit=10)
    pushed, balance, wrong = run_php(
        php, f"{api_server.url}/xmlrpc/cloudadmin", "admin", api_server.password, [
            {"method": "CloudPushTransaction",
             "params": [name, None, "2.50", "PHP credit", "from PHP"]},
            {"method": "CloudUserGetCCUs", "params": [name]},
            {"method": "CloudRequestGetDetails", "params": ["5000000000"]},
        ])
    assert "<string/>" in pushed["sent"]  # what makes this test worth having
    assert "fault" not in pushed, pushed
    entry = pushed["result"]
    assert (entry["cloud_user"], entry["reason"], entry["comment"]) == (name, "PHP credit",
                                                                      "from PHP")
    assert entry.get("request_id") is None
    assert Decimal(entry["amount"]) == Decimal("2.5")
    assert Decimal(entry["balance"]) == Decimal("12.5")
    assert Decimal(balance["result"]) == Decimal("12.5")
    assert wrong["fault"] == {"code": 4, "string": "request_id must be a whole number from "
                                                   "-2147483648 to 2147483647 (32 bits)"}


def test_php_cloud_user_sees_its_movement(php: str, api_server: Any) -> None:
    """The cloud user reads the movement back over XML-RPC from PHP (a nil request id)."""
    name = create_user(api_server, "phprpcuser", credit=7)
    (answer,) = run_php(php, f"{api_server.url}/xmlrpc/clouduser", name, PASSWORD, [
        {"method": "CloudUserGetTransactions", "params": ["", 5]}])
    (entry,) = answer["result"]
    assert entry.get("request_id") is None
    assert Decimal(entry["amount"]) == Decimal(7)
