"""Dashboard roll-ups under one filter each (source, campaign, owner, tag); lead facts keep the owner.

The lead facts gain a column, so every roll-up is emptied here and filled again from the
existing data at the end of the same `flask db upgrade` (``REBUILD_ROLLUPS``, read by
migrations/env.py), before the app can write to them.

Revision ID: filter_rollups
Revises: metric_rollups
Create Date: 2026-11-25 17:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'filter_rollups'
down_revision = 'metric_rollups'
branch_labels = None
depends_on = None

REBUILD_ROLLUPS = True  # the upgrade empties them: migrations/env.py fills them again

ROLLUPS = (
    'rollup_leads', 'rollup_lead_tags', 'rollup_lead_origins', 'rollup_speed', 'rollup_speed_staff',
    'rollup_calls', 'rollup_staff', 'rollup_lead_facts',
)


def upgrade():
    op.create_table('rollup_filter_leads',
    sa.Column('grain', sa.String(length=1), nullable=False),
    sa.Column('bucket', sa.Date(), nullable=False),
    sa.Column('filter', sa.String(length=130), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=10), autoincrement=False, nullable=False),
    sa.Column('value', sa.String(length=500), autoincrement=False, nullable=False),
    sa.Column('reached', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('leads', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('grain', 'bucket', 'filter', 'kind', 'value', 'reached', name=op.f('pk_rollup_filter_leads'))
    )
    op.create_table('rollup_filter_speed',
    sa.Column('grain', sa.String(length=1), nullable=False),
    sa.Column('bucket', sa.Date(), nullable=False),
    sa.Column('filter', sa.String(length=130), autoincrement=False, nullable=False),
    sa.Column('contact_by', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('minutes', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('leads', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('grain', 'bucket', 'filter', 'contact_by', 'minutes', name=op.f('pk_rollup_filter_speed'))
    )
    # Facts without an owner would take back contributions the new tables never got.
    for table in ROLLUPS:
        op.execute(sa.text(f'DELETE FROM {table}'))
    with op.batch_alter_table('rollup_lead_facts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('rollup_lead_facts', schema=None) as batch_op:
        batch_op.drop_column('owner_id')
    op.drop_table('rollup_filter_speed')
    op.drop_table('rollup_filter_leads')
