"""Migrations: the schema builds from nothing, matches the models, and has one head.

Runs on whichever database the suite uses (SQLite, or PostgreSQL with TEST_DATABASE_URL);
CI runs the suite on both. Each test's database is its own copy, so it is a scratch
database that a downgrade may empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade, upgrade

from crm.extensions import db

CORE_TABLES = {"users", "leads", "calls", "audit_events", "stage_changes", "user_sessions", "throttle_hits"}


def _tables() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def _head_count(app: Flask) -> int:
    config = app.extensions["migrate"].migrate.get_config()
    return len(ScriptDirectory.from_config(config).get_heads())


def test_the_migrated_schema_matches_the_models(app, runner):
    # `flask db check` exits 1 when autogenerate finds any difference (see the drift test).
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
    assert _tables() >= CORE_TABLES


def test_db_check_notices_a_schema_that_drifted_from_the_models(app, runner):
    # The control for the test above: the check can fail, here for a missing index.
    db.session.execute(sa.text("DROP INDEX ix_leads_phone"))
    db.session.commit()
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 1


def test_there_is_exactly_one_migration_head(app):
    assert _head_count(app) == 1


def test_the_database_is_at_the_head(app):
    script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
    current = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert current == script.get_current_head()


def test_downgrade_to_nothing_and_upgrade_again(app):
    db.session.remove()  # no open transaction may hold the tables the downgrade drops
    downgrade(revision="base")
    assert _tables() <= {"alembic_version"}

    upgrade()
    assert _tables() >= CORE_TABLES
    # The rebuilt schema still works, audit guard included.
    db.session.execute(
        sa.text("INSERT INTO audit_events (at, action, via) VALUES (CURRENT_TIMESTAMP, 'x', 'cli')")
    )
    db.session.commit()
    assert db.session.scalar(sa.text("SELECT count(*) FROM audit_events")) == 1
    try:
        db.session.execute(sa.text("DELETE FROM audit_events"))
        deleted = True
    except sa.exc.DBAPIError as error:
        deleted = False
        assert "append-only" in str(error.orig)
    db.session.rollback()
    assert not deleted
    assert db.session.scalar(sa.text("SELECT count(*) FROM audit_events")) == 1
