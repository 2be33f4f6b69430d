"""No patient data in request logs: the development server's (``make run``) leaves out query strings.

A search is a GET with the patient's name or phone in its query string; gunicorn's access log
format drops it (``gunicorn.conf.py``), and the development server's request line must too.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server


def test_the_development_servers_request_lines_leave_out_the_query_string(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            base = f"http://127.0.0.1:{server.server_port}"
            requests.get(f"{base}/leads?q=James+Martin&phone=(469)+431-4726", timeout=10)
            requests.get(f"{base}/login?next=/leads%3Fq%3DRosa+Ortega", timeout=10)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    # (the status colours of a terminal's log, when there is one, are left out)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", r.getMessage()) for r in caplog.records if r.name == "werkzeug"]
    assert any('"GET /leads HTTP/1.1" 302' in line for line in lines), lines
    assert any('"GET /login HTTP/1.1" 200' in line for line in lines), lines
    for line in lines:
        for patient in ("James", "Martin", "469", "4726", "Rosa", "Ortega"):
            assert patient not in line, line
