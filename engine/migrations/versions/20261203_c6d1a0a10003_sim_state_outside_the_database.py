"""sim state outside the database

Revision ID: c6d1a0a10003
Revises: c6d1a0a10001
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = 'c6d1a0a10003'
down_revision = 'c6d1a0a10001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
