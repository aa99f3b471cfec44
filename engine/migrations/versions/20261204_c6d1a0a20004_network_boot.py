"""network boot: kernel files, agent reports, acceptance of new machines, hand-over codes

A kernel records the size and SHA-256 of its ``vmlinuz`` and ``initrd`` (NULL: no files).
A resource keeps the memory in use its agent reported, whether an admin accepted it
(``qrm.boot.accept_new = manual``), until when its next boot script carries a hand-over code
(``boot_window_until``: the engine rebooted it), and that code's hash and expiry.

Revision ID: c6d1a0a20004
Revises: c6d1a0a20003
Create Date: 2026-12-04 15:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'c6d1a0a20004'
down_revision = 'c6d1a0a20003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('kernel', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vmlinuz_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('vmlinuz_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('initrd_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('initrd_sha256', sa.String(length=64), nullable=True))
    # if SQLite rebuilds the table, it keeps AUTOINCREMENT (row ids are never handed out twice)
    with op.batch_alter_table('resource', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('memory_used_mb', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('accepted', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))
        batch_op.add_column(sa.Column('boot_window_until', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('handover_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('handover_expires_at', TIMESTAMP, nullable=True))


def downgrade() -> None:
    # if SQLite rebuilds the table, it keeps AUTOINCREMENT (row ids are never handed out twice)
    with op.batch_alter_table('resource', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        for column in ('handover_expires_at', 'handover_hash', 'boot_window_until', 'accepted',
                       'memory_used_mb'):
            batch_op.drop_column(column)
    with op.batch_alter_table('kernel', schema=None) as batch_op:
        for column in ('initrd_sha256', 'initrd_size', 'vmlinuz_sha256', 'vmlinuz_size'):
            batch_op.drop_column(column)
