"""The Commands page: the queue by state with argv, target, attempts, exit code and output;
re-running a failed command; the event log's link to it; German."""

from __future__ import annotations

from typing import Any

from engine.commands.models import Command, CommandState
from engine.commands.services import CommandService
from engine.db import utcnow
from engine.events.models import Event, EventLevel
from engine.security import Actor
from tests.conftest import commit
from tests.functional.test_admin_support import (
    admin_login,
    cloud_user_login,
    form_to,
    session_csrf_token,
    text_of,
)

ADMIN = Actor.admin("admin")


def add_command(request: Any, state: CommandState, argv: list[str], *, exit_code: int | None,
                output: str = "", error: str | None = None) -> int:
    command = request.find_service(CommandService).enqueue(None, argv, actor=ADMIN,
                                                          executor="local")
    command.state, command.exit_code, command.output, command.error = (
        state, exit_code, output, error)
    if state is not CommandState.QUEUED:
        command.attempts = 1
    if state in (CommandState.DONE, CommandState.FAILED):
        command.finished_at = utcnow()
    if state is CommandState.FAILED:
        event = request.find_service(CommandService).events.log(
            source="commands", name="command.failed", actor=Actor.system("commands"),
            obj=command, level=EventLevel.ERROR,
            message=f"command {command.id} failed: exit {exit_code}")
        event.command_id = command.id
    request.dbsession.flush()
    command_id = command.id
    commit(request)
    return command_id


def seed(request: Any) -> dict[str, int]:
    return {
        "queued": add_command(request, CommandState.QUEUED, ["echo", "waiting"], exit_code=None),
        "running": add_command(request, CommandState.RUNNING, ["sleep", "5"], exit_code=None),
        "done": add_command(request, CommandState.DONE, ["uname", "-a"], exit_code=0,
                            output="Linux box 6.1\n"),
        "failed": add_command(request, CommandState.FAILED, ["lvs", "--noheadings"],
                              exit_code=5, output="  Volume group <vg0> not found\n"),
    }


def rows(page: Any) -> dict[int, Any]:
    return {int(row["data-command"]): row for row in page.html.select("tr[data-command]")}


def test_commands_page_lists_every_state_with_output(testapp, demo_cloud, pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)

    page = testapp.get("/admin/commands")

    listed = rows(page)
    assert {listed[ids[state]]["data-state"] for state in ids} == set(ids)
    failed = listed[ids["failed"]]
    cells = [" ".join(cell.get_text(" ").split()) for cell in failed.find_all("td")]
    assert cells[1:6] == ["failed", "engine (local) (local)", "lvs --noheadings", "1 / 3", "5"]
    # the output is shown as it is, escaped, in a <pre>
    assert failed.find("pre").get_text() == "  Volume group <vg0> not found\n"
    assert "&lt;vg0&gt;" in page.text
    assert listed[ids["done"]].find("pre").get_text() == "Linux box 6.1\n"
    # only failed commands offer a re-run
    assert [form.action for form in page.forms.values() if form.action.endswith("/rerun")] == [
        f"/admin/commands/{ids['failed']}/rerun"]
    assert "Commands" in page.html.find("nav", class_="mainnav").get_text()
    assert page.html.find("nav", class_="mainnav").find(
        "a", attrs={"aria-current": "page"}).get_text() == "Commands"


def test_commands_page_filters_by_state(testapp, demo_cloud, pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)

    for state, command_id in ids.items():
        page = testapp.get("/admin/commands", params={"state": state})
        assert list(rows(page)) == [command_id], state
    assert testapp.get("/admin/commands", params={"state": "lost"},
                       expect_errors=True).status_int == 400


def test_admin_re_runs_a_failed_command(testapp, demo_cloud, pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)
    page = testapp.get("/admin/commands", params={"state": "failed"})

    after = form_to(page, f"/commands/{ids['failed']}/rerun").submit().follow()

    assert after.request.path_qs == "/admin/commands?state=failed"
    assert f"Command {ids['failed']} is queued again." in after
    pyramid_request.dbsession.expire_all()
    command = pyramid_request.dbsession.get(Command, ids["failed"])
    assert (command.state, command.attempts, command.exit_code) == (CommandState.QUEUED, 0, None)
    rerun = pyramid_request.dbsession.query(Event).filter_by(
        name="command.rerun", object_id=command.id).one()
    assert rerun.actor == "admin:admin"


