"""Start the real application under gunicorn for tests that need a server of their own.

Tests that measure what several worker processes do together (intake under load, sign-in
throttling across workers, concurrent writers, backup under load, the access log) start
``gunicorn`` on the test's own committed database with :func:`gunicorn_server`. The server
runs the project's ``gunicorn.conf.py`` (it is read from the project folder), so the access
log a test reads is the one production would write.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "a-test-secret-key-long-enough-for-anything-0123456789"


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its address and the files its logs go to."""

    url: str
    error_log: Path
    access_log: Path
    output: Path  # the process's stdout and stderr (the app's own log lines, SQL echo)
    pid: int

    def logs(self) -> str:
        """Return everything the server wrote so far: error log, access log and output."""
        files = (self.error_log, self.access_log, self.output)
        return "\n".join(path.read_text(errors="replace") for path in files)


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, instance: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a test server: plain HTTP, a known secret, the given database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CRM_INSTANCE_PATH": str(instance),
        "SECRET_KEY": SECRET_KEY,
        "CRM_ENV": "development",
        "COOKIE_SECURE": "false",  # plain HTTP: requests must send the cookie back
        "FORCE_HTTPS": "false",
        "SMTP_URL": "",
        **overrides,
    }


@contextmanager
def gunicorn_server(
    database_url: str,
    folder: Path,
    *,
    workers: int = 2,
    ready_path: str = "/login",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    startup_seconds: float = 90,
) -> Iterator[Server]:
    """Serve ``database_url`` with gunicorn (gunicorn.conf.py: threaded workers) until the block ends.

    ``folder`` receives the logs and the instance folder. ``env`` adds environment variables
    (``server_env`` gives the base), ``args`` adds gunicorn options. The server is stopped and
    waited for even when the block fails, so no process outlives the test.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(
        url=f"http://127.0.0.1:{port}",
        error_log=folder / "gunicorn-error.log",
        access_log=folder / "gunicorn-access.log",
        output=folder / "gunicorn-output.log",
        pid=0,
    )
    for path in (server.error_log, server.access_log, server.output):
        path.touch()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--no-control-socket",  # gunicorn 27 would share one control socket between servers
        "-k",
        "sync",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--error-logfile",
        str(server.error_log),
        "--access-logfile",
        str(server.access_log),
        *args,
        "wsgi:app",
    ]
    with server.output.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(database_url, folder / "instance", **(env or {})),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = replace(server, pid=process.pid)
    try:
        _wait_until_ready(server, process, ready_path, startup_seconds)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(server: Server, process: subprocess.Popen[bytes], path: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{server.url}{path}", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not start: {server.logs()[-3000:]}")
        time.sleep(0.05)
