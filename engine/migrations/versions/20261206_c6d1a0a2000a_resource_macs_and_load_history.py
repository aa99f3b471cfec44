"""resource: the MACs a machine registered with, a bounded history of its reports

A machine's agent registers every network card's MAC; ``resource.mac`` keeps the first (the
boot MAC), ``resource.macs`` all of them. ``resource.load_history`` keeps the last reports
(one a minute at most, a bounded list) for the console's load chart: it is written with the
report's own update of the row, so no table grows with the reports.
``ix_resource_state_id`` serves the console's resource list filtered by state in id order.

Revision ID: c6d1a0a2000a
Revises: c6d1a0a20006
Create Date: 2026-12-06 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'c6d1a0a2000a'
down_revision = 'c6d1a0a20006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # if SQLite rebuilds the table, it keeps AUTOINCREMENT (row ids are never handed out twice)
    with op.batch_alter_table('resource', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('macs', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('load_history', sa.JSON(), nullable=True))
        batch_op.create_index('ix_resource_state_id', ['state', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('resource', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('ix_resource_state_id')
        batch_op.drop_column('load_history')
        batch_op.drop_column('macs')
