"""command worker: claims with a lease, the start of the latest attempt, its error

The worker claims a queued command for ``timeout + margin`` (``claimed_by``,
``claimed_until``); a claim that ran out is claimed again. ``error`` says why an attempt gave
no exit code (unreachable, timed out, host key refused).

Revision ID: c6d1a0a20003
Revises: 8fcdc4f71a5e
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'c6d1a0a20003'
down_revision = '8fcdc4f71a5e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('started_at', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.drop_column('error')
        batch_op.drop_column('started_at')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
