"""Fixtures: a fresh migrated database per test, on SQLite or PostgreSQL, and factories.

SQLite: the schema is migrated once into a template file, copied for each test.
PostgreSQL (``TEST_DATABASE_URL`` set): the schema is migrated once into a template
database, and each test gets ``CREATE DATABASE … TEMPLATE`` of it — real committed rows,
so tests that start a gunicorn server see the same data as the test itself.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import make_url

from config import TestConfig
from crm import clock, create_app
from crm.extensions import db
from crm.models import Lead, LeadTag, User
from crm.passwords import hash_password

PG_URL = os.environ.get("TEST_DATABASE_URL", "")

# Hypothesis: "ci" (the default) is deterministic — the same examples every run, none kept in a
# local example database — with no per-example deadline (a shared 2-core machine is noisy) and
# 200 examples per property; "dev" explores fresh random examples. HYPOTHESIS_PROFILE picks one.
_FIXTURE_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=200,
    suppress_health_check=_FIXTURE_CHECKS,
)
settings.register_profile(
    "dev", deadline=None, database=None, max_examples=200, suppress_health_check=_FIXTURE_CHECKS
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
DEFAULT_PASSWORD = "a-long-test-password-for-staff"
_counter = itertools.count()
_HASH_CACHE: dict[str, str] = {}


def make_config(url: str, instance: Path, **overrides: Any) -> TestConfig:
    """Return a test config pointing at one database."""
    cfg = TestConfig()
    cfg.SQLALCHEMY_DATABASE_URI = url
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _migrate(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    app = create_app(make_config(url, instance))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _pg_admin() -> psycopg.Connection[Any]:
    url = make_url(PG_URL)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        autocommit=True,
    )


def _pg_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(name: str) -> None:
    """Drop a test database, waiting out a moment's autovacuum on it.

    ``WITH (FORCE)`` ends our own leftover connections, but a role that is not a superuser may
    not end an autovacuum worker (``InsufficientPrivilege``); that worker leaves within
    moments, so try again. A database that still cannot be dropped is left behind: it holds
    only test data and costs nothing but disk.
    """
    for attempt in range(20):
        try:
            with _pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            time.sleep(0.1 * (attempt + 1))


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrate the schema once; yield the template (a file path, or a PostgreSQL database name)."""
    instance = tmp_path_factory.mktemp("instance")
    if PG_URL:
        name = f"crm_tpl_{os.getpid()}"
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        _migrate(_pg_url(name), instance)
        yield name
        _drop_pg_database(name)
    else:
        path = instance / "template.db"
        _migrate(f"sqlite:///{path}", instance)
        yield str(path)


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test, copied from the template."""
    if PG_URL:
        name = f"crm_t_{os.getpid()}_{next(_counter)}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{database_template}"')
        yield _pg_url(name)
        _drop_pg_database(name)
    else:
        path = tmp_path / "crm.db"
        shutil.copyfile(database_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> TestConfig:
    """The config of the test's app; a test may change it before ``app`` is built."""
    return make_config(database_url, tmp_path)


@pytest.fixture
def app(app_config: TestConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The application on the test's own database, with an app context pushed."""
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(app_config)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()
    clock.set_now(None)


class CRMTestClient(FlaskClient):
    """A test client whose requests run as a server's would: in their own app context.

    The ``app`` fixture keeps an app context pushed for the test's own queries; Flask would
    reuse it for requests (sharing ``g`` and the database session with the test). Each
    request instead runs in an empty ``contextvars`` context, and the test's session is
    committed first so it holds no SQLite write lock while the request runs.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            db.session.commit()
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like test client (cookies kept, CSRF on)."""
    app.test_client_class = CRMTestClient
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    """A runner for the ``flask`` commands."""
    return app.test_cli_runner()


@pytest.fixture
def frozen_clock() -> Iterator[Callable[[datetime], None]]:
    """Set the app's clock (``clock.now``) to a given moment; let it run again afterwards."""
    yield clock.set_now
    clock.set_now(None)


def _hash(password: str) -> str:
    # Argon2 is deliberately slow; the suite hashes each distinct password once.
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = hash_password(password)
    return _HASH_CACHE[password]


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    """Create a committed staff account: ``make_user(role="surgeon", name=...)``."""

    def make(role: str = "front_desk", **overrides: Any) -> User:
        n = uuid.uuid4().hex[:8]
        password = overrides.pop("password", DEFAULT_PASSWORD)
        values: dict[str, Any] = {
            "email": f"{role}.{n}@clinic.test",
            "name": f"{role.replace('_', ' ').title()} {n}",
            "role": role,
            "password_hash": _hash(password),
        }
        values.update(overrides)
        user = User(**values)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def make_lead(app: Flask) -> Callable[..., Lead]:
    """Create a committed lead: ``make_lead(stage="evaluation", tags=["history:failed_pt"])``.

    Tags are stored as the tagger would (origin "auto"); a lead created past ``new`` gets no
    history rows: tests of history build it through ``pipeline.move``.
    """

    def make(*, tags: list[str] | tuple[str, ...] = (), tag_origin: str = "auto", **overrides: Any) -> Lead:
        n = next(_counter)
        values: dict[str, Any] = {
            "first_name": "Pat",
            "last_name": f"Patient{n}",
            "source": "phone",
            "stage": "new",
            "created_at": clock.now(),
        }
        values.update(overrides)
        lead = Lead(**values)
        for code in tags:
            lead.tags.append(LeadTag(code=code, origin=tag_origin, state="active"))
        db.session.add(lead)
        db.session.commit()
        return lead

    return make


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """Pull the CSRF token out of a rendered form."""
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1) or match.group(2)


def sign_in(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD) -> Any:
    """Sign in through the real form (CSRF included); return the response."""
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def login_as(client: FlaskClient, make_user: Callable[..., User]) -> Callable[..., User]:
    """Create a user of a role and sign the test client in as them."""

    def login(role: str = "front_desk", **overrides: Any) -> User:
        user = make_user(role, **overrides)
        response = sign_in(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return user

    return login


class QueryCounter:
    """Counts the SQL statements run inside a ``with`` block."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __len__(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app: Flask) -> Callable[[], Any]:
    """``with count_queries() as q: ...`` then ``len(q)`` is the statements issued."""
    from contextlib import contextmanager

    @contextmanager
    def counting() -> Iterator[QueryCounter]:
        counter = QueryCounter()

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            # Transaction control is not a query: BEGIN, savepoints, and a read page's
            # ``SET LOCAL synchronous_commit`` on PostgreSQL (crm.audit.commit_view).
            if not statement.startswith(("BEGIN", "PRAGMA", "SAVEPOINT", "RELEASE", "SET LOCAL")):
                counter.statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", before)

    return counting


def utc(*args: int) -> datetime:
    """Build a UTC datetime: ``utc(2026, 3, 9, 14, 0)``."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
