"""The benchmark data set builder at a tiny size: its counts, its ledger, its billing hour."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from benchmarks import dataset
from benchmarks.dataset import Size, check_counts


@pytest.fixture
def bench_url(db_url: str, tmp_path: pathlib.Path) -> Any:
    """SQLite: a file of its own; PostgreSQL/MariaDB: the test database, rebuilt after."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'dataset.sqlite'}"
        return
    from engine.db import get_engine
    from tests.conftest import migrate

    try:
        yield db_url
    finally:
        engine = get_engine({"sqlalchemy.url": db_url})
        migrate(engine, fresh=True)
        engine.dispose()


SIZE = Size(requests=400, resources=50, users=8, seed=3)


def test_the_builder_fills_the_mix_it_is_asked_for(bench_url, tmp_path):
    meta = dataset.build(bench_url, SIZE, state=tmp_path / "sim.sqlite")
    counts = meta["counts"]
    assert counts["requests"] == 400
    assert counts["resources"] == 50
    assert counts["active_requests"] == 40  # 10 %
    assert counts["open_runs"] == 40  # one running appliance per active request
    # ledger: a credit per user and every charged hour; events: several per request
    assert 2.5 * 400 < counts["ledger_rows"] < 3.5 * 400
    assert 3.3 * 400 < counts["events"] < 4.3 * 400
    found = check_counts(bench_url)
    assert found["requests"] == 400
    assert found["resources"] == 50
    assert found["active_requests"] == 40
    assert found["open_runs"] == 40
    assert found["ledger_rows"] == counts["ledger_rows"] + 1  # and the demo user's credit
    assert found["events"] >= counts["events"]
    assert found["users"] == 8 + 1  # and demo
    assert found["unbalanced_users"] == 0  # every balance is its ledger's sum


def test_a_billing_run_at_the_data_sets_time_charges_one_hour_per_open_run(bench_url,
                                                                           tmp_path):
    from benchmarks.scale import registry_for
    from billing.services import charge_job
    from engine.scheduler.runner import run_in_transaction

    meta = dataset.build(bench_url, SIZE, state=tmp_path / "sim.sqlite")
    registry = registry_for(bench_url, tmp_path, dataset.clock_file(meta, tmp_path))
    try:
        assert run_in_transaction(registry, charge_job) == 40
        assert run_in_transaction(registry, charge_job) == 0
    finally:
        registry["dbsession_factory"].kw["bind"].dispose()
    assert check_counts(bench_url)["unbalanced_users"] == 0


def test_the_sqlite_file_is_cached_by_its_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "CACHE", tmp_path / "cache")
    built = []
    real = dataset.build
    monkeypatch.setattr(dataset, "build", lambda *a, **kw: built.append(a) or real(*a, **kw))
    small = Size(requests=100, resources=10, users=3)
    first = dataset.sqlite_dataset(small, tmp_path / "one.sqlite", log=lambda _text: None)
    second = dataset.sqlite_dataset(small, tmp_path / "two.sqlite", log=lambda _text: None)
    assert len(built) == 1
    assert first == second
    assert check_counts(f"sqlite:///{tmp_path / 'two.sqlite'}")["requests"] == 100
    dataset.sqlite_dataset(Size(requests=120, resources=10, users=3), tmp_path / "three.sqlite",
                           log=lambda _text: None)
    assert len(built) == 2  # other parameters, another file
