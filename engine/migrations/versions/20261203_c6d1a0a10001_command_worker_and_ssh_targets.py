"""command worker and SSH targets

Revision ID: c6d1a0a10001
Revises: 8fcdc4f71a5e
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = 'c6d1a0a10001'
down_revision = '8fcdc4f71a5e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
