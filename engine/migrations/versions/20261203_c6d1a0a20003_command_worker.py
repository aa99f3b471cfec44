"""command worker: claims with a lease, SSH targets of machines, pinned host keys

The worker claims a queued command for ``timeout + margin`` (``claimed_by``,
``claimed_until``); a claim that ran out is claimed again. ``error`` says why an attempt gave
no exit code (unreachable, timed out, host key refused). A command may run on a storage host
(``storage_id``).

Resources and storage hosts name their SSH target (``ssh_host``, ``ssh_port``, ``ssh_user``,
``ssh_key`` — a key file's name or path, never key material). ``ssh_host_key`` pins one host
key per SSH endpoint (host, port).

Revision ID: c6d1a0a20003
Revises: c6d1a0a20002
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'c6d1a0a20003'
down_revision = 'c6d1a0a20002'
branch_labels = None
depends_on = None


def _ssh_target_columns() -> list[sa.Column]:
    return [sa.Column('ssh_host', sa.String(length=255), nullable=True),
            sa.Column('ssh_port', sa.Integer(), nullable=True),
            sa.Column('ssh_user', sa.String(length=64), nullable=True),
            sa.Column('ssh_key', sa.String(length=255), nullable=True)]


def upgrade() -> None:
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('started_at', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('storage_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_command_storage_id_storage'), 'storage',
                                    ['storage_id'], ['id'])
    for table in ('resource', 'storage'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _ssh_target_columns():
                batch_op.add_column(column)
    op.create_table(
        'ssh_host_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('key_type', sa.String(length=50), nullable=False),
        sa.Column('key_base64', sa.Text(), nullable=False),
        sa.Column('first_seen', TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ssh_host_key')),
        sa.UniqueConstraint('host', 'port', name='uq_ssh_host_key_host_port'),
    )


def downgrade() -> None:
    op.drop_table('ssh_host_key')
    for table in ('storage', 'resource'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(_ssh_target_columns()):
                batch_op.drop_column(column.name)
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_command_storage_id_storage'), type_='foreignkey')
        batch_op.drop_column('storage_id')
        batch_op.drop_column('error')
        batch_op.drop_column('started_at')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
