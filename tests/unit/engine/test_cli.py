"""The ``qrm`` command against a real (temporary) database."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import ROOT


@pytest.fixture
def ini(tmp_path: pathlib.Path) -> str:
    """A copy of development.ini on a SQLite database of this test's own."""
    text = (ROOT / "development.ini").read_text()
    path = tmp_path / "test.ini"
    path.write_text(text.replace("sqlite:///%(here)s/var/qrm.sqlite",
                                 f"sqlite:///{tmp_path}/cli.sqlite"))
    return str(path)


@pytest.fixture
def run(ini: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QRM_DATABASE_URL", raising=False)
    monkeypatch.setenv("QRM_DEMO_PASSWORD", "demo-password-1")

    def invoke(*args: str, input: str | None = None) -> str:
        result = CliRunner().invoke(main, ["-c", ini, *args], input=input,
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_db_upgrade_demo_and_plugins(run):
    assert "upgraded" in run("db", "upgrade")
    assert "disabled" in run("plugins", "list")
    output = run("demo")
    assert "user admin  password demo-password-1" in output
    assert "user demo   password demo-password-1" in output
    run("demo")  # idempotent
    assert "started" in run("plugins", "list")
    assert "enabled" in run("plugins", "stop", "sim")
    assert "started" in run("plugins", "start", "sim")


def test_admin_create_and_refusals(run, ini):
    run("db", "upgrade")
    assert "admin alice created" in run("admin", "create", "alice", "--password",
                                        "password-1")
    result = CliRunner().invoke(main, ["-c", ini, "admin", "create", "alice", "--password",
                                       "password-1"])
    assert result.exit_code == 1
    assert "exists already" in result.output
    result = CliRunner().invoke(main, ["-c", ini, "plugins", "enable", "nope"])
    assert result.exit_code == 1
    assert "no plugin named 'nope'" in result.output


def test_scheduler_process_runs_jobs_and_stops_on_sigterm(run, ini):
    run("db", "upgrade")
    run("demo")
    env = dict(os.environ, QRM_SIM_BOOT_DELAY="0")
    env.pop("QRM_DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "-c", ini,
                                "scheduler"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        booted = False
        while time.monotonic() < deadline and not booted:
            # the sim's monitor job reports the demo's physical machines idle
            booted = _idle_machines(ini) >= 2
            time.sleep(0.5)
        assert booted
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "scheduler stopped" in output


def _idle_machines(ini: str) -> int:
    import sqlite3

    database = pathlib.Path(ini).parent / "cli.sqlite"
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "select count(*) from resource where kind = 'physical' and state = 'idle'"
        ).fetchone()[0]


@pytest.mark.parametrize(("missing", "variable"), [("session_secret", "QRM_SESSION_SECRET"),
                                                   ("secret_key", "QRM_SECRET_KEY")])
def test_production_refuses_to_start_without_its_secrets(tmp_path, monkeypatch, missing,
                                                         variable):
    """Several processes, one truth: no secret is made up per process in production."""
    monkeypatch.setenv("QRM_DATABASE_URL", f"sqlite:///{tmp_path}/prod.sqlite")
    monkeypatch.setenv("QRM_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("QRM_SECRET_KEY", "k" * 40)
    monkeypatch.delenv(variable)
    result = CliRunner().invoke(main, ["-c", str(ROOT / "production.ini"), "db", "upgrade"])
    assert result.exit_code != 0
    assert f"qrm.{missing} is not set: set the environment variable {variable}" in str(
        result.exception)
    assert not (tmp_path / "prod.sqlite").exists()


def test_production_starts_with_its_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("QRM_DATABASE_URL", f"sqlite:///{tmp_path}/prod.sqlite")
    monkeypatch.setenv("QRM_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("QRM_SECRET_KEY", "k" * 40)
    result = CliRunner().invoke(main, ["-c", str(ROOT / "production.ini"), "db", "upgrade"])
    assert result.exit_code == 0, result.output
