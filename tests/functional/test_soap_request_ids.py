"""``CloudRequestGetList`` at length: the ids newest first, in the document spyne would write
element by element (the bulk path writes the same bytes)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from engine.cloud.services import CloudRequestService
from engine.security import Actor
from soap import endpoint
from tests.conftest import commit
from tests.unit.cloud.conftest import request_values

ENVELOPE = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            'envelope/" xmlns:c="urn:qrmcloud:{face}"><s:Body><c:CloudRequestGetList>'
            '<c:cloud_user>{user}</c:cloud_user></c:CloudRequestGetList></s:Body></s:Envelope>')


def get_list(testapp: Any, face: str, name: str, password: str, user: str = "") -> bytes:
    basic = base64.b64encode(f"{name}:{password}".encode()).decode()
    response = testapp.post(f"/soap/{face}", ENVELOPE.format(face=face, user=user).encode(),
                            content_type="text/xml", headers={"Authorization": f"Basic {basic}"})
    assert response.status_int == 200
    return response.body


@pytest.mark.parametrize("count", [0, 1, 4])
def test_the_id_list_is_the_document_spyne_writes(testapp, demo_cloud, monkeypatch, count):
    request = demo_cloud["request"]
    requests = request.find_service(CloudRequestService)
    demo = requests.users.resolve("demo", actor=Actor.system())
    ids = [requests.submit(actor=Actor.cloud_user("demo", demo.id), **request_values()).id
           for _ in range(count)]
    commit(request)
    password = demo_cloud["password"]
    for face, name, user in (("cloudadmin", "admin", ""), ("cloudadmin", "admin", "demo"),
                             ("clouduser", "demo", "")):
        bulk = get_list(testapp, face, name, password, user)
        monkeypatch.setattr(endpoint, "BULK_INT_RESULTS", frozenset())
        one_by_one = get_list(testapp, face, name, password, user)
        monkeypatch.undo()
        assert bulk == one_by_one
        found = [int(value) for value in re.findall(rb"<\w+:int>(\d+)</\w+:int>", bulk)]
        assert found == sorted(ids, reverse=True)


def test_a_user_lists_only_its_own_requests(testapp, demo_cloud):
    from engine.cloud.services import CloudUserService

    request = demo_cloud["request"]
    users = request.find_service(CloudUserService)
    other = users.create("other", "other-password-1", "other@x.example",
                         actor=Actor.admin("admin"))
    users.billing.credit(other, 100, reason="test", comment="", actor=Actor.admin("admin"))
    request.find_service(CloudRequestService).submit(
        actor=Actor.admin("admin"), **request_values(cloud_user="other"))
    commit(request)
    assert re.findall(rb"<\w+:int>", get_list(testapp, "clouduser", "demo",
                                              demo_cloud["password"])) == []
    assert len(re.findall(rb"<\w+:int>", get_list(testapp, "cloudadmin", "admin",
                                                  demo_cloud["password"]))) == 1
