"""Spine Center CRM: the application factory."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, Request, Response, g, has_request_context
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.middleware.proxy_fix import ProxyFix

from config import load_config

ROOT = Path(__file__).resolve().parent.parent


class CRMRequest(Request):
    """A request whose form fields never carry a NUL character.

    No text a person types holds one, and PostgreSQL refuses it in a text column (a server
    error at the insert, after every check passed): it is dropped once here for every form,
    instead of in each one. The phone system's webhook keeps the exact bytes it signed, and
    the public form refuses control characters itself, with a message for the patient.
    """

    KEEP_AS_SENT = ("/webhooks/", "/request-appointment")

    def _load_form_data(self) -> None:
        super()._load_form_data()
        if self.path.startswith(self.KEEP_AS_SENT):
            return
        pairs = list(self.form.items(multi=True))
        if any("\x00" in key or "\x00" in value for key, value in pairs):
            self.form = ImmutableMultiDict([(k.replace("\x00", ""), v.replace("\x00", "")) for k, v in pairs])


def create_app(config: Any = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error pages and commands."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(Path(os.environ.get("CRM_INSTANCE_PATH") or ROOT / "instance").resolve()),
        instance_relative_config=True,
    )
    app.request_class = CRMRequest
    register_config(app, config)
    register_server_timing(app)  # first, so its clock covers every other hook
    register_extensions(app)
    register_sql_count(app)
    register_security(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_template_helpers(app)
    return app


def register_config(app: Flask, config: Any) -> None:
    """Load settings, default to SQLite in the instance folder, trust only the proxies named."""
    if isinstance(config, dict):
        base = load_config(_test_config_class())
        for key, value in config.items():
            setattr(base, key, value)
        cfg = base
    else:
        cfg = load_config(config)
    app.config.from_object(cfg)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'crm.db'}"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    hops = app.config["PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    # SQL statements carry patient values as bound parameters; keep SQLAlchemy's logger quiet.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # The development server (``make run``) logs each request line; gunicorn's format leaves
    # the query string out (``gunicorn.conf.py``), and so must this one.
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, NoQueryStrings) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(NoQueryStrings())


class NoQueryStrings(logging.Filter):
    """Drop query strings from log lines: a search (``/leads?q=<a patient's name>``) carries
    patient names and phone numbers, which no log may hold (PRODUCT §9)."""

    _QUERY = re.compile(r"\?[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = self._QUERY.sub("", message), None
        return True


def _test_config_class() -> type:
    from config import TestConfig

    return TestConfig


def engine_options(url: str) -> dict[str, Any]:
    """Return engine options per database (SQLite needs no pool sizing)."""
    # hide_parameters: a failed statement's message must not carry a patient's name or phone
    # into a log or a traceback.
    # pool_use_lifo: a threaded worker (gunicorn.conf.py) hands each request the connection
    # used last, whose caches are warm (SQLite's page cache and PostgreSQL's prepared statements
    # are per connection), instead of going round all of them in turn.
    if url.startswith("sqlite"):
        options: dict[str, Any] = {
            "hide_parameters": True,
            "connect_args": {"timeout": 30, "check_same_thread": False},
        }
        if sa.engine.make_url(url).database not in (None, "", ":memory:"):  # a file: a queue pool
            options["pool_use_lifo"] = True
        return options
    # plan_cache_mode: psycopg prepares a statement run five times, and PostgreSQL then may
    # switch it to a generic plan, blind to the values: the queue's tag filter went from 2.4 ms
    # to 47 ms (median) at 100k leads that way. Each execution is planned for its own values.
    # timezone=UTC: times come back in UTC whatever the server's default zone, already in the
    # form ``UTCDateTime`` returns (no conversion per value: 100 queue rows carry 300 of them).
    return {
        "hide_parameters": True,
        "pool_pre_ping": True,
        "pool_use_lifo": True,
        # Up to one connection per thread of a worker (gunicorn.conf.py: 32), kept open: 5.
        "pool_size": 5,
        "max_overflow": 27,
        "connect_args": {"options": "-c plan_cache_mode=force_custom_plan -c timezone=UTC"},
    }


def register_extensions(app: Flask) -> None:
    """Bind the extensions and the SQLite connection rules."""
    from crm import business_hours, rollups
    from crm.db_setup import install_sqlite_rules
    from crm.extensions import csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    rollups.install()  # dashboard roll-ups follow every write, in its transaction
    business_hours.install()  # the holidays are read once per transaction
    with app.app_context():
        install_sqlite_rules(db.engine)


def register_security(app: Flask) -> None:
    """Security headers, session checks and the sign-in rules."""
    from crm import passwords
    from crm.authz import init_authz
    from crm.security import init_security

    passwords.configure(
        memory_kib=app.config["PASSWORD_HASH_MEMORY_KIB"], time_cost=app.config["PASSWORD_HASH_TIME_COST"]
    )
    init_security(app)
    init_authz(app)


def register_blueprints(app: Flask) -> None:
    """Mount one blueprint per area."""
    from crm.admin import bp as admin_bp
    from crm.api import bp as api_bp
    from crm.auth import bp as auth_bp
    from crm.dashboard import bp as dashboard_bp
    from crm.leads import bp as leads_bp
    from crm.public import bp as public_bp
    from crm.referrals import bp as referrals_bp
    from crm.webhooks import bp as webhooks_bp

    for bp in (auth_bp, public_bp, webhooks_bp, leads_bp, referrals_bp, dashboard_bp, admin_bp, api_bp):
        app.register_blueprint(bp)


def register_errorhandlers(app: Flask) -> None:
    """Render error pages (JSON for the API) and roll back on a server error."""
    from crm.errors import init_errorhandlers

    init_errorhandlers(app)


def register_commands(app: Flask) -> None:
    """Add the ``flask user / seed-demo / triage`` commands."""
    from crm.cli import init_commands

    init_commands(app)


def register_template_helpers(app: Flask) -> None:
    """Filters and globals the templates share (phone display, local times, labels)."""
    from crm.templating import init_templating

    init_templating(app)


def register_server_timing(app: Flask) -> None:
    """Report the server's own time per request in a ``Server-Timing`` header (for the benchmark)."""

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _stop_timer(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        if "sql_statements" in g:
            response.headers["X-SQL-Statements"] = str(g.sql_statements)
        return response


def register_sql_count(app: Flask) -> None:
    """With ``BENCH_SQL_COUNT`` on, count the statements each request sends to the database.

    The count (every statement through the driver's cursor, SQLite's ``BEGIN IMMEDIATE``
    included) goes out in ``X-SQL-Statements`` beside ``Server-Timing``; the benchmark shows it
    per page. Statements after the response is built (none today) are not counted.
    """
    if not app.config.get("BENCH_SQL_COUNT"):
        return
    from crm.extensions import db

    @app.before_request
    def _start_count() -> None:
        g.sql_statements = 0

    def _count(*_args: Any) -> None:
        if has_request_context() and "sql_statements" in g:
            g.sql_statements += 1

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", _count)
