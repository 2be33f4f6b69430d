"""Two-factor sign-in: encrypted TOTP secret, replay guard, recovery codes, pending sessions.

Revision ID: two_factor
Revises: 0001
Create Date: 2026-11-25 14:30:00

The initial schema held placeholders (a 64-character secret, recovery codes as a JSON list,
a ``second_factor_done`` flag). They held no data, as nothing wrote them. The replacements:
- ``users.totp_secret`` widens to hold a Fernet token; ``totp_enrolled_at`` and
  ``totp_last_step`` (the last accepted time step, which refuses a replayed code) are added.
- ``recovery_codes`` becomes a table of single-use keyed hashes, so using one is one
  conditional UPDATE that two workers cannot both win.
- ``user_sessions.pending`` ("code" / "enrol" / NULL) replaces ``second_factor_done``:
  NULL means a complete sign-in, so sessions live at upgrade time stay signed in.
"""
from alembic import op
import sqlalchemy as sa


revision = "two_factor"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index("ix_recovery_codes_user_hash", ["user_id", "code_hash"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "totp_secret", existing_type=sa.String(length=64), type_=sa.String(length=255), existing_nullable=True
        )
        batch_op.add_column(sa.Column("totp_enrolled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch_op.drop_column("recovery_codes")

    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending", sa.String(length=10), nullable=True))
        batch_op.create_check_constraint(op.f("ck_user_sessions_pending"), "pending IN ('code', 'enrol')")
        batch_op.drop_column("second_factor_done")


def downgrade() -> None:
    # The old column cannot hold an encrypted secret: everyone's 2FA is switched off.
    op.execute("UPDATE users SET totp_secret = NULL, totp_enabled = false")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("second_factor_done", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.drop_constraint(op.f("ck_user_sessions_pending"), type_="check")
        batch_op.drop_column("pending")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovery_codes", sa.JSON(), nullable=True))
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_enrolled_at")
        batch_op.alter_column(
            "totp_secret", existing_type=sa.String(length=255), type_=sa.String(length=64), existing_nullable=True
        )

    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_recovery_codes_user_hash")
    op.drop_table("recovery_codes")
