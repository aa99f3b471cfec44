"""The figures at scale, on the data set of ``benchmarks/dataset.py`` (SQLite, then PostgreSQL).

For each database: the data set is built (SQLite: copied from its cache), a real server
(``qrm -c production.ini serve``, a subprocess on a port from 18500, its clock at the data
set's time) answers the HTTP figures, and this process runs the jobs:

* ``billing_<db>``: one ``billing.charge`` run over the open runs (each has an hour due), ≤ 5 s;
* ``soap_getlist_<db>``: SOAP ``CloudRequestGetList`` of an admin for all users (every id),
  the median of 3 calls after one not counted, ≤ 200 ms;
* ``admin_requests_<db>`` / ``admin_resources_<db>``: the first page of the console's request
  and resource lists (logged in as ``admin``), median of 3 after one, ≤ 200 ms;
* ``sweep_<db>``: one ``cloud.sweep`` run (median of 3), ≤ 200 ms;
* ``flat_requests_<db>`` / ``flat_resources_<db>``: the first page at the full size against a
  data set of 1,000 requests (100 resources): ≤ 2× is flat;
* ``server_rss_<db>``: the server's peak resident memory (VmHWM) after all of it, ≤ 300 MB.

A call slower than ``--scale-timeout`` seconds (default 120) is cut off and reported so.
"""

from __future__ import annotations

import base64
import http.client
import http.cookies
import os
import pathlib
import re
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

from benchmarks.__main__ import GOALS, QRM, ROOT, UNITS, Figure, describe, postgresql_url
from benchmarks.api import free_port
from benchmarks.dataset import PASSWORD, Size, build, clock_file, sqlite_dataset
from benchmarks.dataset import describe as describe_dataset

FIRST_PORT = 18500
SMALL = Size.scaled(1000)
for _name, _goal in (("billing", 5.0), ("soap_getlist", 0.2), ("admin_requests", 0.2),
                     ("admin_resources", 0.2), ("sweep", 0.2), ("flat_requests", 2.0),
                     ("flat_resources", 2.0), ("server_rss", 300.0)):
    for _db in ("sqlite", "pg"):
        GOALS[f"{_name}_{_db}"] = _goal
        if _name == "server_rss":
            UNITS[f"{_name}_{_db}"] = "MB"
        elif _name.startswith("flat"):
            UNITS[f"{_name}_{_db}"] = "x"


class Server:
    """``qrm serve`` over the data set's database, its clock at the data set's time."""

    def __init__(self, url: str, meta: dict[str, Any], folder: pathlib.Path,
                 timeout: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.timeout, self.folder = free_port(FIRST_PORT, FIRST_PORT), timeout, folder
        self.clock = clock_file(meta, folder)
        self.env = dict(os.environ, QRM_DATABASE_URL=url, QRM_SESSION_SECRET="s" * 40,
                        QRM_SECRET_KEY="k" * 40, QRM_SIM_STATE=str(folder / "sim.sqlite"),
                        QRM_CLOCK=f"offset:{self.clock}", QRM_SCHEDULER="false",
                        QRM_PUBLIC_URL=f"http://127.0.0.1:{self.port}")
        self.log = folder / f"server-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own qrm, our own arguments)
                [QRM, "-c", str(ROOT / "production.ini"), "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.1)
        # the session cookie is marked secure (production.ini): kept by hand over http
        self.cookies: dict[str, str] = {}

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            payload = response.read()
            for header in response.headers.get_all("Set-Cookie") or []:
                cookie = http.cookies.SimpleCookie(header)
                self.cookies.update({key: morsel.value for key, morsel in cookie.items()})
            return response.status, payload
        finally:
            connection.close()

    def login_admin(self) -> None:
        _status, page = self.call("GET", "/admin/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        data = urllib.parse.urlencode({"csrf_token": token, "name": "admin",
                                       "password": PASSWORD}).encode()
        status, page = self.call("POST", "/admin/login", data, {
            "Content-Type": "application/x-www-form-urlencoded"})
        if status not in {303, 302}:
            raise RuntimeError(f"the admin log-in failed ({status})")

    def get(self, path: str) -> tuple[float, int]:
        """Seconds and bytes of one GET (cut off after the timeout)."""
        started = time.perf_counter()
        status, body = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"{path}: {status}")
        return time.perf_counter() - started, len(body)

    def soap_list(self) -> tuple[float, int]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        body = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
                'envelope/" xmlns:c="urn:qrmcloud:cloudadmin"><s:Body><c:CloudRequestGetList>'
                '<c:cloud_user></c:cloud_user></c:CloudRequestGetList></s:Body></s:Envelope>')
        started = time.perf_counter()
        connection.request("POST", "/soap/cloudadmin", body.encode(), {
            "Content-Type": "text/xml", "Authorization": f"Basic {token}"})
        response = connection.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - started
        connection.close()
        if response.status != 200 or b"Fault>" in payload[:1000]:
            raise RuntimeError(f"CloudRequestGetList: {response.status} {payload[:300]!r}")
        return elapsed, len(re.findall(rb"<(?:\w+:)?int>", payload))

    def peak_rss_mb(self) -> float:
        status = pathlib.Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def timed(call: Any, repeat: int = 3, slow: float = 5.0) -> tuple[float | None, Any, str]:
    """Median seconds of ``repeat`` calls after one not counted (just that one if it took
    longer than ``slow`` seconds); (None, None, why) if one was cut off."""
    try:
        elapsed, extra = call()
        if elapsed > slow:
            return elapsed, extra, ""
        values = []
        for _ in range(repeat):
            elapsed, extra = call()
            values.append(elapsed)
    except (TimeoutError, OSError, RuntimeError) as error:
        return None, None, f"{type(error).__name__}: {str(error)[:60]}"
    return statistics.median(values), extra, ""


