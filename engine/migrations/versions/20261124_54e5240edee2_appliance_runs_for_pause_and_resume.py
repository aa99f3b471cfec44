"""appliance runs for pause and resume

A paused appliance is not billed; when it is started again its hours are counted from the new
start, so each run has its own number in the ledger keys.

Revision ID: 54e5240edee2
Revises: 867711ce9832
Create Date: 2026-11-24 01:16:18.635104
"""

import sqlalchemy as sa
from alembic import op

revision = '54e5240edee2'
down_revision = '867711ce9832'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cloud_appliance', schema=None) as batch_op:
        # existing appliances are in their first run
        batch_op.add_column(sa.Column('run', sa.Integer(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('cloud_appliance', schema=None) as batch_op:
        batch_op.drop_column('run')

