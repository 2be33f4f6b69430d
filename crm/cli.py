"""Command line: ``flask --app wsgi user … / seed-demo / triage``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from crm import audit, clock, twofactor
from crm.accounts import AccountRefused, create_user, deactivate_user
from crm.extensions import db
from crm.models import ROLE_LABELS, ROLES, Lead, RollupLeadFacts, User
from crm.passwords import WeakPassword
from crm.security import end_all_sessions, set_password

user_cli = AppGroup("user", help="Manage staff accounts.")


@user_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The staff member's role.")
@click.option("--name", required=True, help="Full name, as colleagues know them.")
@click.option("--password", default=None, help="Omit to be prompted (hidden).")
def user_create(email: str, role: str, name: str, password: str | None) -> None:
    """Create a staff account."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, role=role, name=name, password=password)
    except (AccountRefused, WeakPassword) as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Created {user.email} ({user.role}).")


@user_cli.command("deactivate")
@click.argument("email")
def user_deactivate(email: str) -> None:
    """Deactivate an account (never deleted) and end all of its sessions."""
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No account for {email}.")
    if not user.active:
        click.echo(f"{user.email} is already deactivated.")
        return
    ended, moved = deactivate_user(user)
    db.session.commit()
    unassigned = f" {moved} open lead(s) are now unassigned." if moved else ""
    click.echo(f"Deactivated {user.email}; ended {ended} session(s).{unassigned}")


@user_cli.command("set-password")
@click.argument("email")
@click.option("--password", default=None, help="Omit to be prompted (hidden).")
def user_set_password(email: str, password: str | None) -> None:
    """Reset an account's password and end all of its sessions."""
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No account for {email}.")
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        ended = set_password(user, password)
    except WeakPassword as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    audit.record(
        "user_set_password", user_id=None, detail={"user_id": user.id, "sessions_ended": ended}, via="cli"
    )
    db.session.commit()
    click.echo(f"Changed the password of {user.email}; ended {ended} session(s).")


@user_cli.command("reset-2fa")
@click.argument("email")
def user_reset_2fa(email: str) -> None:
    """Clear an account's two-factor setup (a lost phone) and end its sessions."""
    user = _user_by_email(email)
    if not user.totp_enabled:
        click.echo(f"{user.email} has no two-factor setup; nothing to reset.")
        return
    twofactor.reset(user, actor_id=None, via="cli")
    ended = end_all_sessions(user)
    db.session.commit()
    then = "sets it up again at the next sign-in" if twofactor.required_for(user) else "may set it up again"
    click.echo(f"Reset two-factor sign-in of {user.email}; ended {ended} session(s). They {then}.")


@click.command("seed-demo")
@click.option("--leads", "n_leads", default=2000, show_default=True, type=click.IntRange(0, 2_000_000))
@click.option("--calls", "n_calls", default=20000, show_default=True, type=click.IntRange(0, 20_000_000))
@click.option("--seed", default=5457, show_default=True, help="Random seed, for repeatable data.")
def seed_demo_command(n_leads: int, n_calls: int, seed: int) -> None:
    """Fill the database with realistic demo data (also the benchmark's data set)."""
    from crm.seed import seed_demo  # imported here: only this command needs it

    summary = seed_demo(n_leads=n_leads, n_calls=n_calls, seed=seed, echo=click.echo)
    click.echo(summary)


@click.command("demo")
def demo_command() -> None:
    """Seed demo data (with the demo logins) on first run only, and print the logins."""
    from crm.seed import DEMO_LOGINS, seed_demo  # only this command needs them

    if db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0:
        click.echo("First run: adding demo data (a minute at most)…")
        click.echo(seed_demo(n_leads=2000, n_calls=20000, seed=5457, echo=click.echo))
    elif db.session.scalar(sa.select(sa.func.count()).select_from(RollupLeadFacts)) == 0:
        # A database from before the dashboard's roll-ups (or whose roll-ups were emptied).
        from crm import rollups

        click.echo("Filling the dashboard's roll-ups from the existing data…")
        rollups.rebuild()
        db.session.commit()
    click.echo("\nDemo logins (demo data only — never use these on real patient data):")
    for email, role, _name, password in DEMO_LOGINS:
        click.echo(f"  {ROLE_LABELS[role]:<11} {email:<28} {password}")


