"""driver calls

Calls that change the world outside the database (VMs, volumes, exports, power) are recorded
before they are made and their outcome after: the ``driver_call`` table. Resources and
storage authorisations count their changes (each change's call is keyed by its number), and
reconciliation marks VMs and images whose object vanished (``missing_since``). Kicks wake a
scheduler in another process through ``job_wakeup`` where there is no LISTEN/NOTIFY.

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
    op.create_table(
        'job_wakeup',
        sa.Column('job_id', sa.String(length=100), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_wakeup')),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Row ids name VMs and volumes (qrm-vm-<id>) and key driver calls: SQLite must never
        # hand out the id of a deleted row again (PostgreSQL and MariaDB never do).
        for table in ('resource', 'image'):
            with op.batch_alter_table(
                    table, recreate='always', table_kwargs={'sqlite_autoincrement': True},
                    reflect_args=[sa.Column('id', sa.Integer(), primary_key=True,
                                            autoincrement=True)]):
                pass
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.add_column(sa.Column('power_seq', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('missing_since', TIMESTAMP, nullable=True))
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missing_since', TIMESTAMP, nullable=True))
    with op.batch_alter_table('storage_authorization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    op.drop_table('job_wakeup')
    with op.batch_alter_table('storage_authorization', schema=None) as batch_op:
        batch_op.drop_column('seq')
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.drop_column('missing_since')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_column('missing_since')
        batch_op.drop_column('power_seq')
    op.drop_index('ix_driver_call_state_not_before', table_name='driver_call')
    op.drop_index('ix_driver_call_owner', table_name='driver_call')
    op.drop_table('driver_call')
