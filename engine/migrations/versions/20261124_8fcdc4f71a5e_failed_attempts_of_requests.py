"""failed attempts of requests

A request whose provisioning step keeps failing is retried with growing pauses and, after a
limit, left for an admin to retry (instead of failing every few seconds forever).

Revision ID: 8fcdc4f71a5e
Revises: 54e5240edee2
Create Date: 2026-11-24 01:34:39.945797
"""

import sqlalchemy as sa
from alembic import op

revision = '8fcdc4f71a5e'
down_revision = '54e5240edee2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cloud_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_attempts', sa.Integer(), nullable=False,
                                      server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('cloud_request', schema=None) as batch_op:
        batch_op.drop_column('failed_attempts')

