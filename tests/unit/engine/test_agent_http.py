"""The agent's HTTP requests under busybox sh with busybox's own wget and timeout (the
applets of the initramfs), against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import pathlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from engine.boot.initrd import agent_script


@pytest.fixture
def applets(tmp_path: pathlib.Path) -> pathlib.Path:
    """A PATH of busybox applets only (no GNU wget or coreutils timeout)."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is installed by scripts/install-system-deps.sh"
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("sh", "wget", "timeout", "cat", "sed", "head", "sleep"):
        (directory / name).symlink_to(busybox)
    (tmp_path / "agent.sh").write_text(agent_script())
    return directory


def agent(tmp_path: pathlib.Path, applets: pathlib.Path, expression: str, *,
          timeout_s: int = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(applets / "sh"), "-c", f". {tmp_path / 'agent.sh'}; {expression}"], check=False,
        capture_output=True, text=True, timeout=30,
        env={"QRM_AGENT_LIB": "1", "PATH": str(applets), "QRM_HTTP_TIMEOUT": str(timeout_s),
             "QRM_CMDLINE": str(tmp_path / "none")})


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str, str]]

    def _answer(self, body: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length).decode() if length else ""
        self.seen.append((self.command, self.path, self.headers.get("Authorization") or "",
                          data))
        payload = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer("#!/bin/sh\necho agent\n")

    def do_POST(self) -> None:
        self._answer("id=7\ninterval=5\n")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, str, str]]]]:
    seen: list[tuple[str, str, str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_agent_posts_with_its_token_and_fetches_under_busybox(tmp_path, applets, server):
    url, seen = server
    reply, script = tmp_path / "reply", tmp_path / "fetched.sh"
    result = agent(tmp_path, applets,
                   f'post "{url}/boot/report" "id=7&state=idle" {reply} secret-token && '
                   f'post "{url}/boot/register" "macs=52:54:00:00:00:01" {reply}.2 && '
                   f'fetch {script} "{url}/boot/agent.sh" && '
                   f'reply_value interval {reply}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"
    assert script.read_text() == "#!/bin/sh\necho agent\n"
    assert seen == [
        ("POST", "/boot/report", "Bearer secret-token", "id=7&state=idle"),
        ("POST", "/boot/register", "", "macs=52:54:00:00:00:01"),
        ("GET", "/boot/agent.sh", "", ""),
    ]


def test_agent_request_to_a_silent_server_ends_at_its_time_limit(tmp_path, applets):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = agent(tmp_path, applets,
                       f'fetch {tmp_path / "out"} "http://127.0.0.1:{port}/boot/agent.sh"',
                       timeout_s=1)
        elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert 0.9 <= elapsed < 10  # it waited for the limit (and did not crash at once)
