"""driver calls

Calls that change the world outside the database (VMs, volumes, exports, power) are recorded
before they are made and their outcome after: the ``driver_call`` table.

Revision ID: c6d1a0a20001
Revises: 8fcdc4f71a5e
Create Date: 2026-12-03 12:00:00
"""

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import mysql

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'c6d1a0a20001'
down_revision = '8fcdc4f71a5e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'driver_call',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('operation', sa.String(length=40), nullable=False),
        sa.Column('driver', sa.String(length=50), nullable=False),
        sa.Column('owner', sa.String(length=60), nullable=True),
        sa.Column('target', sa.JSON(), nullable=False),
        sa.Column('arguments', sa.JSON(), nullable=False),
        sa.Column('state', sa.Enum('pending', 'done', 'failed', name='callstate',
                                   native_enum=False, create_constraint=False, length=20),
                  nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('not_before', TIMESTAMP, nullable=False),
        sa.Column('claimed_until', TIMESTAMP, nullable=True),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error_kind', sa.String(length=20), nullable=True),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('done_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_driver_call')),
        sa.UniqueConstraint('key', name=op.f('uq_driver_call_key')),
    )
    op.create_index('ix_driver_call_owner', 'driver_call', ['owner', 'state'], unique=False)
    op.create_index('ix_driver_call_state_not_before', 'driver_call', ['state', 'not_before'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_driver_call_state_not_before', table_name='driver_call')
    op.drop_index('ix_driver_call_owner', table_name='driver_call')
    op.drop_table('driver_call')
