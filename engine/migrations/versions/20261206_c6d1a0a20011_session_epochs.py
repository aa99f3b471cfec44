"""session epochs of admin and cloud-user accounts

Revision ID: c6d1a0a20011
Revises: c6d1a0a20010
Create Date: 2026-12-06 22:25:00
"""

import sqlalchemy as sa
from alembic import op

revision = 'c6d1a0a20011'
down_revision = 'c6d1a0a20010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("admin_user", "cloud_user"):
        op.add_column(table, sa.Column("session_epoch", sa.Integer(), nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    for table in ("admin_user", "cloud_user"):
        with op.batch_alter_table(table, table_kwargs={"sqlite_autoincrement": True}) as batch:
            batch.drop_column("session_epoch")