@click.group("metrics")
def metrics_cli() -> None:
    """Dashboard roll-ups."""


@metrics_cli.command("rebuild")
def metrics_rebuild_command() -> None:
    """Recompute the dashboard's roll-up tables from the raw tables, in one transaction."""
    from crm import rollups  # only this command needs it

    started = time.perf_counter()
    counts = rollups.rebuild()
    db.session.commit()
    rows = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    click.echo(f"Rebuilt the roll-ups ({rows}) in {time.perf_counter() - started:.1f} s.")


@click.command("triage")
@click.argument("text")
def triage_command(text: str) -> None:
    """Tag a text as the intake would, and show the words behind each tag."""
    from crm.triage import format_explanation  # loads medspaCy: only when asked

    click.echo(format_explanation(text))


@click.command("import-csv")
@click.argument("kind", type=click.Choice(["leads", "calls"]))
@click.argument("file", type=click.File("rb"))
@click.option("--skip-bad-rows", is_flag=True, help="Import the good rows even when some rows are bad.")
def import_csv_command(kind: str, file: Any, skip_bad_rows: bool) -> None:
    """Import a CSV file of leads or calls: all of it, or nothing while a row is bad."""
    from crm import imports  # only this command needs it

    lines = current_app.config["CLINIC_LINES"]
    started = time.perf_counter()
    try:
        parsed = imports.read_csv(file.read(imports.MAX_BYTES + 1), kind, lines=lines)
    except imports.ImportRefused as error:
        raise click.ClickException(str(error)) from None
    for notice in parsed.notices:
        click.echo(notice)
    try:
        result = imports.import_rows(
            parsed, skip_bad_rows=skip_bad_rows, lines=lines, now=clock.now(), via="cli"
        )
    except imports.ImportRefused as error:
        db.session.rollback()
        for row_error in parsed.errors:
            click.echo(str(row_error), err=True)
        raise click.ClickException(str(error)) from None
    db.session.commit()
    for row_error in result.errors:
        click.echo(f"skipped {row_error}", err=True)
    click.echo(f"{result.summary()} ({time.perf_counter() - started:.1f} s)")


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Write a consistent backup of the database to PATH while the app keeps running."""
    from crm import backup  # only these commands need it

    try:
        summary = backup.backup(current_app.config["SQLALCHEMY_DATABASE_URI"], path)
    except backup.BackupError as error:
        raise click.ClickException(str(error)) from None
    # A backup holds every patient's record: who took it, and where, belongs in the audit log.
    audit.record("backup", user_id=None, detail={"file": path.name}, via="cli")
    db.session.commit()
    click.echo(f"Backed up to {summary}")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore_command(path: Path) -> None:
    """Load the backup at PATH into the app's database, which must be new and empty."""
    from crm import backup

    try:
        summary = backup.restore(current_app.config["SQLALCHEMY_DATABASE_URI"], path)
    except backup.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Restored {summary}")


def init_commands(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(user_cli)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(triage_command)
    app.cli.add_command(demo_command)
    app.cli.add_command(import_csv_command)
    app.cli.add_command(metrics_cli)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
    app.cli.add_command(token_cli)


token_cli = AppGroup("token", help="Manage API bearer tokens.")


def _user_by_email(email: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No account for {email}.")
    return user


@token_cli.command("create")
@click.option("--user", "email", required=True, help="The staff member the token acts as.")
@click.option("--name", required=True, help="A name for the token (e.g. the system using it).")
@click.option("--scope", default="read", type=click.Choice(["read", "write"]), show_default=True)
def token_create(email: str, name: str, scope: str) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from crm.apitokens import TokenRefused, create_token

    try:
        new = create_token(_user_by_email(email), name, scope=scope)
    except TokenRefused as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Created token {name!r} ({scope}) for {email}. Copy it now; it is not shown again:")
    click.echo(new.plaintext)


@token_cli.command("revoke")
@click.option("--user", "email", required=True)
@click.option("--name", required=True)
def token_revoke(email: str, name: str) -> None:
    """Revoke an API token: it stops working at once."""
    from crm.apitokens import TokenRefused, revoke_token

    try:
        revoke_token(_user_by_email(email), name)
    except TokenRefused as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Revoked token {name!r} of {email}.")