def ms(name: str, value: float | None, what: str, why: str = "") -> Figure:
    if value is None:
        return Figure(name, None, f"cut off ({why})" if why else "-")
    return Figure(name, value, f"{value * 1000:.0f} ms {what}")


class Servers:
    """The server of one database, started again after a call was cut off (it would go on
    with it, holding SQLite's writer lock); the peak memory of every one of them."""

    def __init__(self, url: str, meta: dict[str, Any], folder: pathlib.Path,
                 timeout: float) -> None:
        self.args = (url, meta, folder, timeout)
        self.server = Server(*self.args)
        self.peaks: list[float] = []

    def restart(self) -> None:
        self.stop()
        self.server = Server(*self.args)

    def stop(self) -> None:
        if self.server is not None:
            self.peaks.append(self.server.peak_rss_mb())
            self.server.stop()
            self.server = None

    def timed(self, what: str) -> tuple[float | None, Any, str]:
        server = self.server
        call = server.soap_list if what == "soap" else lambda: server.get(what)
        if what != "soap" and not server.cookies:
            server.login_admin()
        result = timed(call)
        if result[0] is None:
            self.restart()
        return result


PAGES = {"resources": "/admin/resources", "requests": "/admin/cloud/requests"}


def first_pages(servers: Servers) -> dict[str, tuple[float | None, Any, str]]:
    return {name: servers.timed(path) for name, path in PAGES.items()}


def registry_for(url: str, folder: pathlib.Path, clock: pathlib.Path) -> Any:
    import logging

    from engine.app import make_config
    from engine.db import get_engine, get_session_factory

    logging.getLogger("spyne.util.appreg").setLevel(logging.ERROR)  # built once more here
    config = make_config({"sqlalchemy.url": url, "qrm.session_secret": "bench",
                          "qrm.kick": "inline", "qrm.clock": f"offset:{clock}",
                          "qrm.sim.state": str(folder / "sim.sqlite"),
                          "qrm.sim.boot_delay": "0"})
    config.registry["dbsession_factory"] = get_session_factory(get_engine(
        {"sqlalchemy.url": url}))
    config.commit()
    return config.registry


