"""an index for the event log's filter counts

The console's event log shows how many events each level and each source filter would list,
counted by one query grouped by level and source on every page, and the open (not
acknowledged) errors: ``ix_event_level_source`` (level, source, acknowledged) lets the
database count both from the index instead of reading every event row.

Revision ID: c6d1a0a2000d
Revises: c6d1a0a2000f
Create Date: 2026-12-06 22:00:00.000000
"""

from alembic import op

revision = 'c6d1a0a2000d'
down_revision = 'c6d1a0a2000f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_event_level_source', 'event', ['level', 'source', 'acknowledged'])


def downgrade() -> None:
    op.drop_index('ix_event_level_source', table_name='event')
