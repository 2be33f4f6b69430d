"""Migrations: the schema builds from nothing, matches the models, and has one head.

Runs on whichever database the suite uses (SQLite, or PostgreSQL with TEST_DATABASE_URL);
CI runs the suite on both. Each test's database is its own copy, so it is a scratch
database that a downgrade may empty.
"""

from __future__ import annotations

from datetime import UTC, datetime

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


def _insert(conn: sa.Connection, table_name: str, **values: object) -> None:
    """Insert a row as the old schema stood, filling any other required column plainly."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    plain = {
        sa.Integer: 0,
        sa.String: "x",
        sa.Boolean: False,
        sa.DateTime: datetime(2026, 1, 5, 10, tzinfo=UTC),
    }
    for column in table.columns:
        if (
            column.name in values
            or column.nullable
            or column.server_default is not None
            or column.primary_key
        ):
            continue
        values[column.name] = next(v for t, v in plain.items() if isinstance(column.type, t))
    conn.execute(table.insert().values(**values))


def test_a_clinic_with_data_upgrades_from_the_first_schema_to_the_head(app):
    """A database in use (staff, patients, sessions, audit rows) upgrades without losing a row.

    SQLite rebuilds a table to change it; with foreign keys on, dropping a table that holds
    referenced rows would fail, so the migration environment switches them off for the run and
    checks every reference before committing.
    """
    db.session.remove()
    downgrade(revision="0001")
    with db.engine.begin() as conn:
        _insert(conn, "users", id=7, email="ana@clinic.test", name="Ana", role="front_desk")
        _insert(
            conn,
            "leads",
            id=11,
            first_name="Maria",
            last_name="Delgado",
            source="phone",
            stage="new",
            owner_id=7,
        )
        _insert(conn, "user_sessions", id="s" * 43, user_id=7)
        _insert(conn, "audit_events", user_id=7, action="lead_view", lead_id=11, via="web")
    upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT owner_id FROM leads WHERE id = 11")).scalar() == 7
        assert conn.execute(sa.text("SELECT email FROM users WHERE id = 7")).scalar() == "ana@clinic.test"
        assert conn.execute(sa.text("SELECT count(*) FROM user_sessions WHERE user_id = 7")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM audit_events WHERE lead_id = 11")).scalar() == 1
        # The upgrade that empties the dashboard's roll-ups fills them again before it returns.
        facts = sa.text("SELECT owner_id FROM rollup_lead_facts WHERE lead_id = 11")
        assert conn.execute(facts).scalar() == 7
    if db.engine.dialect.name == "sqlite":
        # SQLite plans only with indexes it has statistics for: an upgrade that ran analyses
        # the database, so an index a migration added is known to the planner at once.
        with db.engine.connect() as conn:
            indexes = set(conn.execute(sa.text("SELECT name FROM pragma_index_list('leads')")).scalars())
            analysed = set(
                conn.execute(sa.text("SELECT idx FROM sqlite_stat1 WHERE tbl = 'leads'")).scalars()
            )
        assert indexes and indexes <= analysed


def test_the_upgrade_adds_the_joined_words_of_names_already_there(app):
    """0006: a lead stored before it is found by "obrien" after the upgrade, and only once."""
    db.session.remove()
    downgrade(revision="queue_filter_counts")
    with db.engine.begin() as conn:
        _insert(conn, "leads", id=21, first_name="Mary", last_name="O'Brien", source="phone", stage="new")
        _insert(conn, "leads", id=22, first_name="Ana", last_name="Lopez", source="phone", stage="new")
        for lead_id, term in ((21, "mary"), (21, "o"), (21, "brien"), (22, "ana"), (22, "lopez")):
            _insert(conn, "lead_search_terms", lead_id=lead_id, term=term)
    upgrade()
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT lead_id, term FROM lead_search_terms ORDER BY lead_id, term")
        ).all()
    assert [tuple(r) for r in rows] == [
        (21, "brien"),
        (21, "mary"),
        (21, "o"),
        (21, "obrien"),
        (22, "ana"),
        (22, "lopez"),
    ]
