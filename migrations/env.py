import logging
from logging.config import fileConfig

from flask import current_app

from alembic import context

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
# Keep the app's loggers: a process that migrates (tests, make run) must still log its errors.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
    except AttributeError:
        return str(get_engine().url).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def render_item(type_, obj, autogen_context):
    """Render our UTC datetime type as a plain timestamptz, so migrations import nothing of ours."""
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    conf_args.setdefault("render_item", render_item)
    conf_args.setdefault("compare_type", True)

    connectable = get_engine()

    with connectable.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration copies a table and drops the old one; with foreign keys on, a
            # table that others reference cannot be dropped once the database holds rows. The
            # pragma only takes effect outside a transaction, so it is set before the BEGIN,
            # and every reference is checked before the migration commits.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        applied: list[str] = []
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            on_version_apply=[
                lambda **kw: kw["step"].is_upgrade and applied.append(kw["step"].up_revision_id)
            ],
            **conf_args,
        )

        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left {len(broken)} broken references: {broken[:5]}")
        if sqlite:
            connection.commit()  # end the run's transaction: the pragma below is a no-op inside one
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
            if applied:
                # SQLite's planner knows an index only from ANALYZE's statistics (sqlite_stat1):
                # an index a migration added has none, and a plan can then prefer it wrongly
                # (the queue's stage filter read 2,400 leads by a new index and sorted them).
                # A full ANALYZE (no analysis_limit: a 1,000-row sample misjudged in_queue as
                # selective, and an email search walked every open lead) takes about a second
                # at 100,000 leads and 1,000,000 calls.
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
    refill_rollups(applied)


def refill_rollups(applied: list[str]) -> None:
    """Fill the dashboard's roll-ups again when an upgrade emptied them (``REBUILD_ROLLUPS``).

    Done here, in the upgrade, so that no write can land on emptied roll-ups between the
    upgrade and a separate rebuild (a write would then add its lead alone, and the dashboard
    would show that partial count as real). About a minute at 100,000 leads.
    """
    script = context.script
    if not any(getattr(script.get_revision(rev).module, "REBUILD_ROLLUPS", False) for rev in applied):
        return
    import sqlalchemy as sa

    from crm import rollups
    from crm.extensions import db
    from crm.models import Call, Lead

    try:
        if not any(db.session.scalar(sa.select(sa.literal(1)).select_from(t).limit(1)) for t in (Lead, Call)):
            return  # a new database: nothing to count (and no clinic settings to create yet)
        logger.info("Filling the dashboard's roll-ups from the existing data…")
        rollups.rebuild()
        db.session.commit()
    finally:
        db.session.remove()  # hand the connection back: nothing may hold the database after an upgrade


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