def test_re_running_a_command_that_did_not_fail_is_refused(testapp, demo_cloud,
                                                          pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)
    token = testapp.get("/admin/commands").html.find(
        "input", attrs={"name": "csrf_token"})["value"]

    page = testapp.post(f"/admin/commands/{ids['done']}/rerun",
                        params={"csrf_token": token}).follow()

    assert f"command {ids['done']} is done, not failed" in page
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(Command, ids["done"]).state is CommandState.DONE
    missing = testapp.post("/admin/commands/999999/rerun", params={"csrf_token": token})
    missing = missing.follow(expect_errors=True)
    assert missing.status_int == 404
    assert "no command 999999" in missing


def test_re_run_without_csrf_token_is_rejected(testapp, demo_cloud, pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)

    response = testapp.post(f"/admin/commands/{ids['failed']}/rerun", expect_errors=True)

    assert response.status_int in (400, 403)
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(Command, ids["failed"]).state is CommandState.FAILED


def test_a_cloud_user_cannot_see_or_re_run_commands(testapp, registry, demo_cloud,
                                                    pyramid_request):
    ids = seed(pyramid_request)
    cloud_user_login(testapp, registry)
    token = session_csrf_token(testapp, registry)

    assert testapp.get("/admin/commands", expect_errors=True).status_int == 403
    assert testapp.get(f"/admin/commands/{ids['failed']}", expect_errors=True).status_int == 403
    assert testapp.post(f"/admin/commands/{ids['failed']}/rerun", params={"csrf_token": token},
                        expect_errors=True).status_int == 403
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(Command, ids["failed"]).state is CommandState.FAILED


def test_anonymous_visitor_is_sent_to_log_in(testapp, demo_cloud):
    response = testapp.get("/admin/commands")
    assert response.status_int in (302, 303)
    assert "/admin/login" in response.location


def test_event_log_links_a_failed_command_to_its_page(testapp, demo_cloud, pyramid_request):
    ids = seed(pyramid_request)
    admin_login(testapp)
    events = testapp.get("/admin/events", params={"errors": "1"})

    link = events.html.find("a", class_="command-link")
    assert link["href"] == f"/admin/commands/{ids['failed']}"
    detail = testapp.get(link["href"])

    assert text_of(detail, "command-exit-code") == "5"
    assert detail.html.find(id="command-output").get_text() == (
        "  Volume group <vg0> not found\n")
    after = form_to(detail, f"/commands/{ids['failed']}/rerun").submit().follow()
    assert after.request.path == f"/admin/commands/{ids['failed']}"
    assert "Re-run" not in [button.get_text() for button in after.html.select("form button")]


def test_commands_page_in_german(testapp, demo_cloud, pyramid_request):
    seed(pyramid_request)
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    admin_login(testapp)

    page = testapp.get("/admin/commands")

    assert page.html.find("h1").get_text() == "Befehle"
    assert "Erneut ausführen" in page
    assert "eingereiht" in page.html.find("nav", class_="filters").get_text()
    assert "Befehle" in page.html.find("nav", class_="mainnav").get_text()


def test_resources_page_shows_a_machine_s_ssh_target(testapp, demo_cloud, pyramid_request):
    from engine.datacenter.models import Resource

    resource = pyramid_request.dbsession.query(Resource).order_by(Resource.id).first()
    pyramid_request.find_service(CommandService).set_ssh_target(
        resource, host="10.9.8.7", port=2222, user="qrm", key="kvm_ed25519", actor=ADMIN)
    resource_id = resource.id
    commit(pyramid_request)
    admin_login(testapp)

    page = testapp.get("/admin/resources")

    row = page.html.find("tr", attrs={"data-resource": str(resource_id)})
    assert " ".join(row.find_all("td")[-1].get_text(" ").split()) == (
        "qrm@10.9.8.7:2222 (key kvm_ed25519)")
