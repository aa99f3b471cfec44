"""The sim's own state file: where it is, and that concurrent callers cannot overbook it."""

from __future__ import annotations

import sqlite3
import threading
import types

from engine.errors import CapacityError
from engine.plugins.drivers import HostRef, StorageRef
from engine.settings import normalize_settings
from plugins.sim import inventory
from plugins.sim.drivers import SimStorageDriver, SimVirtualizationDriver
from plugins.sim.store import DEFAULT_STATE, Store, open_store, state_path
from tests.unit.sim.conftest import new_mac, spec


def test_the_state_file_comes_from_the_settings_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QRM_SIM_STATE", str(tmp_path / "env.sqlite"))
    settings = {"qrm.sim.state": str(tmp_path / "set.sqlite")}
    request = types.SimpleNamespace(registry=types.SimpleNamespace(settings=settings))

    assert state_path(settings) == tmp_path / "set.sqlite"
    assert state_path(request) == state_path(request.registry) == tmp_path / "set.sqlite"
    assert state_path({}) == state_path(None) == tmp_path / "env.sqlite"
    monkeypatch.delenv("QRM_SIM_STATE")
    assert str(state_path(None)) == DEFAULT_STATE == "var/sim-datacenter.sqlite"


def test_qrm_sim_state_overrides_the_ini(tmp_path, monkeypatch):
    monkeypatch.setenv("QRM_SIM_STATE", str(tmp_path / "x.sqlite"))

    settings = normalize_settings({"sqlalchemy.url": "sqlite://",
                                   "qrm.sim.state": "var/ini.sqlite"})

    assert settings["qrm.sim.state"] == str(tmp_path / "x.sqlite")


def test_the_app_under_test_uses_the_tests_own_state_file(registry, sim_state):
    assert state_path(registry.settings) == sim_state


def test_the_state_file_and_its_directory_are_made_on_first_use(tmp_path):
    path = tmp_path / "deep" / "down" / "sim.sqlite"

    inventory.register_host(path, new_mac(), 4, 4096)

    assert path.exists()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(inventory.hosts(open_store(path))) == 1


def test_a_deleted_state_file_starts_afresh(tmp_path):
    store = Store(tmp_path / "sim.sqlite")
    inventory.register_host(store, new_mac(), 4, 4096)

    store.path.unlink()
    (tmp_path / "sim.sqlite-wal").unlink(missing_ok=True)
    (tmp_path / "sim.sqlite-shm").unlink(missing_ok=True)

    assert inventory.hosts(store) == []


def run_at_once(count, action):
    """Run ``action(i)`` in ``count`` threads released together; return the outcomes."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def work(index):
        barrier.wait()
        try:
            action(index)
            outcomes[index] = "ok"
        except CapacityError:
            outcomes[index] = "full"

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_create_vm_never_overbooks_a_host(tmp_path):
    settings = {"qrm.sim.state": str(tmp_path / "sim.sqlite"), "qrm.sim.boot_delay": "0"}
    mac = new_mac()
    inventory.register_host(settings, mac, 4, 65536)
    host = HostRef(id=1, name="host", mac=mac)

    def create(index):
        # one driver per thread, like separate scheduler processes
        SimVirtualizationDriver(settings=settings).create_vm(
            host, spec(f"qrm-vm-{index}", cpus=1, memory_mb=1024))

    outcomes = run_at_once(10, create)

    assert sorted(outcomes) == ["full"] * 6 + ["ok"] * 4
    assert len(inventory.vms(settings)) == 4


def test_concurrent_clones_never_overbook_a_storage(tmp_path):
    settings = {"qrm.sim.state": str(tmp_path / "sim.sqlite")}
    storage = StorageRef(id=1, name="s", storage_type="sim-storage", capacity_mb=5000)
    golden = SimStorageDriver(settings=settings).create_volume(storage, name="golden",
                                                               size_mb=1000)

    def clone(index):
        SimStorageDriver(settings=settings).clone_volume(
            storage, source_root_device=golden, name=f"clone-{index}", size_mb=1000)

    outcomes = run_at_once(8, clone)

    assert outcomes.count("ok") == 4
    assert SimStorageDriver(settings=settings).used_mb(storage) == 5000
