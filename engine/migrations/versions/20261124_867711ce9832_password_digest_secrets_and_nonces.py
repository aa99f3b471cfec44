"""password digest secrets and nonces: WS-Security PasswordDigest support

Accounts get an encrypted copy of their password (only written when the server has a key);
``wsse_nonce`` remembers recent digest nonces so that no worker accepts a replay.

Revision ID: 867711ce9832
Revises: b5dca22fc544
Create Date: 2026-11-24 00:59:22.175949
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = '867711ce9832'
down_revision = 'b5dca22fc544'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wsse_nonce',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('nonce', sa.String(length=100), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wsse_nonce')),
    sa.UniqueConstraint('username', 'nonce', name=op.f('uq_wsse_nonce_username_nonce'))
    )
    with op.batch_alter_table('wsse_nonce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wsse_nonce_created_at'), ['created_at'], unique=False)

    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_secret', sa.Text(), nullable=True))

    with op.batch_alter_table('cloud_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_secret', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('cloud_user', schema=None) as batch_op:
        batch_op.drop_column('digest_secret')

    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.drop_column('digest_secret')

    op.drop_table('wsse_nonce')