def small_first_pages(url: str, meta: dict[str, Any], folder: pathlib.Path,
                      timeout: float) -> dict[str, Any]:
    """The first pages at the small data set (for the flatness figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    servers = Servers(url, meta, folder, timeout)
    try:
        return dict(first_pages(servers), counts=meta["counts"])
    finally:
        servers.stop()


def one_database(tag: str, url: str, meta: dict[str, Any], small: dict[str, Any], *,
                 folder: pathlib.Path, timeout: float) -> list[Figure]:
    from billing.services import charge_job
    from engine.cloud.provisioning import sweep_job
    from engine.scheduler.runner import run_in_transaction

    counts = meta["counts"]
    figures: list[Figure] = []

    def show(figure: Figure) -> None:
        figures.append(figure)
        print(figure.line(), flush=True)

    servers = Servers(url, meta, folder, timeout)
    try:
        value, ids, why = servers.timed("soap")
        api_peak = servers.server.peak_rss_mb()
        show(ms(f"soap_getlist_{tag}", value, f"for {ids if ids is not None else '?':,} ids",
                why))
        pages = first_pages(servers)
        for name in PAGES:
            value, size, why = pages[name]
            show(ms(f"admin_{name}_{tag}", value, f"first page ({size or 0:,} bytes)", why))
        for name in PAGES:
            big, little = pages[name][0], small[name][0]
            if big is None or little is None:
                show(Figure(f"flat_{name}_{tag}", None, "cut off"))
            else:
                show(Figure(f"flat_{name}_{tag}", big / little,
                            f"{big / little:.1f}x ({little * 1000:.0f} ms at "
                            f"{small['counts'][name]:,}, {big * 1000:.0f} ms at "
                            f"{counts[name]:,})"))
        # the data set's time again (the pages took a while): one hour due per open run
        registry = registry_for(url, folder, clock_file(meta, servers.server.folder))
        started = time.perf_counter()
        charged = run_in_transaction(registry, charge_job)
        elapsed = time.perf_counter() - started
        show(Figure(f"billing_{tag}", elapsed, f"{elapsed:.2f} s: {charged:,} hours of "
                    f"{counts['open_runs']:,} open runs"))
        again = time.perf_counter()
        charged = run_in_transaction(registry, charge_job)
        print(f"  (a second billing run charged {charged} hours in "
              f"{time.perf_counter() - again:.2f} s)", flush=True)
        runs = []
        for _ in range(4):
            started = time.perf_counter()
            run_in_transaction(registry, sweep_job)
            runs.append(time.perf_counter() - started)
        show(ms(f"sweep_{tag}", statistics.median(runs[1:]),
                f"at {counts['requests']:,} requests"))
        registry["dbsession_factory"].kw["bind"].dispose()
        servers.stop()
        rss = max(servers.peaks)
        show(Figure(f"server_rss_{tag}", rss, f"{rss:.0f} MB (qrm serve, peak"
                    + (f" of {len(servers.peaks)} started" if len(servers.peaks) > 1 else "")
                    + f"; {api_peak:.0f} MB before the console's lists)"))
    finally:
        servers.stop()
    return figures


def run(folder: pathlib.Path, size: Size, *, timeout: float = 120.0,
        postgresql: bool = True) -> list[Figure]:
    """Print and return the figures at scale on SQLite and (if it answers) PostgreSQL."""
    figures: list[Figure] = []
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# at scale: {size.requests:,} requests, {size.resources:,} resources, "
          f"{size.users:,} users (benchmarks/dataset.py); first pages also at "
          f"{SMALL.requests:,} requests", flush=True)
    small_path = folder / "small" / "scale.sqlite"
    small_path.parent.mkdir(exist_ok=True)
    small_meta = sqlite_dataset(SMALL, small_path)
    small = small_first_pages(f"sqlite:///{small_path}", small_meta, folder / "small",
                              timeout)
    sqlite_path = folder / "scale.sqlite"
    meta = sqlite_dataset(size, sqlite_path)
    print(f"# SQLite: {describe_dataset(meta)}", flush=True)
    figures += one_database("sqlite", f"sqlite:///{sqlite_path}", meta, small,
                            folder=folder / "sqlite", timeout=timeout)
    pg_url, skipped = postgresql_url(os.environ.get("QRM_BENCH_SCALE_POSTGRESQL_URL")) \
        if postgresql else (None, "")
    if not pg_url:
        print(f"# PostgreSQL: skipped: {skipped or 'not asked for'}", flush=True)
        return figures
    # the small data set first, in the same database, then the full one over it
    started = time.perf_counter()
    for name in ("pg-small", "pg"):
        (folder / name).mkdir(exist_ok=True)
    small_meta = build(pg_url, SMALL, state=folder / "pg-small" / "sim.sqlite")
    small = small_first_pages(pg_url, small_meta, folder / "pg-small", timeout)
    meta = build(pg_url, size, state=folder / "pg" / "sim.sqlite")
    print(f"# PostgreSQL {describe(pg_url)}: {describe_dataset(meta)} (both data sets built "
          f"in {time.perf_counter() - started:.0f} s)", flush=True)
    figures += one_database("pg", pg_url, meta, small, folder=folder / "pg", timeout=timeout)
    return figures
